"""Lineage from a tree table's sketches at 10^5 rows: time, memory, and whether the vector index's candidates hold
the parent all pairs would find (issue 25, docs/benchmarks.md "Lineage from a table's sketches").

The rows are drawn as a tree grows, in the sketch's own space (`DEFAULT_SKETCH_DIM` numbers a row, as a scan stores
them), with the statistics measured on the text-lineage zoo's 120 fine-tunes of MiniLM (/tmp numbers in the doc):
half the rows fine-tune the root, each a movement of log-normal size (5th-95th percentile 0.08-4.4, median 0.35)
in a direction of its own with a shared component (one of 50 "datasets", cosine ~0.02 between first generations as
measured); the other half fine-tune an earlier row, moving a log-normal multiple of their parent's movement (median
1, 5th-95th 0.07-10) in a direction of their own. The tree's calibration is fitted on the first `--calibrate` rows
(`sketch_lineage`, their parents known, as a zoo's are), then `lineage_from_sketches` names every row's parent.
Printed: the wall time of each phase, the peak resident memory, the parent named right (rows whose parent is a
member, first generations), and on `--check` sampled rows whether the parent named from the indexed candidates is the
one all pairs would name (the best member at or above the threshold, else the root).

    python scripts/bench_lineage_table.py [--rows 100000] [--check 1000] [--seed 0] [--index usearch]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np


def grow(rows: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(sketches float32 [rows, dim], each row's parent: -1 for the root), rows in the order they were made."""
    shared = rng.standard_normal((50, dim)).astype(np.float32)
    shared /= np.linalg.norm(shared, axis=1, keepdims=True)
    sketches, parents = np.zeros((rows, dim), np.float32), np.full(rows, -1)
    sigma_size, sigma_ratio = np.log(4.4 / 0.35) / 1.645, np.log(10) / 1.645
    for i in range(rows):
        own = rng.standard_normal(dim).astype(np.float32)
        own = own / np.linalg.norm(own) + 0.15 * shared[rng.integers(50)]
        own /= np.linalg.norm(own)
        if i < 100 or rng.random() < 0.5:
            sketches[i] = own * 0.35 * np.exp(sigma_size * rng.standard_normal())
        else:
            parents[i] = rng.integers(i)
            move = np.linalg.norm(sketches[parents[i]]) * np.exp(sigma_ratio * rng.standard_normal())
            sketches[i] = sketches[parents[i]] + own * move
    return sketches, parents


def _records(parents: np.ndarray) -> list:
    from hf_probex.weightsets import WeightRecord

    return [WeightRecord("synthetic", f"m{i}", "train", (), Path(f"m{i}"), "classifier",
                         parent="root" if p < 0 else f"m{p}") for i, p in enumerate(parents)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--calibrate", type=int, default=2_000, help="rows the calibration is fitted on (the first)")
    parser.add_argument("--check", type=int, default=1_000, help="rows whose candidates are checked against all pairs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--index", choices=["exact", "usearch"],
                        help="the index the checked candidates come from (default: as lineage_from_sketches picks by the "
                             "row count; usearch measures what a table past 2 x 10^5 rows gets)")
    args = parser.parse_args()

    from hf_probex.experts.calibration.lineage import sketch_candidates, sketch_lineage
    from hf_probex.lineage import lineage_from_sketches
    from hf_probex.sketch import DEFAULT_SKETCH_DIM, sketch_kind

    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    sketches, parents = grow(args.rows, DEFAULT_SKETCH_DIM, rng)
    print(f"{args.rows:,} rows of {DEFAULT_SKETCH_DIM} float32 ({sketches.nbytes / 2**30:.2f} GiB) grown in "
          f"{time.perf_counter() - start:.0f} s; {int((parents >= 0).sum()):,} later generations")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    start = time.perf_counter()
    n = min(args.calibrate, args.rows)
    calibration = sketch_lineage(_records(parents[:n]), sketches[:n], "root", sketch_kind(), ["synthetic"])
    print(f"calibration on the first {n:,} rows ({time.perf_counter() - start:.1f} s): {calibration.to_dict()}")

    start = time.perf_counter()
    edges = lineage_from_sketches([f"m{i}" for i in range(args.rows)], sketches, calibration, "root")
    took = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    named = np.array([-1 if e.parent == "root" else int(e.parent[1:]) for e in edges])
    later, member = parents >= 0, named >= 0
    print(f"lineage_from_sketches over {args.rows:,} rows: {took:.0f} s, peak resident memory {peak:.2f} GiB "
          f"({before:.2f} GiB before it)")
    print(f"{'rows':<34} {'count':>8} {'right':>8} {'share':>7}")
    for label, chosen in (("every row", np.ones(args.rows, bool)), ("later generations", later),
                          ("first generations", ~later), ("a member named", member)):
        right = int((named[chosen] == parents[chosen]).sum())
        print(f"{label:<34} {int(chosen.sum()):>8,} {right:>8,} {right / max(int(chosen.sum()), 1):>7.1%}")

    start = time.perf_counter()
    sample = rng.choice(args.rows, size=min(args.check, args.rows), replace=False)
    candidates = sketch_candidates(sketches, kind=args.index)
    agree = holds = right_all = right_indexed = 0
    norms = np.linalg.norm(sketches.astype(np.float64), axis=1)
    for i in sample:
        decisions = [(best if share is not None and share >= calibration.threshold else -1)
                     for best, share in (_best_of(sketches, norms, i, None),
                                         _best_of(sketches, norms, i, np.unique(candidates[i])))]
        agree += decisions[0] == decisions[1]
        right_all += decisions[0] == parents[i]
        right_indexed += decisions[1] == parents[i]
        holds += parents[i] < 0 or parents[i] in candidates[i]
    print(f"candidates from the {args.index or 'default'} index ({candidates.shape[1] - 1} a row, found and checked "
          f"in {time.perf_counter() - start:.0f} s for {len(sample):,} "
          f"rows): the parent named as all pairs name it for {agree} of {len(sample)}; the true parent among "
          f"them for {holds}; parent right: all pairs {right_all}, indexed {right_indexed}")


def _best_of(sketches: np.ndarray, norms: np.ndarray, i: int, pool: np.ndarray | None) -> tuple[int | None, float | None]:
    """Row i's best member among the rows `pool` (None: every row) and its share (`best_members`' measure, one row)."""
    inner = sketches @ sketches[i] if pool is None else sketches[pool] @ sketches[i]
    pool = np.arange(len(sketches)) if pool is None else pool
    earlier = norms[pool] < norms[i]
    if not earlier.any():
        return None, None
    between = np.sqrt(np.maximum(norms[i] ** 2 + norms[pool][earlier] ** 2 - 2 * inner[earlier], 0.0))
    shares = (norms[i] - between) / norms[pool][earlier]
    return int(pool[earlier][np.argmax(shares)]), float(shares.max())


if __name__ == "__main__":
    main()
