"""Nearest neighbours by inner product over a table's vectors: one small interface, two implementations.

- `ExactIndex`: the matrix in memory (float32), one matrix product per query and `argpartition` for the top k.
  Exact, nothing to build, and the cheapest choice below `EXACT_MAX_ROWS` rows.
- `HnswIndex`: a usearch HNSW graph with the inner-product metric (`metric="ip"`) over int8 copies of the vectors
  (`HNSW_DTYPE`), its shortlist re-scored on the float32 vectors: approximate (recall@10 measured), ~20 minutes to
  build at 10^6 rows on 2 cores, milliseconds a query at any size.

`build_index` picks one by the row count (or as told), `load_index` / `VectorIndex.save` keep one in a folder in
formats that hold numbers only: the float32 vectors as `.npy` read with `allow_pickle=False` (never a pickle), and
the HNSW graph in usearch's own file.
Both answer `search(query, k)` with row numbers (the order the vectors were given in) and inner products,
best first, and `search_many(queries, k)` the same for a batch at once (lineage asks it for every row of a table).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

__all__ = ["EXACT_MAX_ROWS", "HNSW_DTYPE", "INDEX_KINDS", "ExactIndex", "HnswIndex", "VectorIndex", "build_index",
           "choose_index_kind", "load_index"]

#: Below this many rows the exact index answers; from it on, HNSW. Measured with scripts/bench_search.py on the
#: 2-core machine (docs/benchmarks.md#text-search, 2026-11-30, 256-wide unit vectors): exact numpy takes ~16 ms median
#: per query at 10^5 rows and 74 ms (quiet) to 150 ms (busy) at 10^6, linear in the rows, so it reaches the 50 ms
#: target between 3 and 6 x 10^5 rows; it is exact and builds nothing, so it answers up to 2 x 10^5 rows (~30 ms at
#: worst, a p95 margin under the target) and HNSW from there.
EXACT_MAX_ROWS = 200_000
#: HNSW vectors stored as int8: unit vectors fit [-1, 1]; build ~2.5x faster than float32 and a quarter of the memory.
#: float16 raised recall@10 only from 0.85 to 0.89 at 10^6 clustered rows (the graph, not the int8 scores, missed
#: the neighbours) for a 1.7x longer build.
HNSW_DTYPE = "i8"
#: HNSW graph degree and beam widths (usearch's defaults are 16 / 128 / 64). Measured at 10^6 rows drawn around 10^4
#: concept centres (docs/benchmarks.md#text-search): degree 16 with a build beam of 64 found 0.85 of the exact top 10
#: (build 3 min); degree 32 with a build beam of 128 finds all of them (1.000) at 28 ms a query on a busy machine, for
#: a build of ~20 min, once per table commit (then cached).
HNSW_CONNECTIVITY = 32
HNSW_EXPANSION_ADD = 128
HNSW_EXPANSION_SEARCH = 1024
#: HNSW candidates re-scored exactly per result wanted (at least MIN_CANDIDATES): int8 scores only shortlist.
RERANK = 4
MIN_CANDIDATES = 40
#: Queries scored together by `ExactIndex.search_many`: a [block, rows] float32 matrix (0.2 GB at 10^5 rows).
QUERY_BLOCK = 512
VECTORS_FILE, GRAPH_FILE = "vectors.npy", "graph.usearch"
INDEX_KINDS = ("exact", "usearch")
#: A saved index bigger than this is not one hf_probex wrote (10^7 rows x 1024 float32 is 40 GB).
MAX_INDEX_BYTES = 64 * 2**30


class VectorIndex(Protocol):
    """What search needs from an index (see the module docstring)."""

    kind: str
    vectors: np.ndarray  # [rows, width] float32, in row order (memory-mapped once saved: rows read as taken)

    def __len__(self) -> int: ...

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The `k` rows with the largest inner product with `query` ([D]): (row numbers int64 [k'], inner products
        float32 [k']), best first; k' = min(k, rows)."""
        ...

    def search_many(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """`search` for each row of `queries` ([q, D]) at once: (row numbers int64 [q, k'], inner products float32
        [q, k']), each row best first."""
        ...

    def save(self, folder: Path) -> None:
        """Write the index's files into `folder`, each atomically (a temporary file beside it, then a rename)."""
        ...


def _checked_vectors(vectors: np.ndarray) -> np.ndarray:
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise ValueError(f"an index holds a matrix of vectors [rows, width], not an array of shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError("an index cannot hold NaN or inf")
    return matrix


def _checked_query(query: np.ndarray, width: int) -> np.ndarray:
    vector = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
    if vector.shape[0] != width:
        raise ValueError(f"the query has {vector.shape[0]} numbers; the index holds vectors of {width}")
    return vector


def _checked_queries(queries: np.ndarray, width: int) -> np.ndarray:
    matrix = np.ascontiguousarray(queries, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] != width:
        raise ValueError(f"queries are a matrix [q, {width}], not an array of shape {matrix.shape}")
    return matrix


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


class ExactIndex:
    """Exact inner products: the matrix times the query, the top k by `argpartition` (see the module docstring)."""

    kind = "exact"

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = _checked_vectors(vectors)

    def __len__(self) -> int:
        return self.vectors.shape[0]

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return _top(self.vectors, np.arange(len(self)), _checked_query(query, self.vectors.shape[1]), k)

    def search_many(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = _checked_queries(queries, self.vectors.shape[1])
        k = max(min(k, len(self)), 0)
        rows, scores = np.zeros((len(queries), k), np.int64), np.zeros((len(queries), k), np.float32)
        for start in range(0, len(queries), QUERY_BLOCK):  # one matrix product per block: [block, rows] in memory
            block = queries[start:start + QUERY_BLOCK] @ self.vectors.T
            for i, row in enumerate(block, start):
                rows[i], scores[i] = _best(row, k)
        return rows, scores

    def save(self, folder: Path) -> None:
        _save_vectors(self.vectors, folder / VECTORS_FILE)

    @classmethod
    def load(cls, folder: Path) -> ExactIndex:
        """An index saved by `save` (the matrix memory-mapped: a float32 .npy, never a pickle)."""
        index = cls.__new__(cls)
        index.vectors = _load_vectors(folder / VECTORS_FILE)
        return index


def _top(vectors: np.ndarray, rows: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best `k` of `rows` by their exact inner product with `query`, best first (ties: lower row first)."""
    rows = np.sort(rows)
    top, scores = _best(vectors[rows] @ query if len(rows) < len(vectors) else vectors @ query, k)
    return rows[top].astype(np.int64), scores


def _best(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The positions of the `k` largest `scores` and those scores, best first (ties: lower position first)."""
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    top = top[np.lexsort((top, -scores[top]))]
    return top.astype(np.int64), scores[top].astype(np.float32)


def _save_vectors(vectors: np.ndarray, path: Path) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # np.save on a handle keeps the name: no ".npy" appended to the temp file
            np.save(handle, vectors, allow_pickle=False)

    _atomic(path, write)


def _load_vectors(path: Path) -> np.ndarray:
    if path.stat().st_size > MAX_INDEX_BYTES:
        raise ValueError(f"{path.name} has {path.stat().st_size} bytes, more than an index hf_probex writes")
    vectors = np.load(path, mmap_mode="r", allow_pickle=False)
    if vectors.dtype != np.float32 or vectors.ndim != 2:
        raise ValueError(f"{path.name} is not a float32 matrix")
    return vectors


class HnswIndex:
    """usearch HNSW over inner products, its candidates re-scored exactly (see the module docstring).

    The graph holds int8 copies of the vectors (`HNSW_DTYPE`): fast to build and small, but their inner products
    are only approximate, so the `RERANK` x k best candidates are scored again on the float32 vectors (kept beside
    the graph, memory-mapped once saved: only the candidates' rows are read) and the best k of them returned.
    """

    kind = "usearch"

    def __init__(self, vectors: np.ndarray, *, threads: int = 0, graph=None) -> None:
        from usearch.index import Index

        self.vectors = _checked_vectors(vectors) if graph is None else vectors
        self.graph = graph
        if graph is None:
            self.graph = Index(ndim=self.vectors.shape[1], metric="ip", dtype=HNSW_DTYPE,
                               connectivity=HNSW_CONNECTIVITY, expansion_add=HNSW_EXPANSION_ADD,
                               expansion_search=HNSW_EXPANSION_SEARCH)
            if len(self.vectors):
                self.graph.add(np.arange(len(self.vectors), dtype=np.uint64), self.vectors, threads=threads)

    def __len__(self) -> int:
        return self.vectors.shape[0]

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        query = _checked_query(query, self.vectors.shape[1])
        if min(k, len(self)) <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        candidates = self.graph.search(query, min(len(self), max(RERANK * k, MIN_CANDIDATES)))
        return _top(self.vectors, candidates.keys.astype(np.int64), query, k)

    def search_many(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = _checked_queries(queries, self.vectors.shape[1])
        k = max(min(k, len(self)), 0)
        rows, scores = np.zeros((len(queries), k), np.int64), np.zeros((len(queries), k), np.float32)
        if not k or not len(queries):
            return rows, scores
        found = self.graph.search(queries, min(len(self), max(RERANK * k, MIN_CANDIDATES)), threads=0)
        keys = found.keys.reshape(len(queries), -1)
        for i, (query, count) in enumerate(zip(queries, np.atleast_1d(found.counts))):
            rows[i], scores[i] = _top(self.vectors, keys[i, :count].astype(np.int64), query, k)
        return rows, scores

    def save(self, folder: Path) -> None:
        _save_vectors(np.asarray(self.vectors), folder / VECTORS_FILE)
        _atomic(folder / GRAPH_FILE, lambda tmp: self.graph.save(str(tmp)))

    @classmethod
    def load(cls, folder: Path) -> HnswIndex:
        """An index saved by `save`: usearch's own file (the graph and its int8 vectors, no code) and the .npy."""
        from usearch.index import Index

        vectors, path = _load_vectors(folder / VECTORS_FILE), folder / GRAPH_FILE
        if path.stat().st_size > MAX_INDEX_BYTES:
            raise ValueError(f"{path.name} has {path.stat().st_size} bytes, more than an index hf_probex writes")
        meta = Index.metadata(str(path))
        if not meta or meta.get("dimensions") != vectors.shape[1] or meta.get("count_present") != len(vectors):
            raise ValueError(f"{path.name} is not the usearch index of {VECTORS_FILE}")
        graph = Index(ndim=vectors.shape[1], metric="ip", dtype=HNSW_DTYPE, connectivity=HNSW_CONNECTIVITY,
                      expansion_add=HNSW_EXPANSION_ADD, expansion_search=HNSW_EXPANSION_SEARCH)
        graph.load(str(path))
        return cls(vectors, graph=graph)


_KINDS: dict[str, type] = {"exact": ExactIndex, "usearch": HnswIndex}


def choose_index_kind(rows: int) -> str:
    """The index for a table of `rows` vectors: exact below `EXACT_MAX_ROWS`, HNSW from it on."""
    return "exact" if rows < EXACT_MAX_ROWS else "usearch"


def build_index(vectors: np.ndarray, kind: str | None = None) -> VectorIndex:
    """An index over `vectors` ([rows, width] float32): `kind` "exact" or "usearch", or chosen by the row count."""
    kind = kind or choose_index_kind(len(vectors))
    if kind not in _KINDS:
        raise ValueError(f"unknown index kind {kind!r}: one of {', '.join(INDEX_KINDS)}")
    return _KINDS[kind](vectors)


def load_index(folder: Path, kind: str) -> VectorIndex:
    """An index of `kind` saved in `folder` by `VectorIndex.save`.

    Raises:
        ValueError: the files are not such an index, or are larger than any hf_probex writes.
        OSError: a file is missing.
    """
    return _KINDS[kind].load(folder)
