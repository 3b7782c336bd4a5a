"""Class rows: a classification head read as a set of rows, one per class, whatever their order or count.

A classifier's head holds one row per class it was trained on, and fine-tuning pulls each row toward what
sets its class apart in the features below it. Within a tree those features live in one shared frame (every
member started from the root), so a row tells its class without knowing its position: the tree's row
reader is a softmax classifier over the tree's vocabulary, fitted on every row of the training models
(whose classes are known in row order), on rows centred over their head and scaled to unit norm (what the
head's other classes share, and the size of the change, say nothing about the row's own class). The head's
classes are distinct, so a model's rows are assigned to distinct classes (the assignment of highest joint
probability, `scipy.optimize.linear_sum_assignment`); a class's score is the probability of the row
assigned to it.

Rows survive what hidden layers do not: a head re-initialised in another class order, with another class
count, or trained while the body stayed nearly frozen (merged LoRAs, partial fine-tunes), where the change
of a hidden layer is small. Measured across recipe families of the bench ResNet tree (docs/benchmarks.md),
the rows and the hidden layers' Gram fail on different families, so the expert reads both (calibrated
jointly: `calibration.fit_calibration(head_scores=...)`); a model whose head it cannot read (no such layer,
another width, one class) is read by its hidden layers alone, with their own calibration.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...weightsets import WeightRecord

#: The inverse regularisation of the row classifier, chosen on the bench ResNet tree's held-out recipe families
#: (docs/benchmarks.md, scripts/bench_head_rows.py).
ROW_C = 1.0
_FLOOR = 1e-6  # the probability of a class no row is assigned to (its score is this logit)


def row_features(head: np.ndarray) -> np.ndarray | None:
    """[k, d] head rows -> rows centred over the head and scaled to unit norm; None for a head that cannot be read
    as a set (one row, not 2-D, NaN / inf, or a row equal to the head's mean)."""
    head = np.asarray(head, dtype=np.float64)
    if head.ndim != 2 or len(head) < 2 or not np.isfinite(head).all():
        return None
    centred = head - head.mean(0)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return None if (norms < 1e-12).any() else centred / norms


def find_head_layer(records: Sequence[WeightRecord], shapes: Sequence[dict[str, tuple[int, ...]]]) -> tuple[str, int] | None:
    """(name, width) of the layer whose rows are each model's classes: 2-D, one row per label (`shapes`: each
    record's layers and stored shapes), one width, in more of the records than any other layer and in at least
    half of them (a tree's sentence encoders carry no head; the classifiers among them do). None when the records'
    label order is not the head's (`WeightRecord.head_order`) or no layer fits."""
    if not records or not all(r.head_order and len(r.labels) >= 2 for r in records):
        return None
    fits: dict[tuple[str, int], int] = {}
    for record, layers in zip(records, shapes):
        for name, shape in layers.items():
            if len(shape) == 2 and shape[0] == len(record.labels):
                fits[(name, shape[1])] = fits.get((name, shape[1]), 0) + 1
    if not fits or 2 * max(fits.values()) < len(records):
        return None
    # a layer of as many rows as a model's labels only by coincidence of sizes fits fewer models; of equals, the last
    # name, as heads come last
    return max(fits, key=lambda layer: (fits[layer], layer))


def read_head(adapter, source, layer: str) -> np.ndarray | None:
    """`layer` of one model (an adapter and its source, `hf_probex.adapters`) as [k, d] rows, or None when the
    model has no such layer or it is not 2-D (the hidden layers then answer alone)."""
    from ...errors import LayerMismatchError

    try:
        flat, shape = adapter.read_layer(source, layer)
    except LayerMismatchError:
        return None
    return flat.reshape(shape) if len(shape) == 2 else None


def read_heads(records: Sequence[WeightRecord], layer: str) -> list[np.ndarray | None]:
    """Each record's `layer` as [k, d] rows (any dtype, shards: as `infer_card` reads weights), or None."""
    from ..methods.shaping import layer_reader

    return [read_head(*layer_reader(record.path, record.kind, record.base), layer) for record in records]


@dataclass
class RowReader:
    """A tree's row classifier: P(class | row) = softmax(row_features @ coef.T + intercept) over `vocabulary`."""

    layer: str
    coef: np.ndarray  # [n_labels, width]
    intercept: np.ndarray  # [n_labels]

    @property
    def width(self) -> int:
        return self.coef.shape[1]

    @classmethod
    def fit(cls, layer: str, heads: Sequence[np.ndarray | None], labels: Sequence[Sequence[str]], vocabulary: list[str],
            c: float = ROW_C) -> RowReader:
        """Fit on training heads and their labels in row order (rows of unreadable heads are left out). A label
        no training row has can never be assigned (its intercept is far below every other)."""
        from sklearn.linear_model import LogisticRegression

        index = {label: i for i, label in enumerate(vocabulary)}
        rows, targets = [], []
        for head, names in zip(heads, labels):
            features = None if head is None else row_features(head)
            if features is not None:
                rows.append(features)
                targets += [index[name] for name in names]
        width = next(np.shape(h)[1] for h in heads if h is not None)
        coef, intercept = np.zeros((len(vocabulary), width)), np.full(len(vocabulary), -30.0)
        seen = sorted(set(targets))
        if len(seen) >= 2:
            with warnings.catch_warnings():  # a small tree has few rows per class; sklearn then suspects a regression
                warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%")
                model = LogisticRegression(C=c, max_iter=3000).fit(np.vstack(rows), np.asarray(targets))
            coef[model.classes_], intercept[model.classes_] = model.coef_, model.intercept_
        return cls(layer, coef.astype(np.float32), intercept.astype(np.float32))

    def can_read(self, head: np.ndarray | None) -> bool:
        """Whether `head` is a set of rows this reader reads (2-D, its width, two rows or more, finite)."""
        return head is not None and np.ndim(head) == 2 and np.shape(head)[1] == self.width and row_features(head) is not None

    def assign(self, head: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """([k, n_labels] P(class | row) of each row, [k] the class each row is assigned to: distinct classes, the
        assignment of highest joint probability).

        Raises:
            ValueError: a head this reader cannot read (`can_read`).
        """
        from scipy.optimize import linear_sum_assignment

        features = row_features(head) if np.ndim(head) == 2 and np.shape(head)[1] == self.width else None
        if features is None:
            raise ValueError(f"the head {self.layer!r} cannot be read as a set of rows of width {self.width}")
        logits = features @ self.coef.T.astype(np.float64) + self.intercept
        logits -= logits.max(1, keepdims=True)
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        rows, classes = linear_sum_assignment(-np.log(np.clip(probs, 1e-12, 1.0)))
        return probs, classes[np.argsort(rows)]

    def scores(self, head: np.ndarray) -> np.ndarray:
        """[n_labels] logit of each class's assigned row probability (`_FLOOR` for a class no row is assigned to).

        Raises:
            ValueError: a head this reader cannot read (`can_read`).
        """
        probs, classes = self.assign(head)
        assigned = np.full(self.coef.shape[0], _FLOOR)
        assigned[classes] = np.clip(probs[np.arange(len(classes)), classes], _FLOOR, 1 - _FLOOR)
        return np.log(assigned / (1 - assigned))

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef, "intercept": self.intercept}


def out_of_fold_scores(layer: str, heads: Sequence[np.ndarray | None], labels: Sequence[Sequence[str]], vocabulary: list[str],
                       splits: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """[n, n_labels] row scores of every model from a reader fitted without it (`splits`: (train, test) index
    pairs covering each model once, e.g. one per recipe family); NaN rows for heads no reader can read."""
    scores = np.full((len(heads), len(vocabulary)), np.nan)
    for train_idx, test_idx in splits:
        reader = RowReader.fit(layer, [heads[i] for i in train_idx], [labels[i] for i in train_idx], vocabulary)
        for i in test_idx:
            if reader.can_read(heads[i]):
                scores[i] = reader.scores(heads[i])
    return scores
