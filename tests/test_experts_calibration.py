"""Calibration: Platt scaling on out-of-fold scores and the threshold that reaches the target precision."""

from __future__ import annotations

import numpy as np
import pytest

from hf_probex.experts.calibration import Calibration, decision_outcomes, decision_scores, fit_calibration


def test_threshold_reaches_the_target_precision_on_informative_scores():
    rng = np.random.default_rng(0)
    y = rng.random((300, 8)) < 0.5
    probs = 1 / (1 + np.exp(-(np.where(y, 1.5, -1.5) + rng.normal(0, 1.5, y.shape))))
    cal = fit_calibration("multilabel", probs, y.astype(float))
    assert cal.oof_precision >= 0.95 and 0 < cal.oof_recall < 1 and cal.decisions == y.size
    confidence = cal.confidence(decision_scores("multilabel", probs))
    assert confidence.shape == y.shape
    assert np.all(np.diff(confidence.ravel()[np.argsort(probs.ravel())]) >= -1e-12)  # monotone in the score
    assert y[confidence >= cal.threshold].mean() >= 0.95
    assert Calibration(**cal.to_dict()) == cal  # what an expert's config.json stores


def test_uninformative_scores_never_propose():
    rng = np.random.default_rng(1)
    y = rng.random((200, 5)) < 0.5
    cal = fit_calibration("multilabel", rng.random(y.shape), y.astype(float))
    assert cal.threshold > 1 and cal.oof_recall == 0


def test_zero_shot_decisions_are_the_top_concept():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.25, 0.1], [0.0, 0.1, 0.8]])
    assert decision_outcomes("zeroshot", scores, np.array([0, 0, 2])).tolist() == [True, False, True]
    assert np.allclose(decision_scores("zeroshot", scores), [0.8, 0.05, 0.7])
    with pytest.raises(ValueError, match="all right or all wrong"):
        fit_calibration("zeroshot", scores[[0, 2]], np.array([0, 2]))
