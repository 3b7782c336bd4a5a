"""Which member was a model fine-tuned from? A measurement of one statistic for issue 25's lineage recovery.

Every child of a zoo tree is read whole (each layer the root has in its shape, as its change from the root divided by
the root layer's norm), count-sketched into 2^16 dimensions (distances kept, memory bounded). For a model m, each
candidate parent p among the members that moved less than it is scored by how much of m's movement it explains,
s(p) = (|m - root| - |m - p|) / |p - root|: near 1 where m is p plus a move of its own, near or below 0 for a
sibling. Printed: s of the best candidate for the root's own children and for later generations (is the best
candidate the true parent?), and the edges right at the threshold that separates them best on this tree.

    python scripts/bench_lineage.py ZOO --tree resnet
"""

from __future__ import annotations

import argparse

import numpy as np

SKETCH = 1 << 16


def sketches(records, root_path, seed: int = 0) -> np.ndarray:
    """[n_models, SKETCH] count sketch of each model's per-layer relative change from the root."""
    from hf_probex.experts.routes import _read
    from hf_probex.experts.shaping import layer_shapes, readable

    root_shapes = layer_shapes(root_path, "classifier")
    model_shapes = layer_shapes(records[0].path, "classifier", records[0].base)
    names = [n for n, shape in root_shapes.items() if model_shapes.get(n) == shape and readable(shape)]
    root = _read(root_path, names)
    rng, hashes = np.random.default_rng(seed), {}
    for name in names:
        hashes[name] = rng.integers(0, SKETCH, size=root[name].size), rng.choice([-1.0, 1.0], size=root[name].size)
    out = np.zeros((len(records), SKETCH))
    for i, record in enumerate(records):
        layers = _read(record.path, names, record.base)
        for name in names:
            change = (layers[name].ravel().astype(np.float64) - root[name].ravel()) / max(np.linalg.norm(root[name]), 1e-12)
            bucket, sign = hashes[name]
            out[i] += np.bincount(bucket, weights=sign * change, minlength=SKETCH)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo")
    parser.add_argument("--tree", required=True)
    args = parser.parse_args()

    from hf_probex.weightsets import open_weight_set

    weights = open_weight_set(args.zoo)
    records = [r for r in weights.for_tree(args.tree) if r.kind == "classifier" and r.parent]
    root_id = next(r.parent for r in records if r.parent not in {x.model_id for x in records})
    moved = sketches(records, weights.roots[args.tree])
    squares = (moved ** 2).sum(1)
    from_root = np.sqrt(squares)
    between = np.sqrt(np.maximum(squares[:, None] + squares[None] - 2 * moved @ moved.T, 0))
    rows = []  # (is a child of the root, best candidate's s or None, best candidate is the true parent)
    for i, record in enumerate(records):
        earlier = [j for j in range(len(records)) if j != i and from_root[j] < from_root[i]]
        scores = [(from_root[i] - between[i, j]) / from_root[j] for j in earlier]
        best = int(np.argmax(scores)) if scores else None
        rows.append((record.parent == root_id, scores[best] if scores else None,
                     best is not None and records[earlier[best]].model_id == record.parent))
    children = np.array([s for is_child, s, _ in rows if is_child and s is not None])
    later = [(s, right) for is_child, s, right in rows if not is_child]
    print(f"{args.tree}: {len(records)} models, {len(later)} of them later generations")
    if len(children):
        print("root's children, best candidate's s: percentiles 50/90/99/100 "
              + " / ".join(f"{x:.3f}" for x in np.percentile(children, [50, 90, 99, 100])))
    print("later generations, best candidate's s (its true parent?): "
          + ", ".join(f"{s:.3f} ({'yes' if right else 'no'})" for s, right in sorted(later)))
    values = sorted({s for _, s, _ in rows if s is not None})
    cuts = [(a + b) / 2 for a, b in zip(values, values[1:])] or values
    def edges_right(cut: float) -> int:
        return sum((s is not None and s >= cut and right) or (is_child and (s is None or s < cut))
                   for is_child, s, right in rows)
    best_cut = max(cuts, key=edges_right)
    print(f"edges right at the best threshold on this tree (s >= {best_cut:.3f}: the member, else the root): "
          f"{edges_right(best_cut)} of {len(rows)}")


if __name__ == "__main__":
    main()
