"""What experts know for routing: layers that tell a tree apart, its models' distances, its reach."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hf_probex.experts.calibration.routes import (
    INDEPENDENT,
    MAX_KNOTS,
    cosine_distance,
    direct_child_share,
    direct_children_ok,
    fit_direct_children,
    fit_routing,
    members_ok,
)
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


def test_the_tree_records_how_often_a_model_is_the_roots_direct_child_and_each_models_parent(tiny_zoo):
    """The tiny vit tree is half second generation: the share of direct children near its root says so, and every
    training model's parent is listed, so that a card naming one as its base can be followed to the root."""
    weights = open_weight_set(tiny_zoo.root)
    records = weights.for_tree("vit")
    routing, _ = fit_routing(records, weights.roots["vit"], root_id="probex-zoo-vit/vit-root")
    curve = routing["direct_children"]
    direct = sum(r.parent == "probex-zoo-vit/vit-root" for r in records)
    assert curve["models"] == len(records) and curve["direct"] == direct < len(records)
    assert routing["members"] == {r.model_id: r.parent for r in records}
    assert direct_children_ok(curve) and members_ok(routing["members"])
    assert max(curve["share"]) < 0.95  # a handful of models, some of them grandchildren: never enough to name the root
    unknown, _ = fit_routing(records, weights.roots["vit"])  # without the root's id, no parent can be told direct
    assert "direct_children" not in unknown and "members" not in unknown


@given(st.lists(st.tuples(st.floats(1e-6, 1.0), st.booleans()), min_size=1, max_size=600))
def test_the_direct_child_share_never_rises_with_distance_and_is_a_precision(models):
    """Read at any distance, the share is at most the smoothed share of direct children among the training models
    at most that far (the precision of naming the root for all of them) at some larger distance, never rises
    with distance, and the stored curve stays small and valid however many models it was measured on."""
    distances = np.array([d for d, _ in models])
    direct = np.array([x for _, x in models])
    curve = fit_direct_children(distances, direct)
    assert len(curve["distances"]) <= MAX_KNOTS and direct_children_ok(curve)
    assert curve["direct"] == direct.sum() and curve["models"] == len(models)
    probes = np.sort(np.concatenate([distances, [0.0, 2.0]]))
    shares = [direct_child_share({"direct_children": curve}, d) for d in probes]
    assert all(a >= b for a, b in zip(shares, shares[1:]))
    for d, share in zip(probes, shares):
        best = max(((direct[distances <= t].sum() + 1) / ((distances <= t).sum() + 2)
                    for t in distances if t >= d), default=(direct.sum() + 1) / (len(models) + 2))
        assert share <= best + 1e-12
    assert direct_child_share({}, 0.1) is None  # an expert that did not measure it says nothing


def test_a_handful_of_direct_children_near_the_root_proves_too_little_to_name_it():
    """The share is the lower end of its 95 % credible interval: 20 training models near the root, every one a direct
    child, do not make the root a parent at 0.95 (their Laplace-smoothed share, 21 of 22, would); 80 do."""
    few, many = (fit_direct_children(np.linspace(0.01, 0.02, n), np.ones(n, bool)) for n in (20, 80))
    assert direct_child_share({"direct_children": few}, 0.01) < 0.95 <= direct_child_share({"direct_children": many}, 0.01)
    assert few["credibility"] == 0.95
    point = fit_direct_children(np.linspace(0.01, 0.02, 20), np.ones(20, bool), credibility=None)
    assert direct_child_share({"direct_children": point}, 0.01) == pytest.approx(21 / 22)


def test_an_experts_direct_child_curve_and_members_are_bounded_before_use():
    good = {"distances": [0.01, 0.02], "share": [0.97, 0.9], "models": 2, "direct": 2}
    assert direct_children_ok(good)
    for bad in ([0.1], {**good, "share": [0.9]}, {**good, "distances": [0.02, 0.01]}, {**good, "share": [1.5, 0.9]},
                {**good, "distances": ["a", 0.1]}, {**good, "distances": [float("nan"), 0.1]},
                {"distances": [0.1] * (MAX_KNOTS + 1), "share": [0.5] * (MAX_KNOTS + 1)}):
        assert not direct_children_ok(bad)
    assert members_ok({"a/child": "a/root"}) and not members_ok({"a/child": 3}) and not members_ok(["a/root"])
