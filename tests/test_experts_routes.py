"""What experts know for routing: layers that tell a tree apart, its models' distances, its reach."""

from __future__ import annotations

import numpy as np
import pytest

from hf_probex.experts.routes import INDEPENDENT, cosine_distance, fit_routing
from hf_probex.weightsets import open_weight_set


def test_cosine_distance_ignores_scale_and_sees_independent_weights_as_far():
    rng = np.random.default_rng(0)
    root = rng.normal(size=1000)
    assert cosine_distance(0.3 * root, root) == pytest.approx(0.0, abs=1e-12)  # weight decay shrinks, same direction
    assert cosine_distance(rng.normal(size=1000), root) == pytest.approx(INDEPENDENT, abs=0.15)


def test_routing_sits_between_the_trees_models_and_the_twin_root(tiny_zoo):
    weights = open_weight_set(tiny_zoo.root)
    records = weights.for_tree("vit")
    routing, root_copy = fit_routing(records, weights.roots["vit"], [weights.roots["vit-twin"], weights.roots["sd"]])
    assert len(routing["layers"]) == 2 and routing["other_roots"] == 1  # the sd root has no layer of these shapes
    assert routing["max_distance"] < routing["reach"] < routing["nearest_other"]
    assert root_copy.size == sum(int(np.prod(shape)) for _, shape in routing["layers"])
    alone, _ = fit_routing(records, weights.roots["vit"])
    assert alone["nearest_other"] == INDEPENDENT and alone["other_roots"] == 0
