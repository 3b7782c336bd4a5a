"""Is a model's parent named right, by generation? Without the members (base_model from weights alone) and with them.

Every child of a zoo tree, scored against the zoo's truth per split and generation, with the tree's experts (trained
as the docs say: `hf-probex train --splits train,val`, so the test split is held out of every calibration):
1. `infer_card` on each child stripped of its card (`demo.undocumented_copy`): is the root proposed as base_model at
   the default threshold (right for a first generation only)? Precision and recall of first generations held out.
2. `hf_probex.lineage.recover_lineage` with every child as a member, as `hf-probex lineage` runs it: the parent named
   (the root or a member), and how often a member named is the parent; then what `infer --parents` proposes as
   base_model for each held-out child given its edge (at or above the floor a pull request needs).
3. The MoTHer procedure (`mother`) on the same members, side by side.
3b. (`--parts sketches`) Every child as a row of a tree table (its embedding as a scan makes it): the parents
   `hf_probex.lineage.lineage_from_sketches` names from those rows alone, as the table of a tree too large to read.
4. (`--parts bounds`) How sure the root from weights alone may be said to be: the expert's own direct-children curve
   as `infer_card` reads it, and the curve refitted on the training splits' routing distances as the Laplace-smoothed
   share and as lower ends of its Jeffreys interval (`fit_direct_children`), each read for the held-out children:
   what a stricter confidence costs in recall, and whether it keeps grandchildren from the root.

    python scripts/bench_parent.py ZOO --tree resnet --expert DIR [--parts without,with,sketches,mother,bounds]
"""

from __future__ import annotations

import argparse
import collections
import tempfile
from pathlib import Path

import numpy as np


def _table(groups: dict[tuple[str, str], list[int]], columns: tuple[str, ...]) -> str:
    lines = [f"{'split':<6} {'generation':<10} " + " ".join(f"{c:>12}" for c in columns)]
    lines += [f"{split:<6} {generation:<10} " + " ".join(f"{n:>12}" for n in counts)
              for (split, generation), counts in sorted(groups.items())]
    return "\n".join(lines)


def without_members(zoo, tree: str, registry, root: str) -> None:
    from hf_probex import infer_card
    from hf_probex.demo import undocumented_copy

    groups: dict[tuple[str, str], list[int]] = collections.defaultdict(lambda: [0, 0, 0, 0])
    with tempfile.TemporaryDirectory() as scratch:
        for spec in (s for s in zoo.specs(tree) if s.role == "child"):
            result = infer_card(undocumented_copy(zoo, spec, Path(scratch) / spec.name), experts=registry)
            base = result.fields.get("base_model")
            named_root = base is not None and base.value == root
            counts = groups[(spec.split or "-", "1" if spec.generation == 1 else "2+")]
            for i, hit in enumerate((True, result.tree == root, named_root, named_root and spec.generation == 1)):
                counts[i] += hit
    print("base_model from weights alone (is the root named?)")
    print(_table(groups, ("models", "routed", "root named", "right")))
    held = [groups[("test", g)] for g in ("1", "2+")]
    proposed, right = sum(g[2] for g in held), sum(g[3] for g in held)
    print(f"held out (test split): {proposed} proposed, {right} right ({100 * right / max(proposed, 1):.1f} %), "
          f"recall {100 * right / max(held[0][0], 1):.1f} % of first generations\n")


def _local_copies(zoo, tree: str) -> dict:
    """Every model of the tree by repo id -> its folder: a peft adapter of a member declares the member's repo id."""
    return {s.repo_id: zoo.model_dir(tree, s.name) for s in zoo.specs(tree)}


def with_members(zoo, tree: str, registry, root: str) -> None:
    from hf_probex.lineage import lineage_calibration, recover_lineage

    specs = {str(zoo.model_dir(tree, s.name)): s for s in zoo.specs(tree) if s.role == "child"}
    calibration = lineage_calibration(registry, root)
    edges = recover_lineage(zoo.model_dir(tree, "root"), list(specs), calibration, root_id=root,
                            local=_local_copies(zoo, tree), progress=print)
    _score_edges(zoo, tree, root, specs, edges, f"every child a member (hf_probex.lineage), calibration "
                                                f"{calibration.to_dict()}")
    proposed_from_edges(zoo, tree, registry, specs, edges)


def from_sketches(zoo, tree: str, registry, root: str) -> None:
    """Every child a row of a tree table: its embedding as a scan makes it, parents from those sketches alone."""
    from hf_probex.lineage import lineage_calibration, lineage_from_sketches, open_model
    from hf_probex.scan.embedding import member_embedding

    local = _local_copies(zoo, tree)
    specs = {str(zoo.model_dir(tree, s.name)): s for s in zoo.specs(tree) if s.role == "child"}
    sketches = []
    for path in specs:
        adapter, source = open_model(path, local=local)
        sketches.append(member_embedding(source, adapter, root, registry).vector)
    calibration = lineage_calibration(registry, root, sketches=True)
    edges = lineage_from_sketches(list(specs), np.stack(sketches), calibration, root)
    _score_edges(zoo, tree, root, specs, edges, f"every child a table row (hf_probex.lineage.lineage_from_sketches), "
                                                f"calibration {calibration.to_dict()}")


def _score_edges(zoo, tree: str, root: str, specs: dict, edges: list, title: str) -> None:
    groups: dict[tuple[str, str], list[int]] = collections.defaultdict(lambda: [0, 0])
    rows = []  # (split, later generation, names a member, right)
    for edge in edges:
        spec = specs[edge.child]
        named = specs[edge.parent].repo_id if edge.parent in specs else edge.parent
        right = named == zoo.spec(tree, spec.parent).repo_id
        counts = groups[(spec.split or "-", "1" if spec.generation == 1 else "2+")]
        counts[0] += 1
        counts[1] += right
        rows.append((spec.split, spec.generation > 1, edge.parent != root, right))
    print(title)
    print(_table(groups, ("models", "parent right")))
    for label, chosen in (("held out (test split)", [r for r in rows if r[0] == "test"]), ("every child", rows)):
        member = [r for r in chosen if r[2]]
        later = [r for r in chosen if r[1]]
        print(f"{label}: {len(chosen)} edges, {sum(r[3] for r in chosen)} right; a member named {len(member)} times, "
              f"{sum(r[3] for r in member)} right; later generations {sum(r[3] for r in later)} of {len(later)} right")


def proposed_from_edges(zoo, tree: str, registry, specs: dict, edges: list) -> None:
    """What `infer --parents` proposes (a pull request's base_model) for each held-out child stripped of its card,
    given its edge: the parent, only at or above the floor."""
    from dataclasses import replace

    from hf_probex import infer_card
    from hf_probex.demo import undocumented_copy

    counts = collections.Counter()
    with tempfile.TemporaryDirectory() as scratch:
        for edge in edges:
            spec = specs[edge.child]
            if spec.split != "test":
                continue
            copy = undocumented_copy(zoo, spec, Path(scratch) / spec.name)
            base = infer_card(copy, experts=registry, parents=[replace(edge, child=str(copy))]).fields.get("base_model")
            named = None if base is None else specs[base.value].repo_id if base.value in specs else base.value
            generation = "later generations" if spec.generation > 1 else "first generations"
            counts[generation] += 1
            counts[generation, "proposed"] += base is not None
            counts[generation, "right"] += named == zoo.spec(tree, spec.parent).repo_id
    for generation in ("first generations", "later generations"):
        print(f"held out, {generation}: base_model proposed for {counts[generation, 'proposed']} of "
              f"{counts[generation]}, {counts[generation, 'right']} right")


def mother(zoo, tree: str, root: str) -> None:
    """The MoTHer procedure (Horwitz, Shul and Hoshen, 2024) on the same members: pairwise distances between the
    models' changes (the same sketches `hf_probex.lineage` reads), each directed edge penalised by `lam` where it runs
    against the direction weight kurtosis takes from parent to child (its sign measured on this tree's own pairs,
    which favours the baseline), and the minimum directed spanning tree from the root (Edmonds, networkx)."""
    import networkx as nx
    from scipy.stats import kurtosis

    from hf_probex.lineage import SKETCH_DIM, MovementSketch, open_model

    specs = [s for s in zoo.specs(tree) if s.role == "child"]
    local = _local_copies(zoo, tree)
    sketch = MovementSketch(open_model(zoo.model_dir(tree, "root")))
    models = [open_model(zoo.model_dir(tree, s.name), local=local) for s in specs]
    kept = [why is None for why in sketch.keep_common(models)]
    specs, models = [s for s, k in zip(specs, kept) if k], [m for m, k in zip(models, kept) if k]

    def model_kurtosis(model) -> float:
        adapter, source = model
        return float(np.mean([kurtosis(adapter.read_layer(source, name, shape)[0].astype(np.float64).ravel())
                              for name, shape in sketch.layers.items()]))

    rows, kurt = [np.zeros(SKETCH_DIM)], [model_kurtosis(open_model(zoo.model_dir(tree, "root")))]  # the root first
    for model in models:
        rows.append(sketch(model))
        kurt.append(model_kurtosis(model))
    rows, kurt = np.stack(rows), np.array(kurt)
    names = ["root"] + [s.name for s in specs]
    index = {name: i for i, name in enumerate(names)}
    pairs = [(index[s.parent], index[s.name]) for s in specs if s.parent in index]
    rises = np.mean([kurt[c] > kurt[p] for p, c in pairs])  # how often a child's kurtosis is above its parent's
    squares = (rows ** 2).sum(1)
    distance = np.sqrt(np.maximum(squares[:, None] + squares[None] - 2 * rows @ rows.T, 0.0))
    print(f"MoTHer: {len(specs)} members; a child's kurtosis above its parent's in {rises:.0%} of the tree's pairs")
    print(f"{'lambda':>10} {'parent right':>12} {'held out (test)':>16} {'later generations':>18}")
    median = float(np.median(distance[np.triu_indices(len(names), 1)]))
    for lam in (0.0, 0.1 * median, median):  # the paper tunes it; these bracket it against the distances
        graph = nx.DiGraph()
        for p in range(len(names)):
            for c in range(1, len(names)):
                if p != c:
                    against = (kurt[c] > kurt[p]) != (rises >= 0.5)
                    graph.add_edge(p, c, weight=float(distance[p, c] + lam * against))
        tree_edges = nx.minimum_spanning_arborescence(graph)
        parent = {c: p for p, c in tree_edges.edges}
        right = [names[parent[index[s.name]]] == s.parent for s in specs]
        test = [r for r, s in zip(right, specs) if s.split == "test"]
        later = [r for r, s in zip(right, specs) if s.generation > 1]
        print(f"{lam:>10.4f} {sum(right):>5} of {len(right):<4} {sum(test):>8} of {len(test):<4} "
              f"{sum(later):>9} of {len(later):<4}")


def bounds(zoo, tree: str, registry, root: str, training: tuple[str, ...]) -> None:
    """The root from weights alone under each confidence rule (the module docstring's item 4)."""
    from hf_probex.adapters import detect, read_through
    from hf_probex.demo import undocumented_copy
    from hf_probex.experts.calibration.routes import direct_child_share, fit_direct_children
    from hf_probex.infer import DIRECT_PARENT_CONFIDENCE
    from hf_probex.reading import open_source
    from hf_probex.routing import declared_bases, route

    rows = []  # (split, generation, routing confidence, distance, read through the root itself, the expert's share)
    with tempfile.TemporaryDirectory() as scratch:
        for spec in (s for s in zoo.specs(tree) if s.role == "child"):
            model = open_source(undocumented_copy(zoo, spec, Path(scratch) / spec.name))
            adapter = detect(model)
            reader, weights = read_through(model, adapter)
            found = route(weights, reader, registry, declared=declared_bases(model, adapter))
            if found.root == root:
                rows.append((spec.split, spec.generation, found.confidence, found.distances[root],
                             found.is_root or found.direct_share == 1.0, found.direct_share))
    fitted = [r for r in rows if r[0] in training]
    distances, direct = np.array([r[3] for r in fitted]), np.array([r[1] == 1 for r in fitted])
    print(f"the root from weights alone, by the confidence rule ({len(fitted)} models of {', '.join(training)} fit "
          f"the curve, {int(direct.sum())} direct children; a proposal needs {DIRECT_PARENT_CONFIDENCE})")
    print(f"{'share read as':<26} {'held out: proposed':>18} {'right':>6} {'precision %':>11} {'recall %':>8} "
          f"{'grandchildren given it':>22} {'in sample':>10}")
    rules = {"the expert's (infer_card)": None, "point (Laplace)": fit_direct_children(distances, direct, None)}
    rules |= {f"Jeffreys {level:.0%} lower": fit_direct_children(distances, direct, level) for level in (0.8, 0.9, 0.95)}
    for label, curve in rules.items():
        def named(row: tuple) -> bool:  # the root proposed as infer_card proposes it, the share read from `curve`
            share = row[5] if curve is None else 1.0 if row[4] else direct_child_share({"direct_children": curve}, row[3])
            return share is not None and min(row[2], share) >= DIRECT_PARENT_CONFIDENCE

        held = [(named(r), r[1] == 1) for r in rows if r[0] not in training]
        proposed, right = sum(n for n, _ in held), sum(n and first for n, first in held)
        print(f"{label:<26} {proposed:>18} {right:>6} {100 * right / max(proposed, 1):>11.1f} "
              f"{100 * right / max(sum(first for _, first in held), 1):>8.1f} {proposed - right:>22} "
              f"{sum(named(r) and r[1] > 1 for r in fitted):>10}")


PARTS = ("without", "with", "sketches", "mother", "bounds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo")
    parser.add_argument("--tree", required=True)
    parser.add_argument("--expert", action="append", required=True, help="an expert folder of the tree (repeatable)")
    parser.add_argument("--parts", default="without,with,mother",
                        help=f"which measurements, comma-separated, of {', '.join(PARTS)} (default: the first three)")
    parser.add_argument("--training-splits", default="train,val",
                        help="the splits the expert was trained on (bounds: they fit the curve; default: train,val)")
    args = parser.parse_args()
    parts = args.parts.split(",")
    if unknown := sorted(set(parts) - set(PARTS)):
        parser.error(f"unknown parts {', '.join(unknown)}: choose among {', '.join(PARTS)}")

    from hf_probex.experts.registry import ExpertRegistry
    from hf_probex.zoo import Zoo

    zoo = Zoo.open(args.zoo)
    registry = ExpertRegistry.from_locations(args.expert)
    root = next(s.repo_id for s in zoo.specs(args.tree) if s.role == "root")
    if "without" in parts:
        without_members(zoo, args.tree, registry, root)
    if "with" in parts:
        with_members(zoo, args.tree, registry, root)
    if "sketches" in parts:
        from_sketches(zoo, args.tree, registry, root)
    if "mother" in parts:
        mother(zoo, args.tree, root)
    if "bounds" in parts:
        bounds(zoo, args.tree, registry, root, tuple(args.training_splits.split(",")))


if __name__ == "__main__":
    main()
