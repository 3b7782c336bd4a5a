"""Summaries of a zoo for people: trees, splits, counts, sizes, and how good its models are."""

from __future__ import annotations

from collections import Counter

import numpy as np

from .store import Zoo
from .trees import FAMILIES


def _accuracy_stats(accuracies: list[float]) -> dict:
    return {"child_accuracy_mean": float(np.mean(accuracies)) if accuracies else None,
            "child_accuracy_min": float(np.min(accuracies)) if accuracies else None}


def summarize(zoo: Zoo) -> dict:
    """Per tree: family, root, planned and finished models, split counts, sizes, accuracy statistics, and
    the finished children and their accuracy per recipe family (`by_recipe`)."""
    trees = {}
    for tree, info in zoo.trees.items():
        specs = zoo.specs(tree)
        records = {s.name: zoo.record(tree, s.name) for s in specs}
        children = [s for s in specs if s.role == "child"]
        done = [s for s in children if records[s.name] is not None]
        accuracies = [records[s.name]["test_accuracy"] for s in done if "test_accuracy" in records[s.name]]
        root_record = records.get("root") or {}
        by_recipe = {}
        for recipe in sorted({s.recipe for s in done}):
            ones = [records[s.name] for s in done if s.recipe == recipe]
            by_recipe[recipe] = {"children_built": len(ones),
                                 **_accuracy_stats([r["test_accuracy"] for r in ones if "test_accuracy" in r])}
        trees[tree] = {
            "family": info["family"],
            "root": info["root_repo_id"],
            "root_accuracy": root_record.get("test_accuracy"),
            "children_planned": len(children),
            "children_built": len(done),
            "second_generation": sum(1 for s in children if s.generation > 1),
            "splits": dict(Counter(s.split for s in children)),
            "cards": dict(Counter(s.card for s in children)),
            "labels": len(info["vocabulary"]),
            "holdout_concepts": len(info.get("holdout_concepts", [])),
            **_accuracy_stats(accuracies),
            "children_at_80": (sum(a >= 0.8 for a in accuracies) / len(accuracies)) if accuracies else None,
            "bytes": sum(r["bytes"] for r in records.values() if r),
            "train_seconds": sum(r["seconds"] for r in records.values() if r),
            "by_recipe": by_recipe,
        }
    return {"preset": zoo.plan["preset"], "seed": zoo.plan["seed"], "path": str(zoo.root), "trees": trees}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def format_summary(zoo: Zoo) -> str:
    """A plain-text table of `summarize(zoo)`."""
    summary = summarize(zoo)
    lines = [
        f"zoo {summary['path']}  (preset {summary['preset']}, seed {summary['seed']})",
        f"{'tree':<9} {'family':<8} {'built':>9} {'labels':>6} {'root acc':>8} {'child acc':>9} {'>=80%':>6} "
        f"{'size MB':>8} {'train s':>8}  splits",
    ]
    for tree, t in summary["trees"].items():
        splits = " ".join(f"{k}={v}" for k, v in sorted(t["splits"].items()))
        lines.append(
            f"{tree:<9} {t['family']:<8} {t['children_built']:>4}/{t['children_planned']:<4} {t['labels']:>6} "
            f"{_pct(t['root_accuracy']):>8} {_pct(t['child_accuracy_mean']):>9} {_pct(t['children_at_80']):>6} "
            f"{t['bytes'] / 1e6:>8.1f} {t['train_seconds']:>8.0f}  {splits}"
        )
    lines += ["", "children by recipe family: built, accuracy on their own classes (mean / min %)"]
    for tree, t in summary["trees"].items():
        for recipe, r in t["by_recipe"].items():
            lines.append(f"{tree:<9} {recipe:<17} {r['children_built']:>5}  "
                         f"{_pct(r['child_accuracy_mean']):>5} / {_pct(r['child_accuracy_min'])}")
    return "\n".join(lines)


def check_zoo(zoo: Zoo) -> list[str]:
    """One line per finished model whose weight files are missing or corrupt, saying how to fix it."""
    problems = []
    for spec in zoo.specs():
        if not zoo.is_finished(spec):
            continue
        problem = zoo.problem(spec, FAMILIES[zoo.trees[spec.tree]["family"]].weight_files(spec))
        if problem:
            problems.append(f"{problem}; rerun `hf-probex zoo build --preset {zoo.plan['preset']} "
                            f"--seed {zoo.plan['seed']} --out {zoo.root}` to rebuild it")
    return problems
