"""Calibration: Platt scaling on out-of-fold scores and the threshold that reaches the target precision."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hf_probex.experts.calibration import confidence
from hf_probex.experts.calibration.confidence import (Calibration, decision_outcomes, fit_calibration, top_untrained,
                                                      untrained_lead, withheld_concepts)


def _informative(rng, n: int, signal: float, labels: int = 8):
    y = rng.random((n, labels)) < 0.5
    probs = 1 / (1 + np.exp(-(np.where(y, signal, -signal) + rng.normal(0, 1.5, y.shape))))
    return probs, y


def test_threshold_reaches_the_target_precision_on_informative_scores():
    probs, y = _informative(np.random.default_rng(0), 300, 1.5)
    cal = fit_calibration("multilabel", probs, y.astype(float))
    assert cal.oof_precision >= 0.95 and 0 < cal.oof_recall < 1 and cal.decisions == y.size
    confidence = cal.confidences("multilabel", probs)
    assert confidence.shape == y.shape
    assert y[confidence >= cal.threshold].mean() >= 0.95
    assert Calibration(**cal.to_dict()) == cal  # what an expert's config.json stores


def test_a_recipe_that_shifts_every_score_of_a_model_changes_no_confidence():
    """A stronger or gentler fine-tune moves all of a model's scores together; what stands out stays."""
    probs, y = _informative(np.random.default_rng(2), 200, 1.5)
    cal = fit_calibration("multilabel", probs, y.astype(float))
    logits = np.log(probs / (1 - probs))
    shifted = 1 / (1 + np.exp(-(logits + np.linspace(-2, 2, len(probs))[:, None])))
    assert np.allclose(cal.confidences("multilabel", shifted), cal.confidences("multilabel", probs), atol=1e-6)


def test_the_threshold_holds_in_every_recipe_family_not_only_pooled():
    rng = np.random.default_rng(3)
    strong, y_strong = _informative(rng, 400, 2.5)
    weak, y_weak = _informative(rng, 100, 0.6)  # a family the expert reads badly
    probs, y = np.vstack([strong, weak]), np.vstack([y_strong, y_weak]).astype(float)
    groups = np.array(["strong"] * 400 + ["weak"] * 100)
    pooled = fit_calibration("multilabel", probs, y)
    per_family = fit_calibration("multilabel", probs, y, groups)
    assert per_family.groups == 2 and per_family.threshold >= pooled.threshold
    weak_confidence = per_family.confidences("multilabel", weak)
    above = weak_confidence >= per_family.threshold
    assert above.sum() < 10 or y_weak[above].mean() >= 0.95


def test_uninformative_scores_never_propose():
    rng = np.random.default_rng(1)
    y = rng.random((200, 5)) < 0.5
    cal = fit_calibration("multilabel", rng.random(y.shape), y.astype(float))
    assert cal.threshold > 1 and cal.oof_recall == 0


def test_zero_shot_decisions_are_the_top_concept():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.25, 0.1], [0.0, 0.1, 0.8]])
    assert decision_outcomes("zeroshot", scores, np.array([0, 0, 2])).tolist() == [True, False, True]
    assert np.allclose(Calibration(1.0, 0.0, 0.5, 0.95, 1.0, 1.0, 3).scores("zeroshot", scores), [0.8, 0.05, 0.7])
    wrong = fit_calibration("zeroshot", scores[[0, 2]], np.array([1, 0]))  # every out-of-fold decision wrong
    assert wrong.threshold > 1 and np.allclose(wrong.confidences("zeroshot", scores), 0.001)


def test_models_of_classes_outside_the_vocabulary_raise_the_threshold_until_at_most_5_percent_get_one():
    """A model trained on classes the expert does not know still has labels standing out among its own: the threshold
    holds on such models too, and a class of the vocabulary they were trained on besides is no error."""
    rng = np.random.default_rng(4)
    probs, y = _informative(rng, 300, 1.5)
    unseen = 1 / (1 + np.exp(-rng.normal(0, 3.0, (40, 8))))  # one label stands out by chance, as strongly as a true one
    alone = fit_calibration("multilabel", probs, y.astype(float))
    checked = fit_calibration("multilabel", probs, y.astype(float), unseen=unseen)
    assert alone.unseen_models == 0 and not Calibration(**alone.to_dict()).limited_by_unseen
    tops = checked.confidences("multilabel", unseen).max(1)
    assert checked.unseen_models == 40 and (tops >= checked.threshold).mean() == checked.unseen_proposed <= 0.05
    assert (alone.confidences("multilabel", unseen).max(1) >= alone.threshold).mean() > 0.05  # what the check prevents
    assert checked.threshold > alone.threshold == checked.vocabulary_threshold and checked.limited_by_unseen
    assert Calibration(**checked.to_dict()) == checked
    # the same models, each also trained on the vocabulary class it reads highest: those classes are right
    known = np.zeros_like(unseen)
    known[np.arange(len(unseen)), unseen.argmax(1)] = 1
    partly = fit_calibration("multilabel", probs, y.astype(float), unseen=unseen, unseen_y=known)
    assert partly.threshold <= checked.threshold


def test_untrained_lead_is_the_top_trained_concepts_lead_over_the_best_untrained_one():
    cosines = np.array([[0.9, 0.2, 0.7, 0.1],     # a trained concept on top, 0.2 ahead of the best untrained one
                        [0.3, 0.2, 0.8, 0.1],     # an untrained one on top: nothing to ask of it
                        [0.9, 0.8, -np.inf, -np.inf]])  # a list of trained concepts only
    trained = np.array([True, True, False, False])
    assert np.allclose(untrained_lead(cosines, trained), [0.2, np.inf, np.inf])
    assert top_untrained(cosines, trained).tolist() == [False, True, False]
    assert untrained_lead(cosines[:0], trained).shape == (0,)
    both = Calibration(1.0, 0.0, 0.5, 0.95, 1.0, 1.0, 3, known_margin=0.25, untrained_threshold=0.7)
    assert (both.threshold_for(True), both.threshold_for(False)) == (0.7, 0.5)
    assert Calibration(1.0, 0.0, 0.5, 0.95, 1.0, 1.0, 3).threshold_for(True) == 0.5  # one threshold for both
    # the least margin over the runner-up: an untrained top's where the kinds are told apart, every top's otherwise
    assert (replace(both, least_margin=0.1).margin_for(True), replace(both, least_margin=0.1).margin_for(False)) == (0.1, 0)
    listed = Calibration(1.0, 0.0, 0.5, 0.95, 1.0, 1.0, 3, least_margin=0.1)
    assert (listed.margin_for(True), listed.margin_for(False)) == (0.1, 0.1)


def _confusable_concepts(rng, known: int = 300, unknown: int = 150):
    """Cosines over 6 trained and 4 untrained concepts: LoRAs of trained concepts read well; LoRAs of untrained ones
    read as a trained neighbour, as surely, but only ~0.1 ahead of their own concept."""
    cosines = rng.normal(0.3, 0.05, (known + unknown, 10))
    y = np.concatenate([rng.integers(0, 6, known), rng.integers(6, 10, unknown)])
    cosines[np.arange(known), y[:known]] = rng.normal(0.75, 0.08, known)
    rows = np.arange(known, known + unknown)
    cosines[rows, y[known:]] = rng.normal(0.6, 0.05, unknown)
    cosines[rows, y[known:] - 6] = cosines[rows, y[known:]] + rng.uniform(0.02, 0.15, unknown)  # the neighbour
    groups = np.array(["in vocabulary"] * known + ["held-out concepts"] * unknown)
    return cosines, y, groups


def test_a_trained_concept_must_lead_the_untrained_ones_by_a_margin_that_holds_its_neighbours_back():
    """A LoRA of a concept the expert never trained on reads as its trained neighbour as surely as that concept's own
    LoRAs; what tells them apart is how little the neighbour leads the concept itself. The calibration finds the lead
    to ask of a trained concept, and proposes as many right ones as without it, its wrong proposals held back."""
    cosines, y, groups = _confusable_concepts(np.random.default_rng(5))
    trained = np.arange(10) < 6
    plain = fit_calibration("zeroshot", cosines, y, groups)
    gated = fit_calibration("zeroshot", cosines, y, groups, trained=trained)
    assert plain.known_margin == 0 and 0.1 <= gated.known_margin <= 0.3
    assert gated.oof_recall >= plain.oof_recall and gated.oof_precision > plain.oof_precision >= 0.95
    lead, untrained_top = untrained_lead(cosines, trained), top_untrained(cosines, trained)
    proposed = np.where(untrained_top, gated.confidences("zeroshot", cosines) >= gated.threshold_for(True),
                        (gated.confidences("zeroshot", cosines) >= gated.threshold) & (lead >= gated.known_margin))
    unknown = groups == "held-out concepts"
    assert not (proposed & unknown & (cosines.argmax(1) != y)).any()  # no neighbour named for an untrained concept
    before = plain.confidences("zeroshot", cosines) >= plain.threshold
    assert (before & unknown & (cosines.argmax(1) != y)).sum() >= 5  # what the margin holds back
    assert Calibration(**gated.to_dict()) == gated
    # a trained concept's LoRAs already 0.15 ahead of everything untrained: no margin needed, none asked
    assert fit_calibration("zeroshot", cosines[~unknown], y[~unknown], trained=trained).known_margin == 0


def _near_ties(rng, right: int = 400, misread: int = 40):
    """Cosines over 12 concepts where the top concept is right whatever its margin over the runner-up, at cosines
    0.45-0.75, except LoRAs misread as a neighbour: at a high cosine (0.7-0.8), a near tie with their own concept."""
    n = right + misread
    cosines = rng.normal(0.2, 0.05, (n, 12))
    y = rng.integers(0, 12, n)
    rows = np.arange(n)
    cosines[rows, y] = rng.uniform(0.45, 0.75, n)
    cosines[rows[:right], (y[:right] + 1) % 12] = cosines[rows[:right], y[:right]] - rng.uniform(0.0, 0.3, right)
    cosines[rows[right:], y[right:]] = rng.uniform(0.7, 0.8, misread)
    cosines[rows[right:], (y[right:] + 1) % 12] = cosines[rows[right:], y[right:]] + rng.uniform(0.0, 0.02, misread)
    return cosines, y


def test_a_near_tie_with_the_runner_up_is_held_back_where_that_is_where_the_misreads_are(monkeypatch):
    """LoRAs misread as a neighbouring concept sit at high cosines, so confidence alone keeps every top concept out up
    to there; asking a least margin over the runner-up holds the misreads back and lets the rest through lower."""
    cosines, y = _near_ties(np.random.default_rng(3))
    gated = fit_calibration("zeroshot", cosines, y, unseen=withheld_concepts(cosines, y))
    monkeypatch.setattr(confidence, "LEAST_MARGINS", (0.0,))
    plain = fit_calibration("zeroshot", cosines, y, unseen=withheld_concepts(cosines, y))
    assert plain.least_margin == 0 and 0.02 <= gated.least_margin <= 0.1
    assert gated.oof_recall > plain.oof_recall + 0.1 and gated.oof_precision >= 0.95
    margins = np.sort(cosines, axis=1)[:, -1] - np.sort(cosines, axis=1)[:, -2]
    proposed = (gated.confidences("zeroshot", cosines) >= gated.threshold) & (margins >= gated.margin_for(True))
    assert not (proposed & (cosines.argmax(1) != y)).any()
    assert Calibration(**gated.to_dict()) == gated
