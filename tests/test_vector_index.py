"""Nearest neighbours by inner product (hf_probex.vector_index): both kinds answer a batch as they answer each query."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_probex.vector_index import build_index


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 60), width=st.integers(2, 8), k=st.integers(0, 70), seed=st.integers(0, 2**16),
       kind=st.sampled_from(["exact", "usearch"]))
def test_a_batch_of_queries_gets_what_each_query_gets_alone(rows, width, k, seed, kind):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(rows, width)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = np.concatenate([vectors[: rows // 2], rng.normal(size=(3, width)).astype(np.float32)])
    index = build_index(vectors, kind)
    found, scores = index.search_many(queries, k)
    assert found.shape == scores.shape == (len(queries), min(k, rows))
    for query, row, score in zip(queries, found, scores):
        alone = index.search(query, k)
        assert list(row) == list(alone[0]) and np.allclose(score, alone[1], atol=1e-5)  # a block product rounds as its own
        assert list(score) == sorted(score, reverse=True)


def test_a_batch_of_another_width_is_refused():
    index = build_index(np.eye(4, dtype=np.float32), "exact")
    with pytest.raises(ValueError, match=r"\[q, 4\]"):
        index.search_many(np.zeros((2, 3), np.float32), 2)
