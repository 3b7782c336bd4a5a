"""Confidence calibration: turning an expert's scores into confidences, and the threshold to propose at.

An expert's raw outputs are not probabilities one can act on (ridge's are shifted regressions, the
networks are over- or under-confident). Calibration is fitted on out-of-fold predictions of the
training models (every model scored by an expert that never saw it) with Platt scaling on one score
per decision:

- class subsets: every (model, label) cell is one decision "this model was trained on this class";
  its score is the logit of the expert's probability;
- concepts: the top-1 concept of each model is one decision; its score is the margin between the
  best and second-best cosine.

`threshold` is then the lowest calibrated confidence at which the decisions at or above it reach the
target precision on those out-of-fold predictions (default 95 %); below it hf_probex abstains.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

PRECISION_TARGET = 0.95
MIN_SUPPORT = 10


@dataclass
class Calibration:
    """Platt scaling confidence = sigmoid(a * score + b), and the confidence threshold to propose at."""

    a: float
    b: float
    threshold: float
    precision_target: float
    oof_precision: float  # of the out-of-fold decisions at or above the threshold (nan if none)
    oof_recall: float  # share of the true decisions proposed at the threshold
    decisions: int

    def confidence(self, scores: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.a * np.asarray(scores, dtype=np.float64) + self.b)))

    def to_dict(self) -> dict:
        return asdict(self)


def decision_scores(task: str, predictions: np.ndarray) -> np.ndarray:
    """The calibrated score of each decision (see the module docstring): [n, n_labels] or [n]."""
    if task == "multilabel":
        p = np.clip(predictions, 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))
    top2 = np.sort(predictions, axis=1)[:, -2:] if predictions.shape[1] > 1 else np.pad(predictions, ((0, 0), (1, 0)))
    return top2[:, 1] - top2[:, 0]


def decision_outcomes(task: str, predictions: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether each decision is true: the label is in the set, or the top-1 concept is the model's."""
    if task == "multilabel":
        return np.asarray(y) > 0.5
    return predictions.argmax(1) == np.asarray(y)


def fit_calibration(task: str, predictions: np.ndarray, y: np.ndarray, precision_target: float = PRECISION_TARGET,
                    min_support: int = MIN_SUPPORT) -> Calibration:
    """Fit Platt scaling and the precision threshold on out-of-fold `predictions` of targets `y`.

    The threshold is the lowest confidence level whose decisions at or above it (ties included) reach
    `precision_target`, counting only levels with at least `min_support` such decisions (a precision
    measured on two decisions says nothing); if none does, the threshold is above 1: never propose.

    Raises:
        ValueError: all decisions true or all false (nothing to calibrate on).
    """
    from sklearn.linear_model import LogisticRegression

    scores = decision_scores(task, predictions).ravel()
    truth = decision_outcomes(task, predictions, y).ravel()
    if truth.all() or not truth.any():
        raise ValueError("cannot calibrate: the out-of-fold decisions are all right or all wrong")
    platt = LogisticRegression().fit(scores[:, None], truth)
    a, b = float(platt.coef_[0, 0]), float(platt.intercept_[0])
    confidence = Calibration(a, b, 0.0, 0.0, 0.0, 0.0, 0).confidence(scores)
    order = np.argsort(-confidence, kind="stable")
    ranked = confidence[order]
    precision = np.cumsum(truth[order]) / np.arange(1, len(order) + 1)
    level_ends = np.append(ranked[1:] < ranked[:-1], True)  # the last decision of each confidence level
    meets = np.flatnonzero(level_ends & (precision >= precision_target) & (np.arange(1, len(order) + 1) >= min_support))
    if len(meets) == 0:
        return Calibration(a, b, 1.01, precision_target, float("nan"), 0.0, len(truth))  # never confident enough
    threshold = float(ranked[meets[-1]])  # the lowest level that still meets the target: the most recall
    proposed = confidence >= threshold
    return Calibration(a, b, threshold, precision_target, float(truth[proposed].mean()),
                       float(truth[proposed].sum() / truth.sum()), len(truth))
