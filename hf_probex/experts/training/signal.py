"""The signal check: does a tree's weights carry what its models were trained on, whatever their recipe?

For each candidate layer of each tree, a ridge regression on z-scored features (its penalty tuned by
generalised cross-validation inside the training folds) predicts the training classes (discriminative
trees: per-label accuracy at threshold 0.5, the ProbeX metric) or the concept (LoRA trees: top-1),
beside references: a constant, the label frequency, and the same ridge trained on shuffled labels. The
features are what the default experts read (`hf_probex.experts.methods.features`): for discriminative trees the
Gram of each layer's change from the root (the layer's Gram where no root is known), for LoRA trees
the update itself. Where the zoo records recipe families the folds hold one family out each, so the
signal counted is the one that survives a recipe the ridge never saw; otherwise k random folds. Means
come with standard errors over folds, and the best layer gets a learning curve over the number of
training models. A zoo passes when every discriminative tree's best hidden layer beats its
shuffled-label reference by at least `MIN_MARGIN` points.

It reads a zoo (`hf-probex zoo signal`) but measures with the experts' ridge, folds and features, so it lives with
the experts, above the zoo it checks.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ...weightsets import WeightSet, open_weight_set
from ...zoo.store import Zoo
from .evaluation import kfold, label_matrix, mean_se, per_label_accuracy, references, top_k_accuracy
from ..methods.ridge import fit_ridge
from ..methods.shaping import layer_shapes, read_layers

MIN_MARGIN = 10.0
_HEAD_PREFIXES = ("classifier.", "fc.")


def _fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    return fit_ridge(x_train, y_train).predict(x_test)


def _score(predictions: np.ndarray, targets: np.ndarray, task: str) -> float:
    if task == "multilabel":
        return per_label_accuracy(predictions, targets)
    return top_k_accuracy(predictions, targets.argmax(1), 1)


def _cross_validate(x, y, task, splits, seed, n_train=None, shuffle=False) -> dict:
    rng = np.random.default_rng(seed + 1)
    scores = []
    for train, test in splits:
        if n_train is not None:
            train = rng.choice(train, size=min(n_train, len(train)), replace=False)
        targets = y[train][rng.permutation(len(train))] if shuffle else y[train]
        scores.append(_score(_fit_predict(x[train], targets, x[test]), y[test], task))
    return mean_se(scores)


def _gram_features(layers: dict[str, np.ndarray], record, root) -> dict[str, np.ndarray]:
    """Each layer as the default class-subset experts read it: the Gram of its change from the root, or of
    the layer itself where the root is unknown or shaped otherwise (a re-initialised head)."""
    import torch

    from ..methods.features import gram

    shapes = layer_shapes(record.path, record.kind, record.base)
    root_layers = read_layers([replace(record, path=root)], names=set(layers)) if root is not None else {}
    out = {}
    for name, flat in layers.items():
        offset = root_layers.get(name)
        change = flat - offset if offset is not None and offset.shape[1] == flat.shape[1] else flat
        out[name] = gram(torch.from_numpy(change), [(name, shapes[name])]).flatten(1).numpy()
    return out


def _learning_curve_sizes(n_train: int) -> list[int]:
    sizes, size = [], 50
    while size < n_train:
        sizes.append(size)
        size *= 2
    return sizes + [n_train]


def check_tree(weights: WeightSet, tree: str, *, folds: int = 5, seed: int = 0, progress: bool = True) -> dict:
    """The signal report of one tree (see the module docstring)."""
    from tqdm.auto import tqdm

    records = weights.for_tree(tree)
    kind = records[0].kind if records else "classifier"
    if kind == "lora":
        records = [r for r in records if r.split in ("train", "val", "test")]  # in-distribution concepts
        vocabulary = sorted({r.labels[0] for r in records})
        task = "multiclass"
    else:
        vocabulary = weights.vocabularies[tree]
        task = "multilabel"
    if len(records) < 2 * folds:
        return {"tree": tree, "task": task, "models": len(records), "skipped": f"only {len(records)} models"}
    y = label_matrix([r.labels for r in records], vocabulary)
    layers = read_layers(records, progress=progress)
    if task == "multilabel":
        layers = _gram_features(layers, records[0], weights.roots.get(tree))
    groups = [r.group for r in records]
    by_family = all(groups) and len(set(groups)) >= 2
    splits = ([(np.flatnonzero(np.array(groups) != g), np.flatnonzero(np.array(groups) == g)) for g in sorted(set(groups))]
              if by_family else kfold(len(y), folds, seed))
    refs = references(y, task, splits, lambda pred, target: _score(pred, target, task))
    rows = []
    for name, x in tqdm(layers.items(), desc=f"{tree}: layers", unit="layer", disable=not progress, leave=False):
        rows.append({
            "layer": name,
            "features": int(x.shape[1]),
            "is_head": name.startswith(_HEAD_PREFIXES),
            "ridge": _cross_validate(x, y, task, splits, seed),
            "shuffled": _cross_validate(x, y, task, splits, seed, shuffle=True),
        })
    hidden = [r for r in rows if not r["is_head"]]
    best = max(hidden, key=lambda r: r["ridge"]["mean"])
    n_train = max(len(train) for train, _ in splits)
    curve = [
        {"train_models": size, **_cross_validate(layers[best["layer"]], y, task, splits, seed, n_train=size)}
        for size in _learning_curve_sizes(n_train)
    ]
    margin = best["ridge"]["mean"] - best["shuffled"]["mean"]
    return {
        "tree": tree,
        "task": task,
        "metric": "per-label accuracy %" if task == "multilabel" else "top-1 accuracy %",
        "models": len(records),
        "labels": len(vocabulary),
        "folds": len(splits),
        "cv": "leave-one-recipe-family-out" if by_family else "k-fold",
        "references": refs,
        "layers": rows,
        "best_layer": best["layer"],
        "margin_over_shuffled": margin,
        "passed": margin >= MIN_MARGIN if task == "multilabel" else None,
        "learning_curve": curve,
    }


def signal_check(zoo_or_path, *, trees: list[str] | None = None, folds: int = 5, seed: int = 0, progress: bool = True) -> dict:
    """Run `check_tree` on every tree (or `trees`) of a zoo or Model-J folder."""
    weights = open_weight_set(zoo_or_path.root if isinstance(zoo_or_path, Zoo) else zoo_or_path)
    unknown = sorted(set(trees or []) - set(weights.trees))
    if unknown:
        raise ValueError(f"no tree named {', '.join(unknown)} here; trees: {', '.join(weights.trees)}")
    reports = [check_tree(weights, t, folds=folds, seed=seed, progress=progress) for t in (trees or weights.trees)]
    verdicts = [r["passed"] for r in reports if r.get("passed") is not None]
    return {"source": weights.source, "trees": reports, "passed": all(verdicts)}  # LoRA trees alone: reported, not failed


def _fmt(stat: dict) -> str:
    return f"{stat['mean']:5.1f} +- {stat['se']:.1f}"


def format_signal_report(report: dict) -> str:
    """Plain-text tables of a `signal_check` report."""
    lines = [f"signal check of {report['source']}"]
    for tree in report["trees"]:
        lines.append("")
        if "skipped" in tree:
            lines.append(f"{tree['tree']}: skipped ({tree['skipped']})")
            continue
        refs = "  ".join(f"{k} {_fmt(v)}" for k, v in tree["references"].items())
        cv = f"{tree['folds']}-fold CV" if tree["cv"] == "k-fold" else f"one of {tree['folds']} recipe families held out"
        lines.append(f"{tree['tree']}: {tree['models']} models, {tree['labels']} labels, {cv}, "
                     f"{tree['metric']}; references: {refs}")
        lines.append(f"  {'layer':<60} {'features':>8} {'ridge':>13} {'shuffled':>13}")
        for row in sorted(tree["layers"], key=lambda r: -r["ridge"]["mean"]):
            name = row["layer"] + ("  (head)" if row["is_head"] else "")
            lines.append(f"  {name:<60} {row['features']:>8} {_fmt(row['ridge']):>13} {_fmt(row['shuffled']):>13}")
        curve = ", ".join(f"{p['train_models']}: {p['mean']:.1f}" for p in tree["learning_curve"])
        lines.append(f"  learning curve of {tree['best_layer']} (training models: score): {curve}")
        verdict = {True: "PASS", False: "FAIL", None: "reported"}[tree["passed"]]
        lines.append(f"  best hidden layer beats shuffled labels by {tree['margin_over_shuffled']:.1f} points "
                     f"(need {MIN_MARGIN:.0f} for discriminative trees): {verdict}")
    lines.append("")
    lines.append("signal check: " + ("PASSED" if report["passed"] else "FAILED"))
    return "\n".join(lines)
