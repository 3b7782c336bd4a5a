"""Text search's vector index at scale: latency per query, memory, build time and recall, exact numpy vs usearch HNSW.

    python scripts/bench_search.py [--rows 10000 100000 1000000] [--widths 256 384] [--queries 200] [--clusters N]

Rows are synthetic unit vectors of the real width (a fused MVProbe of 2-4 LoRA modules x 64 gives search vectors of
128-256 numbers; 384 for a wider expert), drawn with a fixed seed; queries are fresh unit vectors. With
`--clusters N` rows and queries are drawn around N concept centres instead, as a tree's LoRAs gather by concept
and a query names one: each is the unit vector of a centre plus Gaussian noise of norm ~`--spread` (1.0: a member
has cosine ~0.7 with its centre, ~0.5 with another member of its concept). Each index is
built by `hf_probex.vector_index.build_index` as search builds it, then queried one vector at a time (as a user's
query comes). recall@10: the share of exact numpy's top 10 that usearch also returns; score shortfall: how much
lower the mean inner product of usearch's 10 is than exact's (uniform random vectors are a graph index's worst
case: nothing clusters, and the 10th and 50th best of 10^6 differ by a few hundredths). Memory: the index's own
arrays and files (the float32 matrix, usearch's graph file), not the process. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hf_probex.vector_index as vector_index  # noqa: E402
from hf_probex.vector_index import GRAPH_FILE, VECTORS_FILE, build_index, load_index  # noqa: E402


def unit_vectors(rows: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, rows, width])
    out = np.empty((rows, width), np.float32)
    for start in range(0, rows, 100_000):  # in blocks: float64 draws of 10^6 x 384 would take 3 GB at once
        block = rng.standard_normal((min(100_000, rows - start), width), dtype=np.float32)
        out[start:start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def clustered_vectors(rows: int, width: int, centres: np.ndarray, spread: float, seed: int) -> np.ndarray:
    """Unit vectors of centres drawn uniformly from `centres` plus noise of norm ~`spread` (see the docstring)."""
    rng = np.random.default_rng([seed, rows, width, len(centres)])
    out = np.empty((rows, width), np.float32)
    for start in range(0, rows, 100_000):
        n = min(100_000, rows - start)
        block = centres[rng.integers(len(centres), size=n)] + spread / np.sqrt(width) * rng.standard_normal(
            (n, width), dtype=np.float32)
        out[start:start + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def timed_queries(index, queries: np.ndarray, k: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """(rows found per query, their mean score per query, milliseconds per query)."""
    found, scores, seconds = [], [], []
    for query in queries:
        started = time.perf_counter()
        rows, score = index.search(query, k)
        seconds.append(time.perf_counter() - started)
        found.append(rows)
        scores.append(score.mean())
    return found, np.asarray(scores), np.asarray(seconds) * 1000


def bench(rows: int, width: int, n_queries: int, k: int, kinds: list[str], clusters: int = 0,
          spread: float = 1.0) -> list[dict]:
    if clusters:
        centres = unit_vectors(clusters, width, seed=2)
        vectors = clustered_vectors(rows, width, centres, spread, seed=0)
        queries = clustered_vectors(n_queries, width, centres, spread, seed=1)
    else:
        vectors = unit_vectors(rows, width, seed=0)
        queries = unit_vectors(n_queries, width, seed=1)
    results, exact_found = [], None
    for kind in kinds:
        started = time.perf_counter()
        index = build_index(vectors, kind)
        build_s = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as folder:  # queried as search queries it: loaded back from its files
            index.save(Path(folder))
            files = {name: (Path(folder) / name).stat().st_size for name in (VECTORS_FILE, GRAPH_FILE)
                     if (Path(folder) / name).exists()}
            index = load_index(Path(folder), kind)
            timed_queries(index, queries[:5], k)  # warm-up: page in the memory map
            found, scores, ms = timed_queries(index, queries, k)
            del index
        if kind == "exact":
            exact_found, exact_scores = found, scores
        recall = (np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(found, exact_found)])
                  if exact_found is not None else float("nan"))
        shortfall = float(np.mean(exact_scores - scores)) if exact_found is not None else float("nan")
        results.append({"rows": rows, "width": width, "kind": kind, "build_s": build_s, "median_ms": np.median(ms),
                        "p95_ms": np.percentile(ms, 95), "memory_mb": sum(files.values()) / 2**20,
                        "recall": recall, "shortfall": shortfall})
        print(f"  {rows:>9,} x {width} {kind:7s} build {build_s:7.1f} s  median {np.median(ms):7.2f} ms  "
              f"p95 {np.percentile(ms, 95):7.2f} ms  files {sum(files.values()) / 2**20:7.0f} MB  recall@{k} {recall:.3f}  "
              f"score shortfall {shortfall:.4f}",
              file=sys.stderr, flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 384])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--kinds", nargs="+", default=["exact", "usearch"])
    parser.add_argument("--clusters", type=int, default=0,
                        help="draw rows and queries around this many concept centres (default 0: uniform, the worst case)")
    parser.add_argument("--spread", type=float, default=1.0, help="--clusters: the noise's norm around a centre")
    parser.add_argument("--connectivity", type=int, default=vector_index.HNSW_CONNECTIVITY, help="HNSW graph degree")
    parser.add_argument("--expansion-add", type=int, default=vector_index.HNSW_EXPANSION_ADD, help="HNSW build beam")
    parser.add_argument("--dtype", default=vector_index.HNSW_DTYPE, help="HNSW stored vectors: i8, f16 or f32")
    parser.add_argument("--rerank", type=int, default=vector_index.RERANK, help="candidates re-scored per result")
    args = parser.parse_args()
    # the index as `hf-probex search` builds it, with these settings (the module's defaults unless given)
    vector_index.HNSW_CONNECTIVITY, vector_index.HNSW_EXPANSION_ADD = args.connectivity, args.expansion_add
    vector_index.HNSW_DTYPE, vector_index.RERANK = args.dtype, args.rerank
    results = [r for width in args.widths for rows in args.rows
               for r in bench(rows, width, args.queries, args.top_k, args.kinds, args.clusters, args.spread)]
    drawn = (f" --clusters {args.clusters} --spread {args.spread}" if args.clusters else "") + (
        f" --connectivity {args.connectivity} --expansion-add {args.expansion_add} --dtype {args.dtype} "
        f"--rerank {args.rerank}")
    print(f"`python scripts/bench_search.py --rows {' '.join(map(str, args.rows))} --widths "
          f"{' '.join(map(str, args.widths))} --queries {args.queries}{drawn}`, {date.today()}, {platform.machine()} "
          f"{platform.python_version()}\n")
    print("| rows | width | index | build | median / query | p95 / query | index files | recall@10 vs exact | "
          "score shortfall |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        exact = r["kind"] == "exact"
        print(f"| {r['rows']:,} | {r['width']} | {r['kind']} | {r['build_s']:.1f} s | {r['median_ms']:.2f} ms | "
              f"{r['p95_ms']:.2f} ms | {r['memory_mb']:,.0f} MB | {'exact' if exact else format(r['recall'], '.3f')} | "
              f"{'0' if exact else format(r['shortfall'], '.4f')} |")


if __name__ == "__main__":
    main()
