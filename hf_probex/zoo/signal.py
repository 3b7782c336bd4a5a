"""The signal check: does a tree's weights carry what its models were trained on?

For each candidate layer of each tree, a ridge regression on z-scored weights (its penalty tuned by
generalised cross-validation inside the training folds) predicts the training classes (discriminative
trees: per-label accuracy at threshold 0.5, the ProbeX metric) or the concept (LoRA trees: top-1),
under k-fold cross-validation, beside references: a constant, the label frequency, and the same ridge
trained on shuffled labels. Means come with standard errors over folds, and the best layer gets a
learning curve over the number of training models. A zoo passes when every discriminative tree's best
hidden layer beats its shuffled-label reference by at least `MIN_MARGIN` points.
"""

from __future__ import annotations

import numpy as np

from ..weightsets import WeightRecord, WeightSet, open_weight_set

MIN_MARGIN = 10.0
_ALPHAS = np.logspace(-1, 6, 8)
_HEAD_PREFIXES = ("classifier.", "fc.")


def lora_pairs(names: list[str]) -> dict[str, tuple[str, str]]:
    """LoRA module name -> (down/A key, up/B key), for the diffusers and peft key formats."""
    pairs = {}
    for down_tag, up_tag in ((".lora.down.weight", ".lora.up.weight"), (".lora_A.weight", ".lora_B.weight")):
        for name in names:
            if name.endswith(down_tag):
                module = name[: -len(down_tag)]
                if module + up_tag in names:
                    pairs[module] = (name, module + up_tag)
    return pairs


def read_layers(records: list[WeightRecord], progress: bool = False) -> dict[str, np.ndarray]:
    """Every candidate layer of every record, flattened: {layer name: [n_models, n_weights] float32}.

    Classifier layers are the tensors with two or more dimensions; LoRA layers are the dense updates
    B @ A of each adapted module (no alpha/r scaling, as ProbeX does).
    """
    from safetensors import safe_open
    from tqdm.auto import tqdm

    columns: dict[str, list[np.ndarray]] = {}
    for record in tqdm(records, desc="reading weights", unit="model", disable=not progress, leave=False):
        with safe_open(str(record.path), framework="np") as handle:
            names = list(handle.keys())
            if record.kind == "lora":
                for module, (down, up) in lora_pairs(names).items():
                    delta = handle.get_tensor(up).astype(np.float32) @ handle.get_tensor(down).astype(np.float32)
                    columns.setdefault(module, []).append(delta.ravel())
            else:
                for name in names:
                    tensor = handle.get_slice(name)
                    if len(tensor.get_shape()) >= 2:
                        columns.setdefault(name, []).append(handle.get_tensor(name).astype(np.float32).ravel())
    return {
        name: np.stack(values)
        for name, values in columns.items()
        if len(values) == len(records) and len({v.shape for v in values}) == 1
    }


def _fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    from sklearn.linear_model import RidgeCV

    mean, std = x_train.mean(0), x_train.std(0)
    std[std < 1e-8] = 1.0
    ridge = RidgeCV(alphas=_ALPHAS).fit((x_train - mean) / std, y_train)
    return ridge.predict((x_test - mean) / std)


def _score(predictions: np.ndarray, targets: np.ndarray, task: str) -> float:
    if task == "multilabel":
        return float(((predictions > 0.5) == (targets > 0.5)).mean() * 100)
    return float((predictions.argmax(1) == targets.argmax(1)).mean() * 100)


def _mean_se(values: list[float]) -> dict:
    arr = np.asarray(values, dtype=float)
    se = float(arr.std(ddof=1) / np.sqrt(len(arr))) if len(arr) > 1 else 0.0
    return {"mean": float(arr.mean()), "se": se}


def _folds(n: int, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    order = np.random.default_rng(seed).permutation(n)
    chunks = np.array_split(order, folds)
    return [(np.concatenate([c for j, c in enumerate(chunks) if j != i]), chunks[i]) for i in range(folds)]


def _cross_validate(x, y, task, folds, seed, n_train=None, shuffle=False) -> dict:
    rng = np.random.default_rng(seed + 1)
    scores = []
    for train, test in _folds(len(y), folds, seed):
        if n_train is not None:
            train = rng.choice(train, size=min(n_train, len(train)), replace=False)
        targets = y[train][rng.permutation(len(train))] if shuffle else y[train]
        scores.append(_score(_fit_predict(x[train], targets, x[test]), y[test], task))
    return _mean_se(scores)


def _references(y: np.ndarray, task: str, folds: int, seed: int) -> dict:
    constant, frequency = [], []
    for train, test in _folds(len(y), folds, seed):
        if task == "multilabel":
            majority = float(y[train].mean() > 0.5)
            constant.append(_score(np.full(y[test].shape, majority), y[test], task))
            frequency.append(_score(np.broadcast_to(y[train].mean(0), y[test].shape), y[test], task))
        else:
            most_frequent = np.broadcast_to(y[train].sum(0), y[test].shape)
            constant.append(_score(most_frequent, y[test], task))
    refs = {"constant": _mean_se(constant)}
    if frequency:
        refs["label_frequency"] = _mean_se(frequency)
    return refs


def _targets(records: list[WeightRecord], vocabulary: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(vocabulary)}
    y = np.zeros((len(records), len(vocabulary)), dtype=np.float32)
    for row, record in enumerate(records):
        for label in record.labels:
            y[row, index[label]] = 1.0
    return y


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
    y = _targets(records, vocabulary)
    layers = read_layers(records, progress=progress)
    refs = _references(y, task, folds, seed)
    rows = []
    for name, x in tqdm(layers.items(), desc=f"{tree}: layers", unit="layer", disable=not progress, leave=False):
        rows.append({
            "layer": name,
            "features": int(x.shape[1]),
            "is_head": name.startswith(_HEAD_PREFIXES),
            "ridge": _cross_validate(x, y, task, folds, seed),
            "shuffled": _cross_validate(x, y, task, folds, seed, shuffle=True),
        })
    hidden = [r for r in rows if not r["is_head"]]
    best = max(hidden, key=lambda r: r["ridge"]["mean"])
    n_train = len(records) - len(records) // folds
    curve = [
        {"train_models": size, **_cross_validate(layers[best["layer"]], y, task, folds, seed, n_train=size)}
        for size in _learning_curve_sizes(n_train)
    ]
    margin = best["ridge"]["mean"] - best["shuffled"]["mean"]
    return {
        "tree": tree,
        "task": task,
        "metric": "per-label accuracy %" if task == "multilabel" else "top-1 accuracy %",
        "models": len(records),
        "labels": len(vocabulary),
        "folds": folds,
        "references": refs,
        "layers": rows,
        "best_layer": best["layer"],
        "margin_over_shuffled": margin,
        "passed": margin >= MIN_MARGIN if task == "multilabel" else None,
        "learning_curve": curve,
    }


def signal_check(zoo_or_path, *, trees: list[str] | None = None, folds: int = 5, seed: int = 0, progress: bool = True) -> dict:
    """Run `check_tree` on every tree (or `trees`) of a zoo or Model-J folder."""
    from .store import Zoo

    weights = open_weight_set(zoo_or_path.root if isinstance(zoo_or_path, Zoo) else zoo_or_path)
    unknown = sorted(set(trees or []) - set(weights.trees))
    if unknown:
        raise ValueError(f"no tree named {', '.join(unknown)} here; trees: {', '.join(weights.trees)}")
    reports = [check_tree(weights, t, folds=folds, seed=seed, progress=progress) for t in (trees or weights.trees)]
    verdicts = [r["passed"] for r in reports if r.get("passed") is not None]
    return {"source": weights.source, "trees": reports, "passed": all(verdicts) if verdicts else False}


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
        lines.append(f"{tree['tree']}: {tree['models']} models, {tree['labels']} labels, {tree['folds']}-fold CV, "
                     f"{tree['metric']}; references: {refs}")
        lines.append(f"  {'layer':<60} {'weights':>8} {'ridge':>13} {'shuffled':>13}")
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
