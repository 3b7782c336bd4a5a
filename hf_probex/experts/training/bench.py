"""The expert benchmark: every method on each tree of a zoo, same folds, one table per tree.

For each tree: the layer (given, or selected by the fast ridge over every candidate layer, see
`sweep.select_layer`), then every method on it (root-centred; ProbeX and MVProbe also raw, to show
what centring buys; ProbeX also at the paper's size, 28x our default's parameters at width 128), the
classification head read as a set and by ridge where the tree has one, and the fusions of a hidden
layer with the head; and ours, ridge on several layers stacked (`sweep.select_stack`: chosen greedily
by cross-validation). Class-subset rows read each layer's change as its Gram (the default features),
and ridge, ProbeX and MVProbe also the change itself. Zero-shot trees also get ProbeX at temperature
0.1. All rows use the same folds: one recipe family held out each where the zoo records families, else
k random folds; reports go to a JSON-lines file as they finish (resumable, see `runs.run_all`), and
`markdown` renders them for docs/benchmarks.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

from ..methods.models import PAPER
from .report import describe_cv
from .runs import Run, run_all
from .sweep import select_layer, select_stack
from .fit import TrainConfig

BENCH_METHODS = ("probex", "mvprobe", "dense", "ridge", "statnn")
BEGIN, END = "<!-- hf-probex bench: begin -->", "<!-- hf-probex bench: end -->"


def head_layer(layers: Sequence[str]) -> str | None:
    """The classification head's weight among a tree's layers (transformers names it `classifier`), if any."""
    heads = [name for name in layers if re.match(r"^classifier(\.\d+)?\.weight$", name)]
    return heads[0] if heads else None


def plan_runs(tree: str, layer: str, task: str, head: str | None, methods: Sequence[str] = BENCH_METHODS,
              stack: Sequence[str] = (), paper: bool = False) -> list[Run]:
    """The benchmark's rows for one tree (see the module docstring); `stack`: the stacked expert's layers;
    `paper`: ProbeX and MVProbe at the papers' sizes in every row (else at ours, plus one paper-size ProbeX row)."""
    def sizes(method: str) -> tuple:
        return tuple(PAPER.get(method, {}).items()) if paper else ()

    runs = [Run(tree, ((layer, method),), hparams=sizes(method)) for method in methods]
    if "probex" in methods and not paper:
        runs.append(Run(tree, ((layer, "probex"),), hparams=tuple(PAPER["probex"].items()),
                        label="probex (paper size, " + "/".join(str(v) for v in PAPER["probex"].values()) + ")"))
    if len(stack) > 1:
        runs.append(Run(tree, ((tuple(stack), "ridge"),), label=f"ridge, {len(stack)} layers stacked (ours)"))
    if task == "multilabel":  # the same experts on the raw change: what the Gram features buy across recipes
        runs += [Run(tree, ((layer, method),), label=f"{method} (change, not its Gram)", features="delta",
                     hparams=sizes(method)) for method in ("ridge", "probex", "mvprobe") if method in methods]
    if task == "zeroshot":
        if "probex" in methods:
            runs.append(Run(tree, ((layer, "probex"),), label="probex (T=0.1)", temperature=0.1, hparams=sizes("probex")))
        return runs
    runs += [Run(tree, ((layer, method),), centre=False, label=f"{method} (raw)", hparams=sizes(method))
             for method in ("probex", "mvprobe") if method in methods]
    if head:
        runs += [
            Run(tree, ((head, "headset"),), label="headset (head)"),
            Run(tree, ((head, "ridge"),), label="ridge (head)"),
            Run(tree, ((layer, "ridge"), (head, "ridge")), label="ridge (layer) + ridge (head)"),
            Run(tree, ((layer, "probex"), (head, "headset")), label="probex (layer) + headset (head)"),
        ]
    return runs


def run_bench(zoo: str | Path, out: Path, *, trees: Sequence[str] | None = None, layers: dict[str, str] | None = None,
              methods: Sequence[str] = BENCH_METHODS, workers: int = 1, folds: int = 5, seed: int = 0,
              config: TrainConfig | None = None, paper: bool = False,
              progress: Callable[[str], None] | None = None) -> dict[str, list[dict]]:
    """Benchmark every tree of `zoo` (or `trees`); returns {tree: reports in row order}.

    `layers` fixes a tree's layer; the others are selected by ridge (kept in `out` with a `.select`
    suffix). `paper`: ProbeX and MVProbe at the papers' sizes (`config` then usually `PAPER_TRAINING`).
    Reports are appended to `out` and reused when rerun with the same settings.

    Raises:
        ValueError: an unknown tree or layer.
    """
    from ...weightsets import open_weight_set
    from .harness import candidate_layers, tree_task

    weights = open_weight_set(zoo)
    unknown = sorted(set(trees or []) - set(weights.trees))
    if unknown:
        raise ValueError(f"no tree named {unknown[0]!r}; trees: {', '.join(weights.trees)}")
    options = {"workers": workers, "folds": folds, "seed": seed, "config": config, "progress": progress}
    results = {}
    for tree in trees or weights.trees:
        available = candidate_layers(weights, tree)
        layer = (layers or {}).get(tree)
        if layer is None:
            layer = select_layer(zoo, tree, out.with_suffix(".select.jsonl"), **options)
        elif layer not in available:
            raise ValueError(f"tree {tree!r} has no layer {layer!r}; layers: {', '.join(available)}")
        task = tree_task(weights, tree)
        stack = select_stack(zoo, tree, out.with_suffix(".select.jsonl"), **options)
        runs = plan_runs(tree, layer, task, head_layer([n for n in available if n != layer]), methods, stack, paper)
        results[tree] = run_all(zoo, runs, out, **options)
    return results


def _cell(stat: dict | None) -> str:
    return "-" if stat is None else f"{stat['mean']:.1f} ± {stat['se']:.1f}"


def best_row(reports: list[dict]) -> dict:
    """The report with the highest first-metric CV mean."""
    return max(reports, key=lambda r: next(iter(r["metrics"].values()))["mean"])


def markdown(results: dict[str, list[dict]]) -> str:
    """One markdown table per tree: every row's metrics (mean ± SE over folds), shuffled labels, cost, references."""
    parts = []
    for tree, reports in results.items():
        first = reports[0]
        metrics = list(first["metrics"])
        main = first["layer"]  # the first row reads the tree's layer (see plan_runs)
        held = f" (+{first['holdout_models']} held-out)" if first["holdout_models"] else ""
        parts.append(f"### {tree}: {first['models']} models{held}, {first['task']}, {describe_cv(first)}, "
                     f"layer `{main}`\n")
        parts.append("| method | " + " | ".join(metrics) + f" | shuffled {metrics[0]} | params | train s / fold | ms / model |")
        parts.append("|---" * (len(metrics) + 5) + "|")
        best = best_row(reports)
        for report in reports:
            shuffled = report["shuffled"][metrics[0]] if report["shuffled"] else None
            name = f"**{report['label']}**" if report is best else report["label"]
            parts.append(f"| {name} | " + " | ".join(_cell(report["metrics"][m]) for m in metrics)
                         + f" | {_cell(shuffled)} | {report['parameters']:,} | {report['train_seconds']['mean']:.1f}"
                         f" | {report['predict_ms_per_model']:.2f} |")
        for ref, stats in first["references"].items():
            parts.append(f"| ref: {ref} | " + " | ".join(_cell(stats.get(m)) for m in metrics) + " | | | | |")
        if first["chance"]:
            parts.append("| ref: chance | " + " | ".join(
                f"{first['chance'][m]:.1f}" if m in first["chance"] else "-" for m in metrics) + " | | | | |")
        other = [f"- {r['label']}: `{r['layer']}`" for r in reports if r["layer"] != main]
        if other:
            parts.append("\nRows that read other layers:\n\n" + "\n".join(other))
        parts.append("")
    return "\n".join(parts)


def write_section(path: Path, body: str) -> None:
    """Put `body` between the bench markers of `path` (appended with the markers if they are missing)."""
    text = path.read_text() if path.is_file() else ""
    block = f"{BEGIN}\n{body.rstrip()}\n{END}"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
