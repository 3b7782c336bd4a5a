"""Which member was each model fine-tuned from? `hf_probex.lineage` on every child of a zoo tree.

Every child is a member (read whole, as `hf-probex lineage` reads them), the calibration is the tree's expert's (fitted
on the models it was trained on: with `--splits train,val` the test split is held out of it). Printed per split and
generation: models, parent named right, and for later generations how often the member named is the parent; then
the precision of the edges naming a member and the recall of later generations, on the held-out split and on all.

    python scripts/bench_lineage.py ZOO --tree resnet --expert DIR
"""

from __future__ import annotations

import argparse
import collections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo")
    parser.add_argument("--tree", required=True)
    parser.add_argument("--expert", action="append", required=True, help="the tree's expert folder (repeatable)")
    args = parser.parse_args()

    from hf_probex.experts.registry import ExpertRegistry
    from hf_probex.lineage import lineage_calibration, recover_lineage
    from hf_probex.zoo import Zoo

    zoo = Zoo.open(args.zoo)
    specs = {str(zoo.model_dir(args.tree, s.name)): s for s in zoo.specs(args.tree) if s.role == "child"}
    root = next(s.repo_id for s in zoo.specs(args.tree) if s.role == "root")
    calibration = lineage_calibration(ExpertRegistry.from_locations(args.expert), root)
    edges = recover_lineage(zoo.model_dir(args.tree, "root"), list(specs), calibration, root_id=root)
    parent_of = {path: zoo.spec(args.tree, s.parent).repo_id for path, s in specs.items()}
    groups: dict[tuple[str, str], list[int]] = collections.defaultdict(lambda: [0, 0])
    rows = []  # (split, later generation, names a member, right)
    for edge in edges:
        spec = specs[edge.child]
        named = specs[edge.parent].repo_id if edge.parent in specs else edge.parent
        right = named == parent_of[edge.child]
        groups[(spec.split or "-", "1" if spec.generation == 1 else "2+")][0] += 1
        groups[(spec.split or "-", "1" if spec.generation == 1 else "2+")][1] += right
        rows.append((spec.split, spec.generation > 1, edge.parent != root, right))
    print(f"{args.tree}: calibration {calibration.to_dict()}")
    print(f"{'split':<6} {'generation':<10} {'models':>6} {'parent right':>12}")
    for (split, generation), (models, right) in sorted(groups.items()):
        print(f"{split:<6} {generation:<10} {models:>6} {right:>12}")
    for label, chosen in (("held out (test split)", [r for r in rows if r[0] == "test"]), ("every child", rows)):
        member = [r for r in chosen if r[2]]
        later = [r for r in chosen if r[1]]
        print(f"{label}: {len(chosen)} edges, {sum(r[3] for r in chosen)} right; a member named {len(member)} times, "
              f"{sum(r[3] for r in member)} right; later generations {sum(r[3] for r in later)} of {len(later)} right")


if __name__ == "__main__":
    main()
