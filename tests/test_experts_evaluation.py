"""Expert metrics on hand-computed examples, folds, standard errors and references."""

from __future__ import annotations

import numpy as np
import pytest

from hf_probex.experts.training.evaluation import (
    average_precision,
    exact_set_accuracy,
    kfold,
    label_matrix,
    mean_average_precision,
    mean_se,
    per_label_accuracy,
    reference_predictions,
    references,
    top_k_accuracy,
)


def test_per_label_and_exact_set_accuracy():
    probs = np.array([[0.9, 0.2, 0.6], [0.4, 0.7, 0.1]])
    y = np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32)
    assert per_label_accuracy(probs, y) == pytest.approx(100 * 5 / 6)  # one wrong cell: (0, 2)
    assert exact_set_accuracy(probs, y) == pytest.approx(50.0)  # only the second row is entirely right
    assert per_label_accuracy(np.full((2, 3), 0.5), y) == pytest.approx(100 * 4 / 6)  # 0.5 is not above threshold


def test_average_precision_by_hand():
    # ranking by score: +, -, +, -  -> precisions at the positives: 1/1 and 2/3
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0])) == pytest.approx(100 * (1 + 2 / 3) / 2)
    # tied scores are one threshold: a constant score gets the positive rate, not 100 (nor less)
    assert average_precision(np.zeros(4), np.array([1, 0, 0, 0])) == pytest.approx(25.0)
    assert average_precision(np.zeros(4), np.array([1, 1, 0, 0])) == pytest.approx(50.0)
    # a tie between a positive and a negative at the top: precision 1/2 at recall 1/2, then 2/3 at recall 1
    assert average_precision(np.array([0.9, 0.9, 0.5, 0.1]), np.array([1, 0, 1, 0])) == pytest.approx(100 * (0.5 * 0.5 + 0.5 * 2 / 3))
    assert np.isnan(average_precision(np.arange(3.0), np.zeros(3)))
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.7]])
    y = np.array([[1, 0], [0, 1], [0, 0]])  # label 0: AP 100; label 1: ranks 0.8 (+) first: AP 100
    assert mean_average_precision(scores, y) == pytest.approx(100.0)
    y_bad = np.array([[0, 0], [1, 0], [0, 1]])  # label 0: + (0.2) ranked 3rd -> 1/3; label 1: + (0.7) 2nd -> 1/2
    assert mean_average_precision(scores, y_bad) == pytest.approx(100 * (1 / 3 + 1 / 2) / 2)


def test_top_k_accuracy():
    scores = np.array([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5]])
    targets = np.array([2, 0, 0])
    assert top_k_accuracy(scores, targets, 1) == pytest.approx(100 / 3)
    assert top_k_accuracy(scores, targets, 2) == pytest.approx(200 / 3)
    assert top_k_accuracy(scores, targets, 5) == pytest.approx(100.0)  # k beyond the classes: everything counts


def test_label_matrix_mean_se_and_folds():
    assert label_matrix([("b",), ("a", "c")], ["a", "b", "c"]).tolist() == [[0, 1, 0], [1, 0, 1]]
    with pytest.raises(ValueError, match="'z' is not in the vocabulary"):
        label_matrix([("z",)], ["a"])
    stats = mean_se([1.0, 2.0, 3.0])
    assert stats["mean"] == 2.0 and stats["se"] == pytest.approx(1 / np.sqrt(3))
    splits = kfold(10, 3, seed=0)
    tests = np.concatenate([test for _, test in splits])
    assert sorted(tests.tolist()) == list(range(10))  # every model tested exactly once
    assert all(set(train).isdisjoint(test) for train, test in splits)
    with pytest.raises(ValueError, match="cannot split 2 models into 3 folds"):
        kfold(2, 3, seed=0)


def test_references_are_label_blind_and_hand_checkable():
    y_train = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=np.float32)
    refs = reference_predictions(y_train, 2, "multilabel")
    assert refs["constant"].tolist() == [[0, 0, 0]] * 2  # 4 of 12 cells positive: the majority is 0
    assert refs["label_frequency"][0].tolist() == [0.75, 0.25, 0.0]
    onehot = np.eye(3, dtype=np.float32)[[2, 2, 1]]
    assert reference_predictions(onehot, 1, "multiclass")["constant"].argmax() == 2
    y = np.eye(2, dtype=np.float32)[[0, 0, 0, 0, 1, 1]]
    out = references(y, "multilabel", kfold(6, 2, seed=0), per_label_accuracy)
    assert set(out) == {"constant", "label_frequency"} and set(out["constant"]) == {"mean", "se"}


def test_concept_metrics_rank_models_by_concept():
    from hf_probex.experts.training.evaluation import concept_metrics

    scores = np.array([[0.9, 0.5], [0.8, 0.2], [0.3, 0.7]])  # concept 1 ranks models 2, 0, 1; 2 and 1 are its
    metrics = concept_metrics(scores, np.array([0, 1, 1]))
    assert metrics["top1"] == pytest.approx(200 / 3)
    assert metrics["retrieval_mAP"] == pytest.approx((100 + (100 + 200 / 3) / 2) / 2)
