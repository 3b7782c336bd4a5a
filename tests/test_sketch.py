"""The count sketch a tree table's rows hold (hf_probex.sketch): the same on every run, inner products kept."""

from __future__ import annotations

import numpy as np

from hf_probex.sketch import DEFAULT_SKETCH_DIM, count_sketch, sketch_kind


def test_a_sketch_is_the_same_every_run_and_keeps_distances_between_movements():
    rng = np.random.default_rng(0)
    parent = rng.normal(size=(384, 384)) * 1e-3
    child = parent + rng.normal(size=(384, 384)) * 5e-4
    first, again = count_sketch(parent), count_sketch(parent.copy())
    assert first.dtype == np.float32 and first.shape == (DEFAULT_SKETCH_DIM,) and np.array_equal(first, again)
    assert not np.array_equal(first, count_sketch(parent, seed=1))  # another seed, another projection
    exact = np.linalg.norm(child - parent)
    assert abs(np.linalg.norm(count_sketch(child) - first) - exact) < 0.05 * exact  # error ~ 1/sqrt(4,096)
    assert sketch_kind() == f"count-sketch {DEFAULT_SKETCH_DIM} seed 0" and sketch_kind(128, 3) == "count-sketch 128 seed 3"
