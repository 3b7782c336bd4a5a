"""A classification head read as a set of rows: whatever the class order or count, its classes are named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hf_probex.experts.calibration.confidence import fit_calibration
from hf_probex.experts.calibration.head_rows import RowReader, find_head_layer, out_of_fold_scores, row_features
from hf_probex.weightsets import WeightRecord

VOCABULARY = [f"class {i}" for i in range(12)]


def _heads(n_models: int, seed: int, width: int = 16):
    """Heads of a synthetic tree: one noisy prototype row per class a model trained on, 3 to 8 classes in a
    random order, each head with its own offset and scale (what another recipe changes)."""
    rng = np.random.default_rng(seed)
    prototypes = np.random.default_rng(0).normal(size=(len(VOCABULARY), width))
    heads, labels = [], []
    for _ in range(n_models):
        chosen = rng.choice(len(VOCABULARY), size=rng.integers(3, 9), replace=False)
        rows = prototypes[chosen] + 0.6 * rng.normal(size=(len(chosen), width))
        heads.append(rng.uniform(0.1, 5.0) * rows + rng.normal(size=width))
        labels.append([VOCABULARY[i] for i in chosen])
    return heads, labels


def test_row_features_ignore_row_order_scale_and_what_every_row_shares():
    head = np.random.default_rng(1).normal(size=(5, 8))
    order = np.array([3, 0, 4, 1, 2])
    assert np.allclose(row_features(head[order]), row_features(head)[order])
    assert np.allclose(row_features(4.0 * head + np.arange(8.0)), row_features(head))
    assert row_features(head[:1]) is None  # one class: no set to read
    assert row_features(np.full((3, 8), np.nan)) is None and row_features(np.ones((3, 8))) is None


def test_a_row_reader_names_a_heads_classes_in_any_order_and_count():
    heads, labels = _heads(120, seed=2)
    reader = RowReader.fit("classifier.weight", heads, labels, VOCABULARY)
    test_heads, test_labels = _heads(30, seed=3)
    hits = 0
    for head, names in zip(test_heads, test_labels):
        scores = reader.scores(head)
        top = {VOCABULARY[i] for i in np.argsort(-scores)[: len(names)]}
        hits += len(top & set(names))
        assert np.allclose(reader.scores(head[::-1]), scores)  # the rows' order says nothing
    assert hits / sum(len(n) for n in test_labels) > 0.9  # chance: about 0.46
    assert not reader.can_read(np.zeros((4, 8))) and not reader.can_read(None)
    with pytest.raises(ValueError, match="cannot be read as a set of rows of width 16"):
        reader.scores(np.zeros((4, 8)))


def test_the_head_layer_is_the_one_whose_rows_are_each_models_classes():
    records = [WeightRecord("t", f"m{i}", "train", tuple(VOCABULARY[:k]), Path("."), "classifier", head_order=True)
               for i, k in enumerate((3, 5))]
    shapes = [{"body.weight": (5, 16), "classifier.weight": (3, 16)}, {"body.weight": (5, 16), "classifier.weight": (5, 16)}]
    assert find_head_layer(records, shapes) == ("classifier.weight", 16)
    unordered = [WeightRecord(r.tree, r.model_id, r.split, r.labels, r.path, r.kind) for r in records]
    assert find_head_layer(unordered, shapes) is None  # labels not known in row order: no rows to learn from
    # a tree whose sentence encoders carry no head: the classifiers' head is still found, a coincidence is not
    encoder = WeightRecord("t", "m2", "train", tuple(VOCABULARY[:2]), Path("."), "classifier", head_order=True)
    with_encoder = [*records, encoder]
    assert find_head_layer(with_encoder, [*shapes, {"body.weight": (5, 16), "type.weight": (2, 16)}]) == ("classifier.weight", 16)
    assert find_head_layer([encoder] * 3 + records[:1], [{"body.weight": (5, 16)}] * 3 + shapes[:1]) is None


def test_out_of_fold_row_scores_come_from_readers_that_never_saw_the_model_and_lift_recall():
    heads, labels = _heads(100, seed=4)
    heads[7] = None  # a model without a readable head
    splits = [(np.flatnonzero(np.arange(100) % 4 != k), np.flatnonzero(np.arange(100) % 4 == k)) for k in range(4)]
    scores = out_of_fold_scores("classifier.weight", heads, labels, VOCABULARY, splits)
    assert scores.shape == (100, len(VOCABULARY)) and np.isnan(scores[7]).all() and np.isfinite(np.delete(scores, 7, 0)).all()
    y = np.array([[v in names for v in VOCABULARY] for names in labels], dtype=float)
    keep = np.arange(100) != 7
    uninformative = np.random.default_rng(5).random(y.shape)[keep]  # layers that say nothing
    alone = fit_calibration("multilabel", uninformative, y[keep])
    joint = fit_calibration("multilabel", uninformative, y[keep], head_scores=scores[keep])
    assert alone.oof_recall == 0.0 and joint.oof_recall > 0.5 and joint.oof_precision >= 0.95 and joint.head > 0


def test_rows_that_mislead_on_one_recipe_family_are_not_trusted():
    """Row scores that name the classes in three families and point at wrong classes in a fourth: a calibration
    fitted without that family proposes wrongly on it, so the joint reading fails the out-of-family check;
    the same scores without the misleading family pass it."""
    from hf_probex.experts.calibration.confidence import holds_out_of_family

    heads, labels = _heads(160, seed=6)
    y = np.array([[v in names for v in VOCABULARY] for names in labels], dtype=float)
    groups = np.repeat(np.array(["a", "b", "c", "d"]), 40)
    rng = np.random.default_rng(7)
    scores = np.where(y > 0, 4.0, -4.0) + 0.5 * rng.normal(size=y.shape)
    scores[groups == "d"] = np.where(rng.permutation(y[groups == "d"], axis=1) > 0, 4.0, -4.0)  # confident, wrong
    layers = rng.random(y.shape)  # the hidden layers say nothing here
    assert not holds_out_of_family("multilabel", layers, y, groups, head_scores=scores)
    keep = groups != "d"
    assert holds_out_of_family("multilabel", layers[keep], y[keep], groups[keep], head_scores=scores[keep])
    assert holds_out_of_family("multilabel", layers, y, None, head_scores=scores)  # no families known: nothing to check
