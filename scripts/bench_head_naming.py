"""How well running a text classifier on candidate texts names its head rows (hf_probex.head_naming), per recipe family.

On a text zoo (text-bench by default: whatever of it is built), every finished classifier child (transformers, peft
adapter or merged, SetFit; sentence-transformers children have no head) is opened with
`text_classifiers.open_text_classifier` and run once on the texts of every category of the zoo (the tree's
vocabulary and the held-out children's unseen categories): each name in `head_naming.PROMPTS`, and `--examples`
texts per category from the fortunes test split. Two ways of giving candidates are measured: by name ("names") and
by name with example texts ("examples"). Per family, and per layout:

- top-1 / top-5 among all the vocabulary's categories: the row's assigned candidate is its class / its class is
  among the row's five best scores; and top-1 among 6 (its class and 5 others drawn at random);
- precision and recall at the calibrated threshold, the calibration fitted on the OTHER families
  (`head_naming.fit_naming_calibration`, to 95 % in each of them), on the rows named among the vocabulary (rows of
  unseen categories are wrong whatever they are named); recall counts the rows whose class is in the vocabulary;
- "none of these": each row named among the vocabulary without its own class, and how often it is still proposed;
- rows of categories outside the vocabulary (the held-out children's unseen ones): top-1 / top-5 named among every
  category of the zoo, as a user who lists them as candidates would;
- with --json-out, each model's classes proposed among the vocabulary (`proposed`, per way) and each head row's name and
  confidence (`rows`): what `infer_card` adds to its expert's proposals when the expert ships the vocabulary's
  examples (scripts/bench_shift.py --head-naming);
- seconds per model: opening it, and running it on one way's texts.

The calibration printed last (and saved with --json-out) is fitted on every family: what head_naming.CALIBRATIONS holds.

    python scripts/bench_head_naming.py [--zoo DIR] [--examples 8] [--cache DIR] [--json-out OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

WAYS = ("names", "examples")
OTHERS_DRAWN = 5  # the "among 6" candidate lists: the true class and this many others


def default_zoo() -> Path:
    from hf_probex.settings import default_cache_dir

    return default_cache_dir() / "zoos" / "text-bench-seed0"


def collect(zoo: Path, n_examples: int, cache: Path | None) -> tuple[list[dict], list[str], dict[str, list[str]]]:
    """Run every finished classifier child of the zoo on every category's texts (cached per model in `cache`)."""
    import torch

    from hf_probex.errors import NotAClassifierError
    from hf_probex.head_naming import Candidate
    from hf_probex.text_classifiers import open_text_classifier
    from hf_probex.zoo.fortunes import class_examples
    from hf_probex.zoo.store import Zoo

    torch.set_num_threads(1)
    store = Zoo.open(zoo)
    tree = next(name for name, info in store.trees.items() if info["family"] == "text")
    vocabulary = list(store.trees[tree]["vocabulary"])
    specs = [s for s in store.specs(tree) if s.role == "child" and store.is_finished(s)]
    categories = vocabulary + sorted({label for s in specs for label in s.labels} - set(vocabulary))
    examples = class_examples(tuple(categories), n_examples)  # what a text expert ships (Expert.examples)
    bases = {s.repo_id: store.model_dir(tree, s.name) for s in store.specs(tree)}
    runs = []
    for spec in specs:
        if spec.hparams.get("layout") == "sentence-transformers":
            continue
        cached = cache / f"{spec.name}-{n_examples}.json" if cache else None
        if cached and cached.is_file():
            run = json.loads(cached.read_text())
        else:
            try:
                classifier = open_text_classifier(store.model_dir(tree, spec.name), bases=bases)
            except NotAClassifierError:
                continue
            run = {"load_seconds": classifier.load_seconds}
            for way in WAYS:
                groups = [Candidate(c, tuple(examples[c]) if way == "examples" else ()).texts_to_run() for c in categories]
                started = time.perf_counter()
                logits = classifier.logits([t for g in groups for t in g])
                run[f"{way}_seconds"] = time.perf_counter() - started
                bounds = np.cumsum([0] + [len(g) for g in groups])
                run[way] = {c: logits[a:b].tolist() for c, a, b in zip(categories, bounds[:-1], bounds[1:])}
            if cached:
                cached.parent.mkdir(parents=True, exist_ok=True)
                cached.write_text(json.dumps(run))
        runs.append({**run, "name": spec.name, "labels": list(spec.labels), "family": spec.recipe,
                     "layout": spec.hparams["layout"], "split": spec.split})
        print(f"  {spec.name} {spec.hparams['layout']}: open {run['load_seconds']:.2f} s", flush=True)
    return runs, vocabulary, examples


def namings(run: dict, way: str, candidates: list[str]):
    from hf_probex.head_naming import CALIBRATIONS, assign, score_matrix

    scores = score_matrix([np.asarray(run[way][c]) for c in candidates])
    return assign(scores, candidates, CALIBRATIONS[way], way)


def decisions(runs: list[dict], way: str, vocabulary: list[str], seed: int = 0) -> list[dict]:
    """Every model's namings: among the vocabulary, among it without each row's class, among 6."""
    rng = np.random.default_rng(seed)
    out = []
    for run in runs:
        full = namings(run, way, vocabulary)
        absent = []
        for row, label in enumerate(run["labels"]):
            if label in vocabulary:
                naming = namings(run, way, [c for c in vocabulary if c != label])
                absent.append(dataclasses.replace(naming, rows=[naming.rows[row]]))
        among6 = []
        for row, label in enumerate(run["labels"]):
            if label in vocabulary:
                others = [c for c in vocabulary if c not in run["labels"]]
                drawn = [label, *rng.choice(others, size=min(OTHERS_DRAWN, len(others)), replace=False).tolist()]
                rest = [c for c in run["labels"] if c != label and c in vocabulary]  # the head's other classes stay
                naming = namings(run, way, drawn + rest)
                among6.append(naming.rows[row].candidate == label)
        everything = namings(run, way, list(run[way]))  # every category the zoo has, those no child trained on too
        unseen = [(row, label) for row, label in enumerate(run["labels"]) if label not in vocabulary]
        out.append({"run": run, "full": full, "absent": absent, "among6": among6, "everything": everything,
                    "unseen": unseen})
    return out


def evaluate(runs: list[dict], way: str, vocabulary: list[str]) -> dict:
    from hf_probex.head_naming import fit_naming_calibration

    found = decisions(runs, way, vocabulary)
    families = sorted({d["run"]["family"] for d in found})
    per_model, proposed, named = {}, {}, {}
    for family in families:  # each family's proposals from a calibration fitted on the others
        train = [d for d in found if d["run"]["family"] != family]
        calibration = fit_naming_calibration(*_calibration_set(train))
        for d in found:
            if d["run"]["family"] == family:
                per_model[d["run"]["name"]] = _score(d, calibration, vocabulary)
                rows = [(r.candidate, float(calibration.confidence(np.array([r.margin]))[0])) for r in d["full"].rows]
                named[d["run"]["name"]] = rows
                proposed[d["run"]["name"]] = [c for c, conf in rows if c is not None and conf >= calibration.threshold]
    shipped = fit_naming_calibration(*_calibration_set(found))
    table = {}
    for key in ("family", "layout"):
        for value in sorted({d["run"][key] for d in found}):
            table[f"{key}={value}"] = _sum([per_model[d["run"]["name"]] for d in found if d["run"][key] == value])
    table["all"] = _sum(list(per_model.values()))
    return {"way": way, "table": table, "calibration": shipped.to_dict(), "proposed": proposed, "rows": named}


def _calibration_set(found: list[dict]):
    namings_, labels, groups = [], [], []
    for d in found:
        for naming in [d["full"], *d["absent"]]:
            namings_.append(naming)
            labels.append(d["run"]["labels"])
            groups.append(d["run"]["family"])
    return namings_, labels, groups


def _score(d: dict, calibration, vocabulary: list[str]) -> dict:
    run, full = d["run"], d["full"]
    counts = {"models": 1, "rows": 0, "known": 0, "top1": 0, "top5": 0, "among6": sum(d["among6"]), "proposed": 0,
              "right": 0, "absent": len(d["absent"]), "absent_named": 0, "load": run["load_seconds"],
              "forward": run[f"{full.calibration_name}_seconds"]}
    for row, label in enumerate(run["labels"]):
        named = full.rows[row]
        counts["rows"] += 1
        proposed = named.candidate is not None and calibration.confidence(np.array([named.margin]))[0] >= calibration.threshold
        counts["proposed"] += int(proposed)
        counts["right"] += int(proposed and named.candidate == label)
        if label in vocabulary:
            column = full.scores[:, row]
            counts["known"] += 1
            counts["top1"] += int(named.candidate == label)
            counts["top5"] += int((column > column[vocabulary.index(label)]).sum() < 5)
    everything, categories = d["everything"], d["everything"].candidates
    counts["unseen"] = len(d["unseen"])
    counts["unseen_top1"] = sum(everything.rows[row].candidate == label for row, label in d["unseen"])
    counts["unseen_top5"] = sum(int((everything.scores[:, row] > everything.scores[categories.index(label), row]).sum() < 5)
                                for row, label in d["unseen"])
    for naming in d["absent"]:
        row = naming.rows[0]
        counts["absent_named"] += int(calibration.confidence(np.array([row.margin]))[0] >= calibration.threshold)
    return counts


def _sum(items: list[dict]) -> dict:
    return {k: sum(i[k] for i in items) for k in items[0]} if items else {}


def print_table(result: dict, vocabulary: list[str]) -> None:
    pct = lambda a, b: f"{100 * a / b:.1f}" if b else "-"  # noqa: E731
    print(f"\n### candidates by {result['way']}: {len(vocabulary)} categories (chance top-1 {100 / len(vocabulary):.1f} %, "
          f"among its classes and 5 others); precision / recall at the threshold fitted on the other families\n")
    print("| held out | models | rows | top-1 % | top-5 % | top-1, its classes + 5 others % | proposed | precision % | recall % | "
          "none of these named | rows of unseen categories: top-1 / top-5 % among all | s open | s run |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key, c in result["table"].items():
        print(f"| {key} | {c['models']} | {c['rows']} | {pct(c['top1'], c['known'])} | {pct(c['top5'], c['known'])} | "
              f"{pct(c['among6'], c['known'])} | {c['proposed']} | {pct(c['right'], c['proposed'])} | "
              f"{pct(c['right'], c['known'])} | {c['absent_named']} of {c['absent']} | {c['unseen']}: "
              f"{pct(c['unseen_top1'], c['unseen'])} / {pct(c['unseen_top5'], c['unseen'])} | {c['load'] / c['models']:.2f} | "
              f"{c['forward'] / c['models']:.2f} |")
    cal = result["calibration"]
    print(f"\ncalibration fitted on every family (full and none-of-these namings): a={cal['a']:.4f} b={cal['b']:.4f} "
          f"threshold={cal['threshold']:.4f}, precision {cal['oof_precision']:.3f} recall {cal['oof_recall']:.3f} of "
          f"{cal['decisions']} decisions, {cal['groups']} families")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=None, help="a text zoo folder (default: the cached text-bench)")
    parser.add_argument("--examples", type=int, default=8, help="example texts per category (default: 8)")
    parser.add_argument("--cache", type=Path, default=None, help="keep each model's outputs here to rerun faster")
    parser.add_argument("--json-out", type=Path, default=None, help="write the tables and calibrations here")
    args = parser.parse_args()
    zoo = args.zoo or default_zoo()
    runs, vocabulary, _ = collect(zoo, args.examples, args.cache)
    if not runs:
        raise SystemExit(f"no finished classifier in {zoo}: build the zoo first (hf-probex zoo build --preset text-bench)")
    results = [evaluate(runs, way, vocabulary) for way in WAYS]
    print(f"\n## {zoo}: {len(runs)} classifiers")
    for result in results:
        print_table(result, vocabulary)
    if args.json_out:
        args.json_out.write_text(json.dumps({"zoo": str(zoo), "classifiers": len(runs), "results": results}, indent=2))


if __name__ == "__main__":
    main()
