"""base_model from weights alone, by generation: does a cardless model get its tree's root as its parent?

Every child of a zoo tree, stripped of its card (`demo.undocumented_copy`), read by `infer_card` with the experts given
(trained as the docs say: `hf-probex train --splits train,val`, so the test split is held out). Printed per split and
generation: models, routed to the tree, base_model proposed (at the default threshold), right (the root for a first
generation, never for a later one), and the precision and recall (of first generations) over the held-out split.

    python scripts/bench_parent.py ZOO --tree resnet --expert DIR
"""

from __future__ import annotations

import argparse
import collections
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo")
    parser.add_argument("--tree", required=True)
    parser.add_argument("--expert", action="append", required=True, help="an expert folder (repeatable)")
    args = parser.parse_args()

    from hf_probex import infer_card
    from hf_probex.demo import undocumented_copy
    from hf_probex.experts.registry import ExpertRegistry
    from hf_probex.zoo import Zoo

    zoo = Zoo.open(args.zoo)
    registry = ExpertRegistry.from_locations(args.expert)
    root = next(s for s in zoo.specs(args.tree) if s.role == "root").repo_id
    groups: dict[tuple[str, str], list[int]] = collections.defaultdict(lambda: [0, 0, 0, 0])
    with tempfile.TemporaryDirectory() as scratch:
        for spec in (s for s in zoo.specs(args.tree) if s.role == "child"):
            result = infer_card(undocumented_copy(zoo, spec, Path(scratch) / spec.name), experts=registry)
            base = result.fields.get("base_model")
            named_root = base is not None and base.value == root
            key = (spec.split or "-", "1" if spec.generation == 1 else "2+")
            counts = groups[key]
            counts[0] += 1
            counts[1] += result.tree == root
            counts[2] += named_root
            counts[3] += named_root and spec.generation == 1
    print(f"{'split':<6} {'generation':<10} {'models':>6} {'routed':>6} {'root named':>10} {'right':>5}")
    for (split, generation), (models, routed, named, right) in sorted(groups.items()):
        print(f"{split:<6} {generation:<10} {models:>6} {routed:>6} {named:>10} {right:>5}")
    held = [groups[("test", g)] for g in ("1", "2+")]
    proposed, right = sum(g[2] for g in held), sum(g[3] for g in held)
    print(f"\nheld out (test split): {proposed} proposed, {right} right "
          f"({100 * right / max(proposed, 1):.1f} %), recall {100 * right / max(held[0][0], 1):.1f} % of first generations")


if __name__ == "__main__":
    main()
