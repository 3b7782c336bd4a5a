"""Models of a tree made by strangers' tools (scripts/make_text_strangers.py), read by infer_card as a user would.

For every model of the manifest, stripped of its card and class names (`demo.strip_documentation`; a peft adapter's base the
local root): where it routes, the base_model proposed, and the classes proposed at the expert's calibrated threshold, each
right or wrong against the manifest's truth (a text classifier is also run on the examples of its classes the expert
ships, as infer_card does without candidates); a text classifier also run on every category of the zoo with example
texts, those outside the expert's vocabulary too (`infer_card(candidates=...)`, head_naming: running only). Printed
per recipe: models, routed to the tree, base_model right (the
direct parent: the root for first generations, the zoo child for grandchildren), trained_on proposed / right /
precision / recall (recall over the classes the expert knows), and the same by candidates.

    python scripts/bench_strangers.py STRANGERS --expert DIR --zoo TEXT_BENCH [--json-out OUT]
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
from pathlib import Path

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def evaluate(strangers: Path, expert: Path, zoo_dir: Path) -> list[dict]:
    from hf_probex import infer_card
    from hf_probex import Candidate
    from hf_probex.demo import strip_documentation
    from hf_probex.zoo.fortunes import class_examples
    from hf_probex.zoo import Zoo
    from hf_probex.zoo.trees.text import root_folder

    zoo = Zoo.open(zoo_dir)
    vocabulary = set(zoo.trees["text"]["vocabulary"])
    categories = sorted({label for spec in zoo.specs("text") for label in spec.labels})  # those outside the vocabulary too
    candidates = [Candidate(name, tuple(texts)) for name, texts in class_examples(tuple(categories)).items()]
    manifest = json.loads((strangers / "manifest.json").read_text())
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, truth in sorted(manifest.items()):
            parent = truth["parent"] if truth["recipe"] == "peft-all-linear" else None
            copy = strip_documentation(strangers / name, Path(scratch) / name, base=root_folder() if parent else None)
            row = {"name": name, "recipe": truth["recipe"], "truth": truth["labels"], "parent": truth["parent"],
                   "known": sorted(set(truth["labels"]) & vocabulary)}
            try:
                result = infer_card(copy, experts=[expert])
                by_running = infer_card(copy, experts=[expert], candidates=candidates)
            except Exception as err:  # the benchmark counts a raise as a failure, never stops on it
                row["error"] = f"{type(err).__name__}: {err}"
                rows.append(row)
                continue
            row["routed"] = result.tree
            base = result.fields.get("base_model")
            row["base_model"] = base.value if base else None
            proposed, named = result.fields.get("trained_on"), by_running.fields.get("trained_on")
            row["proposed"] = [] if proposed is None else list(proposed.value)
            row["named"] = [] if named is None else list(named.value)
            rows.append(row)
    return rows


def summarise(rows: list[dict], key: str) -> dict:
    read = [r for r in rows if "error" not in r]
    proposed = sum(len(r[key]) for r in read)
    right = sum(len(set(r[key]) & set(r["truth"])) for r in read)
    known = sum(len(r["known"]) for r in read)
    return {"models": len(read), "proposed": proposed, "right": right,
            "precision": right / proposed if proposed else float("nan"), "recall": right / known if known else float("nan")}


def _pct(value: float) -> str:
    return "-" if value != value else f"{100 * value:.1f}"


def table(rows: list[dict]) -> str:
    groups = collections.defaultdict(list)
    for row in rows:
        groups[row["recipe"]].append(row)
    groups["all"] = rows
    lines = ["| recipe | models | raised | routed to MiniLM | base_model right | trained_on, no candidates: the layers "
             "read, and the classifier run on the expert's examples (proposed: right, precision %, recall %) | "
             "with candidates: every category of the zoo, 33 with 8 examples each (right, precision %, "
             "recall %) |", "|---" * 7 + "|"]
    for name, group in groups.items():
        ok = [r for r in group if "error" not in r]
        w, c = summarise(group, "proposed"), summarise(group, "named")
        lines.append(
            f"| {name} | {len(group)} | {len(group) - len(ok)} | {sum(r['routed'] == MINILM for r in ok)} | "
            f"{sum(r['base_model'] == r['parent'] for r in ok)} | "
            f"{w['proposed']} ({w['right']}, {_pct(w['precision'])}, {_pct(w['recall'])}) | "
            f"{c['proposed']} ({c['right']}, {_pct(c['precision'])}, {_pct(c['recall'])}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("strangers", type=Path)
    parser.add_argument("--expert", type=Path, required=True)
    parser.add_argument("--zoo", type=Path, required=True)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    rows = evaluate(args.strangers, args.expert, args.zoo)
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2))
    print(table(rows))


if __name__ == "__main__":
    main()
