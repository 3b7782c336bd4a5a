"""Do models trained on classes outside the vocabulary get a class? The expert calibrated without them and with them.

For each tree of a zoo that has models of unseen classes (presets' `n_unseen`: splits val_holdout and test_holdout),
the expert is trained as the demo trains it twice: on the train and val splits (its threshold checked on the
vocabulary's models only), and on train, val and val_holdout (the threshold must also leave at most 5 % of the
models of unseen classes with a class, `calibration.fit_calibration(unseen=...)`). `infer_card` then reads every
held-out model stripped of its card (`demo.undocumented_copy`): the test split's (classes of the vocabulary: how many
get classes, how many of those are right) and test_holdout's (unseen classes: any class proposed is wrong).

    python scripts/bench_unseen.py ZOO [--tree resnet]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def _read(zoo, tree: str, registry, split: str, scratch: Path) -> list[int]:
    """[models, given a class, classes proposed, classes right] over the children of `split`."""
    from hf_probex import infer_card
    from hf_probex.demo import undocumented_copy

    counts = [0, 0, 0, 0]
    for spec in (s for s in zoo.specs(tree) if s.role == "child" and s.split == split):
        result = infer_card(undocumented_copy(zoo, spec, scratch / spec.name), experts=registry)
        proposed = result.fields.get("trained_on")
        classes = list(proposed.value) if proposed else []
        counts = [counts[0] + 1, counts[1] + bool(classes), counts[2] + len(classes),
                  counts[3] + len(set(classes) & set(spec.labels))]
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo", type=Path)
    parser.add_argument("--tree", action="append", help="a tree of the zoo (default: every tree with unseen classes)")
    args = parser.parse_args()

    from hf_probex.demo import demo_experts
    from hf_probex.zoo import Zoo

    zoo = Zoo.open(args.zoo)
    trees = args.tree or [t for t in zoo.trees if any(s.split == "test_holdout" for s in zoo.specs(t))]
    print(f"{'tree':<8} {'calibrated on':<22} {'threshold':>9} {'(vocab.)':>8} {'test':>5} {'answered':>8} "
          f"{'classes':>7} {'right':>6} {'unseen':>6} {'given one':>9}")
    for splits in (("train", "val"), ("train", "val", "val_holdout")):
        with tempfile.TemporaryDirectory() as scratch:
            registry = demo_experts(zoo, Path(scratch) / "experts", splits=splits, progress=lambda _: None)
            for tree in trees:
                config = json.loads((Path(scratch) / "experts" / tree / "config.json").read_text())
                calibration = config.get("head_calibration") or config["calibration"]
                vocabulary = calibration.get("vocabulary_threshold") or calibration["threshold"]
                seen = _read(zoo, tree, registry, "test", Path(scratch) / "test")
                unseen = _read(zoo, tree, registry, "test_holdout", Path(scratch) / "unseen")
                print(f"{tree:<8} {','.join(splits):<22} {calibration['threshold']:>9.3f} {vocabulary:>8.3f} "
                      f"{seen[0]:>5} {seen[1]:>8} {seen[2]:>7} {seen[3]:>6} {unseen[0]:>6} {unseen[1]:>9}")


if __name__ == "__main__":
    main()
