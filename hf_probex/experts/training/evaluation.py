"""Metrics, folds, standard errors and references: how every expert and baseline is scored (no torch).

Class subsets (multi-label): per-label accuracy at threshold 0.5 (ProbeX's metric; chance is about
50 %), exact-set accuracy (every label right), and mAP (average precision of each label's ranking of
the models, averaged over labels). Concepts (zero-shot): top-1 and top-5 accuracy, and retrieval
mAP (models ranked by their score for each concept). All in percent.

Every number is a mean over k folds with its standard error, next to references computed on the
same folds: a constant (the training majority), the label frequency, and (in the harness) the same
method trained on shuffled labels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def per_label_accuracy(probs: np.ndarray, y: np.ndarray, threshold: float = 0.5) -> float:
    """% of (model, label) cells where `probs > threshold` equals the 0/1 target."""
    return float(((probs > threshold) == (y > 0.5)).mean() * 100)


def exact_set_accuracy(probs: np.ndarray, y: np.ndarray, threshold: float = 0.5) -> float:
    """% of models whose whole predicted label set (probs > threshold) equals the true set."""
    return float(((probs > threshold) == (y > 0.5)).all(axis=1).mean() * 100)


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Average precision of one ranking, in percent: Σ_k (R_k − R_{k−1}) P_k over the distinct score thresholds.

    Tied scores count as one threshold (as scikit-learn does), so a constant score gets the positive
    rate; without positives AP is undefined (NaN).
    """
    from sklearn.metrics import average_precision_score

    positives = np.asarray(positives) > 0.5
    if not positives.any():
        return float("nan")
    return float(average_precision_score(positives, scores) * 100)


def mean_average_precision(scores: np.ndarray, y: np.ndarray) -> float:
    """mAP over labels: each label's ranking of the models, averaged over labels with a positive."""
    values = [average_precision(scores[:, j], y[:, j]) for j in range(y.shape[1])]
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def top_k_accuracy(scores: np.ndarray, targets: np.ndarray, k: int) -> float:
    """% of rows whose target index is among the k highest scores."""
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == np.asarray(targets)[:, None]).any(axis=1).mean() * 100)


def multilabel_metrics(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The class-subset metrics of `probs` (probabilities) against 0/1 targets `y`."""
    return {
        "per_label_acc": per_label_accuracy(probs, y),
        "exact_set_acc": exact_set_accuracy(probs, y),
        "mAP": mean_average_precision(probs, y),
    }


def concept_metrics(scores: np.ndarray, targets: np.ndarray, prefix: str = "") -> dict[str, float]:
    """Top-1 and top-5 accuracy of concept scores [n, n_concepts] against target indices, and retrieval
    mAP: for each concept, the ranking of the models by their score for it (kNN retrieval of models by
    concept, as the paper's downstream task), averaged over the concepts that have a model here."""
    targets = np.asarray(targets)
    onehot = np.eye(scores.shape[1], dtype=np.float32)[targets]
    return {f"{prefix}top1": top_k_accuracy(scores, targets, 1), f"{prefix}top5": top_k_accuracy(scores, targets, 5),
            f"{prefix}retrieval_mAP": mean_average_precision(scores, onehot)}


def label_matrix(label_sets: Sequence[Sequence[str]], vocabulary: list[str]) -> np.ndarray:
    """0/1 targets [n, len(vocabulary)] of label sets (ValueError on a label outside the vocabulary)."""
    index = {name: i for i, name in enumerate(vocabulary)}
    y = np.zeros((len(label_sets), len(vocabulary)), dtype=np.float32)
    for row, labels in enumerate(label_sets):
        for label in labels:
            if label not in index:
                raise ValueError(f"label {label!r} is not in the vocabulary")
            y[row, index[label]] = 1.0
    return y


def mean_se(values: Sequence[float]) -> dict[str, float]:
    """Mean and standard error (sample std / sqrt(n); 0 for one value)."""
    arr = np.asarray(values, dtype=float)
    se = float(arr.std(ddof=1) / np.sqrt(len(arr))) if len(arr) > 1 else 0.0
    return {"mean": float(arr.mean()), "se": se}


def summarise(scores: Sequence[float] | Sequence[dict[str, float]]) -> dict:
    """Per-fold scores -> mean_se, or per-fold metric dicts -> {metric: mean_se}."""
    if scores and isinstance(scores[0], dict):
        return {name: mean_se([s[name] for s in scores]) for name in scores[0]}
    return mean_se(scores)


def kfold(n: int, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train indices, test indices) of a shuffled k-fold split of n items."""
    if folds < 2 or n < folds:
        raise ValueError(f"cannot split {n} models into {folds} folds")
    order = np.random.default_rng(seed).permutation(n)
    chunks = np.array_split(order, folds)
    return [(np.concatenate([c for j, c in enumerate(chunks) if j != i]), chunks[i]) for i in range(folds)]


def reference_predictions(y_train: np.ndarray, n_test: int, task: str) -> dict[str, np.ndarray]:
    """Label-blind predictions for n_test models from the training targets alone.

    multilabel: `constant` (the training majority value for every cell) and `label_frequency` (each
    label's training rate); multiclass (one-hot targets): `constant` (scores = training class counts,
    so the most frequent class ranks first).
    """
    if task == "multilabel":
        majority = float(y_train.mean() > 0.5)
        return {
            "constant": np.full((n_test, y_train.shape[1]), majority, dtype=np.float32),
            "label_frequency": np.broadcast_to(y_train.mean(0), (n_test, y_train.shape[1])).copy(),
        }
    return {"constant": np.broadcast_to(y_train.sum(0), (n_test, y_train.shape[1])).copy()}


def references(y: np.ndarray, task: str, folds: list[tuple[np.ndarray, np.ndarray]],
               score: Callable[[np.ndarray, np.ndarray], float | dict[str, float]]) -> dict:
    """Each reference predictor scored on the same folds: {name: summarise(per-fold scores)}."""
    per_fold: dict[str, list] = {}
    for train, test in folds:
        for name, pred in reference_predictions(y[train], len(test), task).items():
            per_fold.setdefault(name, []).append(score(pred, y[test]))
    return {name: summarise(values) for name, values in per_fold.items()}
