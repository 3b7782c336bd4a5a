"""Recipe shift: how experts and routing fare on a recipe family they never saw (issue 12's table).

For every recipe family F of the zoo (the families are shared by the trees: hf_probex.zoo.recipes), one
expert per tree is made exactly as `hf-probex train` makes it, from the models of the other families
only: layers chosen leave-one-family-out among them, calibration fitted on their out-of-family
predictions, routing fitted on them and the other roots. Then every model of family F, of every tree
(all splits: no choice saw any of them), is

- routed by its weights alone among all the trees' experts (right tree, wrong tree, or none), and
- read by its tree's expert: the classes it proposes at the calibrated threshold (class subsets) or the
  concept (LoRA trees; held-out concepts excluded), each a decision that is right or wrong; for LoRA
  trees also the top-1 concept whatever its confidence (the `top-1 %` column); for class subsets also how
  well the expert's confidences rank the model's own classes first, whatever the threshold (`AP %`: average
  precision per model, mean over models; chance is the share of the vocabulary a model was trained on), and
  whether it read the model's head as a set of rows (`head read`, experts.calibration.head_rows).

Printed per tree and family: models, routing, proposals, precision, recall (of every true class), and
the same pooled by storage, generation, head and class order (each model scored by the expert that
never saw its family). `--features delta --by-group no` reruns it as experts were made before issue 12
(the raw change, calibrated on random folds) for comparison.

    python scripts/bench_shift.py ZOO [--trees vit,vit-twin,resnet,sd] [--out DIR] [--features gram|delta] [--workers N]
        [--head-naming JSON]   # text trees: add the classes named by running the classifier (as infer_card does)
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path

import numpy as np


def make_expert(zoo_dir: Path, tree: str, families: tuple[str, ...], out: Path, features: str | None, by_group: bool,
                workers: int = 1):
    """The expert `hf-probex train` would make from the models of `families` only (cached in `out`)."""
    from hf_probex.experts.training.harness import DEFAULT_METHODS, load_layer_data, train_expert, tree_task
    from hf_probex.experts.hub import Expert
    from hf_probex.experts.training.sweep import select_inputs

    if (out / "config.json").is_file():
        return Expert.from_pretrained(out)
    method = DEFAULT_METHODS[tree_task(zoo_dir, tree)]
    layers = select_inputs(zoo_dir, tree, method, out.parent / f"{out.name}.select.jsonl", groups=families, workers=workers)
    data = load_layer_data(zoo_dir, tree, layers, groups=families)
    expert, _ = train_expert(data, method, features=features, by_group=by_group)
    expert.save_pretrained(out)
    return expert


def evaluate_family(zoo, family: str, experts: dict, registry) -> list[dict]:
    """One row per model of `family` (every tree): where it routes and what its tree's expert proposes. A peft adapter
    is read merged onto its parent, as `infer_card` reads it; a model trained on classes outside the tree's vocabulary
    too (text trees' test_holdout split) is marked `unseen`: its recall counts the classes the expert knows."""
    from hf_probex.adapters import detect
    from hf_probex.experts.calibration.head_rows import read_head
    from hf_probex.reading import open_source
    from hf_probex.routing import route_through

    rows = []
    for tree, expert in experts.items():
        entry = next(e for e in registry.entries if e.tree == tree)
        for spec in zoo.specs(tree):
            if spec.role != "child" or spec.recipe != family or not zoo.is_finished(spec):
                continue
            model = open_source(zoo.model_dir(tree, spec.name))
            base = zoo.model_dir(tree, spec.parent) if spec.hparams.get("layout") == "peft-adapter" else None
            adapter, source, found = route_through(model, detect(model), registry, base=base)
            truth = [spec.concept["name"]] if spec.concept else list(spec.labels)
            row = {"tree": tree, "name": spec.name, "family": family, "root_right": found.root == entry.root,
                   "routed": found.root is not None, "truth": truth, "proposed": [],
                   "slices": {"dtype": spec.hparams.get("dtype"), "sharded": str(spec.hparams.get("sharded")),
                              "generation": str(spec.generation), "head": spec.hparams.get("head", "-"),
                              "order": spec.hparams.get("label_order", "-"), "split": spec.split,
                              "layout": spec.hparams.get("layout", "-")}}
            if not spec.concept and spec.split.endswith("_holdout"):
                row["unseen"] = sorted(set(truth) - set(expert.vocabulary))
            if spec.concept and spec.split.endswith("_holdout"):
                row["holdout"] = True  # concepts the expert never saw: measured by the zero-shot issue, not here
            elif expert.calibration:
                matrix = adapter.read_input(source, entry.inputs, expert.config["conv_layout"])
                head = read_head(adapter, source, expert.row_reader.layer) if expert.row_reader else None
                predictions, confidence = expert.confidences(matrix, heads=[head])
                threshold = expert.calibration_for(head)["threshold"]
                row["head_read"] = expert.calibration_for(head) is not expert.calibration
                if expert.task == "multilabel":
                    row["proposed"] = [v for v, c in zip(expert.vocabulary, confidence[0]) if c >= threshold]
                    row["confidence"] = {v: float(c) for v, c in zip(expert.vocabulary, confidence[0])}
                    row["ap"] = _average_precision(expert.vocabulary, confidence[0], truth)
                    row["ap_chance"] = len(set(truth) & set(expert.vocabulary)) / len(expert.vocabulary)
                else:
                    row["top1"] = expert.vocabulary[int(np.argmax(predictions[0]))]
                    row["proposed"] = [row["top1"]] if confidence[0] >= threshold else []
            rows.append(row)
    return rows


def _average_precision(vocabulary: list[str], scores: np.ndarray, truth: list[str]) -> float:
    """How well the expert's scores rank the model's own classes above the others (chance: their share)."""
    from sklearn.metrics import average_precision_score

    return float(average_precision_score([label in truth for label in vocabulary], scores))


def summarise(rows: list[dict]) -> dict:
    proposed = sum(len(r["proposed"]) for r in rows)
    right = sum(len(set(r["proposed"]) & set(r["truth"])) for r in rows)
    truths = sum(len(set(r["truth"]) - set(r.get("unseen", ()))) for r in rows if not r.get("holdout"))
    ranked = [r for r in rows if "top1" in r]
    top1 = sum(r["top1"] in r["truth"] for r in ranked) / len(ranked) if ranked else float("nan")
    scored = [r for r in rows if "ap" in r]
    ap = float(np.mean([r["ap"] for r in scored])) if scored else float("nan")
    chance = float(np.mean([r["ap_chance"] for r in scored])) if scored else float("nan")
    return {"head_read": sum(bool(r.get("head_read")) for r in rows), "top1": top1, "ap": ap, "ap_chance": chance,
            "models": len(rows), "routed_right": sum(r["root_right"] for r in rows),
            "wrong_tree": sum(r["routed"] and not r["root_right"] for r in rows), "proposed": proposed, "right": right,
            "precision": right / proposed if proposed else float("nan"), "recall": right / truths if truths else float("nan"),
            "models_with_proposal": sum(bool(r["proposed"]) for r in rows)}


def _pct(value: float) -> str:
    return "-" if value != value else f"{100 * value:.1f}"


def table(title: str, groups: dict[str, list[dict]]) -> str:
    lines = [f"### {title}", "", "| held out | models | routed right | wrong tree | proposed | right | precision % | "
             "recall % | models with a proposal | head read | top-1 % | AP % (chance) |", "|---" * 12 + "|"]
    for name, rows in groups.items():
        s = summarise(rows)
        lines.append(f"| {name} | {s['models']} | {s['routed_right']} ({_pct(s['routed_right'] / max(s['models'], 1))} %) | "
                     f"{s['wrong_tree']} | {s['proposed']} | {s['right']} | {_pct(s['precision'])} | {_pct(s['recall'])} | "
                     f"{s['models_with_proposal']} | {s['head_read']} | {_pct(s['top1'])} | {_pct(s['ap'])} ({_pct(s['ap_chance'])}) |")
    return "\n".join(lines)


def by_family(rows: list[dict]) -> dict[str, list[dict]]:
    groups = collections.defaultdict(list)
    for row in rows:
        groups[row["family"]].append(row)
    groups["all families"] = rows
    if any("unseen" in r for r in rows):
        groups["trained on unseen classes too"] = [r for r in rows if "unseen" in r]
    return dict(groups)


def with_running(rows: list[dict], head_naming: Path, agreement: tuple[float, float] | None = None) -> list[dict]:
    """`rows` with the classes scripts/bench_head_naming.py named by running each classifier on the vocabulary's
    examples (its --json; each family's calibration fitted on the other families) added to the expert's: what
    infer_card proposes. With `agreement` (weights, running), also the classes both views name at least that
    confidently: a candidate rule for infer_card, measured here before it is shipped."""
    results = json.loads(head_naming.read_text())["results"]
    examples = next(r for r in results if r["way"] == "examples")
    out = []
    for row in rows:
        proposed = row["proposed"] + examples["proposed"].get(row["name"], [])
        if agreement:
            weights, running = agreement
            proposed += [c for c, conf in examples["rows"].get(row["name"], [])  # [candidate, confidence] a head row
                         if c is not None and conf >= running and row.get("confidence", {}).get(c, 0.0) >= weights]
        out.append({**row, "proposed": list(dict.fromkeys(proposed))})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo")
    parser.add_argument("--trees", default=None, help="comma-separated (default: every tree)")
    parser.add_argument("--out", default=None, help="folder for the experts and rows (default: ZOO/../shift-<features>)")
    parser.add_argument("--features", default=None, choices=["gram", "delta"], help="default: each task's")
    parser.add_argument("--workers", type=int, default=1, help="processes choosing each expert's layers (default: 1)")
    parser.add_argument("--head-naming", type=Path, default=None,
                        help="scripts/bench_head_naming.py --json-out output: also count the classes it names by running")
    parser.add_argument("--agreement", default=None, metavar="W,R",
                        help="with --head-naming: also count the classes the expert gives >= W and a head row >= R")
    parser.add_argument("--by-group", default="yes", choices=["yes", "no"],
                        help="calibrate and select on held-out families (yes, the default) or random folds (no)")
    args = parser.parse_args()

    from hf_probex.experts.registry import ExpertRegistry
    from hf_probex.zoo import Zoo

    zoo_dir = Path(args.zoo)
    zoo = Zoo.open(zoo_dir)
    trees = args.trees.split(",") if args.trees else list(zoo.trees)
    out = Path(args.out) if args.out else zoo_dir.parent / f"shift-{args.features or 'default'}-{args.by_group}"
    out.mkdir(parents=True, exist_ok=True)
    families = sorted({s.recipe for t in trees for s in zoo.specs(t) if s.role == "child"})
    all_rows: list[dict] = []
    for family in families:
        rows_file = out / f"rows-{family}.json"
        if rows_file.is_file():
            all_rows += json.loads(rows_file.read_text())
            continue
        start = time.perf_counter()
        experts, folders = {}, []
        for tree in trees:
            tree_families = tuple(sorted({s.recipe for s in zoo.specs(tree) if s.role == "child"} - {family}))
            if len(tree_families) == len({s.recipe for s in zoo.specs(tree) if s.role == "child"}):
                continue  # this tree has no model of the family: nothing to hold out
            folder = out / family / tree
            experts[tree] = make_expert(zoo_dir, tree, tree_families, folder, args.features, args.by_group == "yes",
                                        args.workers)
            folders.append(folder)
        # every tree's expert takes part in routing, the held-out family's trees with the expert that never saw it
        for tree in trees:
            if tree not in experts:
                tree_families = tuple(sorted({s.recipe for s in zoo.specs(tree) if s.role == "child"}))
                folder = out / "all" / tree
                make_expert(zoo_dir, tree, tree_families, folder, args.features, args.by_group == "yes", args.workers)
                folders.append(folder)
        registry = ExpertRegistry.from_locations(folders)
        rows = evaluate_family(zoo, family, experts, registry)
        rows_file.write_text(json.dumps(rows))
        all_rows += rows
        s = summarise(rows)
        print(f"{family}: {s['models']} models, routed right {s['routed_right']}, wrong tree {s['wrong_tree']}, "
              f"{s['proposed']} proposed, precision {_pct(s['precision'])} %, recall {_pct(s['recall'])} % "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    print()
    for tree in trees:
        tree_rows = [r for r in all_rows if r["tree"] == tree]
        print(table(f"{tree}: each recipe family held out", by_family(tree_rows)), "\n")
        if args.head_naming:
            named = with_running(tree_rows, args.head_naming)
            print(table(f"{tree}: each recipe family held out, the weights' classes and those named by running the "
                        f"classifier on the vocabulary's examples (as infer_card proposes them)", by_family(named)), "\n")
            if args.agreement:
                weights, running = (float(x) for x in args.agreement.split(","))
                agreed = with_running(tree_rows, args.head_naming, (weights, running))
                print(table(f"{tree}: the same, and the classes the expert gives >= {weights} and a head row >= "
                            f"{running}", by_family(agreed)), "\n")
    for key in ("dtype", "sharded", "generation", "head", "order", "layout"):
        groups = collections.defaultdict(list)
        for row in all_rows:
            if row["slices"][key] != "-":
                groups[f"{key} {row['slices'][key]}"].append(row)
        print(table(f"every tree, by {key} (each model scored by the expert that never saw its family)", dict(groups)), "\n")


if __name__ == "__main__":
    main()
