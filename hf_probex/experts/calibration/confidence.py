"""Confidence calibration: turning an expert's scores into confidences, and the threshold to propose at.

An expert's raw outputs are not probabilities one can act on (ridge's are shifted regressions, the
networks are over- or under-confident). Calibration is fitted on out-of-fold predictions of the
training models (every model scored by an expert that never saw it; where the models' recipe families
are known, an expert that never saw the model's family: `harness.cv_splits`) with Platt scaling on one
score per decision:

- class subsets: every (model, label) cell is one decision "this model was trained on this class";
  its score is the logit of the expert's probability, centred per label (over the calibration models:
  some labels are rated high for every model) and then standardised within the model (over its
  labels). A recipe moves all of a model's scores together (a stronger fine-tune, a gentler one); what
  it trained on shows as labels standing out from its own other labels, which is what the score keeps.
  On raw logits no decision reached 95 % precision on a held-out family of the bench ResNet tree; the
  per-label centring is what lets the small zoo's expert propose at all (1.5 % recall at 95 % out of
  family, none without it), at a cost on the bench ResNet tree (2.5 % instead of 3.0 %);
- concepts: the top-1 concept of each model is one decision; its score is the margin between the
  best and second-best cosine. Where the calibration also knows what LoRAs of concepts missing from the list
  score (`unseen`: each decision again with its true concept withheld, `withheld_concepts`), the best cosine
  itself is a second score (`fit`, its weight: how well the best concept fits at all, which a margin between
  two wrong concepts does not say), and the threshold also keeps at most 1 - target of those LoRAs proposed:
  the expert says "none of these" rather than name the nearest wrong concept. Where the calibration knows which
  concepts the reading expert trained on (`trained`), the two kinds of top concept are told apart (`threshold_for`): a
  concept it trained on is proposed only when it also leads the best concept it never trained on by
  `known_margin` (`untrained_lead`): an expert reads a LoRA of a concept it does not know as its nearest trained
  neighbour, often surely, but rarely far ahead of the concept itself; a concept it never trained on has a
  threshold of its own, `untrained_threshold` (when a LoRA lands nearest a concept the expert never saw, that is
  evidence in itself). Both are chosen with the threshold, on decisions that include LoRAs whose concept the
  reading expert never trained on (`harness.concepts_out`), as the pair that keeps the most right decisions at the
  target. A top concept may also need to lead the runner-up by `least_margin` (`margin_for`): one the expert never
  trained on where the two kinds are told apart, every one otherwise (a caller's lists); a near tie between
  neighbours (inverted eight or inverted nine) is where a LoRA of an unknown concept is misread, often at a high
  cosine that Platt scaling alone lets through. It is chosen with the rest, the least that keeps the most right
  decisions.

An expert that also reads the classification head as a set of rows (`head_rows`) has a second score per
decision, the row score of the label; the two are calibrated jointly (a logistic regression on both,
`head` its weight on the row score), and the threshold is fitted on the joint confidences the same way.

`threshold` is then the lowest calibrated confidence at which the decisions at or above it reach the
target precision (default 95 %) on the pooled out-of-fold predictions and in every group (recipe
family) that has at least `min_support` decisions there: a threshold that only holds on average over
families would not hold on the family of a stranger's recipe. Below it hf_probex abstains.

An expert that fuses several modules of a LoRA (`hub.Expert.fused`) is calibrated on its decisions with every
module present, and once more for each proper subset of its modules (`subsets`, keyed "0,2": the out-of-fold
scores averaged over those modules only): a LoRA that targets fewer modules is read with the calibration of
the ones it has (`for_modules`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

PRECISION_TARGET = 0.95
MIN_SUPPORT = 10


def _logits(predictions: np.ndarray) -> np.ndarray:
    p = np.clip(predictions, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _within_rows(values: np.ndarray) -> np.ndarray:
    centred = values - values.mean(axis=1, keepdims=True)
    return centred / np.maximum(centred.std(axis=1, keepdims=True), 1e-6)


@dataclass
class Calibration:
    """Platt scaling confidence = sigmoid(a * score + b), and the confidence threshold to propose at.

    `label_mean`: each label's mean logit over the calibration models, what class-subset scores are centred
    by (empty for concepts).
    """

    a: float
    b: float
    threshold: float
    precision_target: float
    oof_precision: float  # of the out-of-fold decisions at or above the threshold (nan if none)
    oof_recall: float  # share of the true decisions proposed at the threshold
    decisions: int
    label_mean: list[float] = field(default_factory=list)
    groups: int = 0  # recipe families the threshold was checked on (0: none known)
    head: float = 0.0  # the weight of the row score (`head_rows`) when fitted jointly with it, else 0
    modules: int = 0  # fused experts: how many modules it reads (0: one input)
    subsets: dict = field(default_factory=dict)  # fused experts: "0,2" -> the calibration of those modules alone
    unseen_models: int = 0  # models trained on classes outside the vocabulary the threshold was checked on
    unseen_proposed: float = 0.0  # the share of them that get a class at the threshold
    vocabulary_threshold: float | None = None  # the threshold the vocabulary's models alone would allow
    fit: float = 0.0  # concepts: the weight of the best concept's own cosine beside the margin (0: margin alone)
    lists: dict = field(default_factory=dict)  # concepts: the calibration of a caller's short candidate list
    known_margin: float = 0.0  # concepts: the least `untrained_lead` a concept the expert trained on needs (0: none)
    untrained_threshold: float | None = None  # concepts: the threshold of a top concept it never trained on (None: same)
    least_margin: float = 0.0  # concepts: the least lead over the runner-up a top concept needs (`margin_for`; 0: none)

    @property
    def limited_by_unseen(self) -> bool:
        """Whether the threshold is higher than the vocabulary's models alone ask, to keep classes from models
        trained on classes outside it."""
        return self.vocabulary_threshold is not None and self.vocabulary_threshold < self.threshold

    @property
    def reads_head(self) -> bool:
        return self.head != 0.0

    def for_modules(self, present: tuple[int, ...]) -> "Calibration":
        """The calibration of a model that has the modules `present` (indices): this one when it has them all (or
        the expert reads one input), that subset's otherwise.

        Raises:
            ValueError: no calibration for that subset (an expert trained before it fused modules).
        """
        if len(present) >= self.modules:
            return self
        key = subset_key(present)
        if key not in self.subsets:
            raise ValueError(f"no calibration for the modules {key} of this expert: train it again")
        return Calibration(**self.subsets[key])

    def for_candidates(self) -> "Calibration":
        """The calibration of a ranking among a caller's candidates: `lists` (fitted on short lists drawn from the
        calibration's own decisions) where there is one, else this one."""
        return Calibration(**self.lists) if self.lists else self

    def scores(self, task: str, predictions: np.ndarray) -> np.ndarray:
        """The calibrated score of each decision (see the module docstring): [n, n_labels] or [n]."""
        predictions = np.asarray(predictions, dtype=np.float64)
        if task == "multilabel":
            return _within_rows(_logits(predictions) - np.asarray(self.label_mean))
        top2 = np.sort(predictions, axis=1)[:, -2:] if predictions.shape[1] > 1 else np.pad(predictions, ((0, 0), (1, 0)))
        return top2[:, 1] - top2[:, 0]

    def threshold_for(self, untrained_top: bool) -> float:
        """The threshold of a top concept the expert never trained on (`untrained_top`: `untrained_threshold` where
        there is one) or of one it trained on (`threshold`; concepts: with a lead of `known_margin` over the best one
        it never trained on, `untrained_lead`)."""
        return self.untrained_threshold if untrained_top and self.untrained_threshold is not None else self.threshold

    def margin_for(self, untrained_top: bool) -> float:
        """The least margin over the runner-up a top concept needs (`least_margin`): where the calibration tells the two
        kinds of top concept apart (`untrained_threshold` set), a concept the expert never trained on (one it trained on
        needs its lead over the untrained ones instead, `known_margin`); otherwise every top concept."""
        return self.least_margin if untrained_top or self.untrained_threshold is None else 0.0

    def confidence(self, scores: np.ndarray, head_scores: np.ndarray | None = None,
                   best: np.ndarray | None = None) -> np.ndarray:
        """sigmoid(a * score + b + head * row score + fit * best cosine), the last two where given."""
        z = self.a * np.asarray(scores, dtype=np.float64) + self.b
        if head_scores is not None:
            z = z + self.head * np.asarray(head_scores, dtype=np.float64)
        if best is not None:
            z = z + self.fit * np.asarray(best, dtype=np.float64)
        return 1.0 / (1.0 + np.exp(-z))

    def confidences(self, task: str, predictions: np.ndarray, head_scores: np.ndarray | None = None) -> np.ndarray:
        """The calibrated confidence of each decision of `predictions` (and their row scores, for a joint calibration;
        a concept's best cosine where `fit` weighs it)."""
        best = np.asarray(predictions, dtype=np.float64).max(axis=1) if task != "multilabel" and self.fit else None
        return self.confidence(self.scores(task, predictions), head_scores, best)

    def to_dict(self) -> dict:
        return asdict(self)


_NUMBERS = ("a", "b", "threshold", "precision_target", "oof_precision", "oof_recall", "head", "unseen_proposed", "fit",
            "known_margin", "least_margin")
_OPTIONAL_NUMBERS = ("vocabulary_threshold", "untrained_threshold")
_COUNTS = ("decisions", "groups", "modules", "unseen_models")
_SUBSET = re.compile(r"\d{1,2}(,\d{1,2}){0,15}")


def _number(value: object, nan: bool = False) -> bool:
    return type(value) in (int, float) and (np.isfinite(value) or (nan and np.isnan(value)))


def calibration_ok(value: object, labels: int | None, nested: bool = True) -> bool:
    """Whether `value` is a calibration hf_probex can apply (`Calibration.to_dict()`'s keys, finite numbers, counts,
    `label_mean` with one finite number per label where `labels` says how many, `subsets` of module indices each a
    calibration without subsets of its own, `lists` one without subsets or lists). An expert's config comes from
    anywhere: checked before it is used."""
    if not isinstance(value, dict) or not {"a", "b", "threshold"} <= set(value) <= set(Calibration.__dataclass_fields__):
        return False
    numbers_ok = all(_number(value[k], nan=k == "oof_precision") for k in _NUMBERS if k in value)
    counts_ok = all(type(value[k]) is int and 0 <= value[k] <= 10**9 for k in _COUNTS if k in value)
    means = value.get("label_mean", [])
    means_ok = isinstance(means, list) and all(_number(m) for m in means) and (not means or labels in (None, len(means)))
    optional_ok = all(value.get(k) is None or _number(value[k]) for k in _OPTIONAL_NUMBERS)
    subsets = value.get("subsets", {})
    subsets_ok = isinstance(subsets, dict) and (nested or not subsets) and len(subsets) <= 2**16 and all(
        isinstance(k, str) and _SUBSET.fullmatch(k) and calibration_ok(v, labels, nested=False) for k, v in subsets.items())
    lists = value.get("lists", {})
    lists_ok = lists == {} or (isinstance(lists, dict) and not lists.get("lists") and not lists.get("subsets")
                               and calibration_ok(lists, labels, nested=False))
    return numbers_ok and counts_ok and means_ok and optional_ok and subsets_ok and lists_ok


def subset_key(present: tuple[int, ...]) -> str:
    """How `Calibration.subsets` names a subset of a fused expert's modules: "0,2"."""
    return ",".join(str(k) for k in sorted(present))


def withheld_concepts(predictions: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each concept decision again as if its model's concept were missing from the list: its cosines [n, C] without the
    true concept's (`y`), [n, C - 1]. What a LoRA of a concept nobody listed scores, for `fit_calibration(unseen=)`."""
    predictions = np.asarray(predictions, dtype=np.float64)
    keep = np.arange(predictions.shape[1])[None, :] != np.asarray(y)[:, None]
    return predictions[keep].reshape(len(predictions), -1)


def untrained_lead(predictions: np.ndarray, trained: np.ndarray) -> np.ndarray:
    """How far each decision's top concept leads the best concept the expert never trained on, where the top one is a
    concept it trained on ([n]); +inf where it is not, or where every concept of the row is one it trained on.

    `predictions` [n, C] cosines (-inf: not in the list); `trained` [C] or [n, C]: whether the reading expert trained
    on each concept."""
    predictions = np.asarray(predictions, dtype=np.float64)
    trained = np.broadcast_to(np.asarray(trained, dtype=bool), predictions.shape)
    best_untrained = np.where(trained, -np.inf, predictions).max(axis=1, initial=-np.inf)
    return np.where(~top_untrained(predictions, trained) & np.isfinite(best_untrained),
                    predictions.max(axis=1, initial=-np.inf) - best_untrained, np.inf)


def top_untrained(predictions: np.ndarray, trained: np.ndarray) -> np.ndarray:
    """Whether each decision's top concept is one the expert never trained on ([n]; as `untrained_lead`)."""
    predictions = np.asarray(predictions, dtype=np.float64)
    trained = np.broadcast_to(np.asarray(trained, dtype=bool), predictions.shape)
    return ~trained[np.arange(len(predictions)), predictions.argmax(axis=1)] if predictions.size else trained[:, 0]


def decision_outcomes(task: str, predictions: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether each decision is true: the label is in the set, or the top-1 concept is the model's."""
    if task == "multilabel":
        return np.asarray(y) > 0.5
    return predictions.argmax(1) == np.asarray(y)


def _precision_above(thresholds: np.ndarray, confidence: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each candidate threshold: (precision, count) of the decisions whose confidence is at or above it."""
    order = np.argsort(-confidence, kind="stable")
    true_so_far = np.concatenate([[0], np.cumsum(truth[order])])
    count = len(confidence) - np.searchsorted(np.sort(confidence), thresholds, side="left")
    return np.where(count > 0, true_so_far[count] / np.maximum(count, 1), 1.0), count


#: The margins `fit_decisions` tries for `Calibration.known_margin` (cosine differences; 0: no margin asked).
KNOWN_MARGINS = tuple(round(0.02 * k, 2) for k in range(26))
#: The levels it tries for `Calibration.untrained_threshold`, surest first (above 1: never).
UNTRAINED_LEVELS = (1.01, *(round(1 - 0.05 * k, 2) for k in range(1, 20)))
#: The margins over the runner-up it tries for `Calibration.least_margin` (0: none asked).
LEAST_MARGINS = KNOWN_MARGINS[:11]


@dataclass(frozen=True)
class TopKinds:
    """Concepts: each decision's top concept as the reading expert knows it (`fit_decisions(kinds=)`): its
    `untrained_lead` (`lead`), whether it is a concept the expert never trained on (`untrained`), and the same for
    the unseen decisions (`unseen_lead`, `unseen_untrained`, or None)."""

    lead: np.ndarray
    untrained: np.ndarray
    unseen_lead: np.ndarray | None
    unseen_untrained: np.ndarray | None


def fit_calibration(task: str, predictions: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None,
                    precision_target: float = PRECISION_TARGET, min_support: int = MIN_SUPPORT,
                    head_scores: np.ndarray | None = None, unseen: np.ndarray | None = None,
                    unseen_head_scores: np.ndarray | None = None, unseen_y: np.ndarray | None = None,
                    trained: np.ndarray | None = None, unseen_trained: np.ndarray | None = None,
                    pooled: np.ndarray | None = None) -> Calibration:
    """Fit Platt scaling and the precision threshold on out-of-fold `predictions` of targets `y`.

    With `head_scores` (class subsets: the out-of-fold row score of each (model, label), `head_rows`) the
    confidence is fitted on both scores jointly. `groups` holds one group per model (e.g. its recipe family).
    `unseen` (class subsets): the predictions [m, n_labels] of models trained on classes outside the vocabulary
    (and their row scores, `unseen_head_scores`), from experts that never saw them; every class proposed for
    one is wrong (but those of `unseen_y`, 0/1 [m, n_labels]: the vocabulary's classes it was trained on too),
    so the threshold must leave at most 1 - `precision_target` of them with a wrong class. `trained` (concepts,
    [C] or [n, C], and `unseen_trained` for the `unseen` decisions' columns): which concepts the expert that read each
    decision trained on; the calibration then tells the two kinds of top concept apart (`threshold_for`).
    `pooled` (one per model, default all): the models whose decisions count in the pooled precision; the others
    count in their group only. The rest is `fit_decisions` on the decisions' scores (the module docstring).

    Raises:
        ValueError: `trained` without `unseen_trained` where there are `unseen` decisions.
    """
    predictions = np.asarray(predictions, dtype=np.float64)
    stats = {"label_mean": _logits(predictions).mean(0).tolist()} if task == "multilabel" else {}
    scoring = Calibration(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, **stats)
    scores = scoring.scores(task, predictions).ravel()
    truth = decision_outcomes(task, predictions, y).ravel()
    per_decision = None if groups is None else np.repeat(np.asarray(groups), truth.size // len(groups))
    if pooled is not None:
        pooled = np.repeat(np.asarray(pooled, dtype=bool), truth.size // len(pooled))
    head = None if head_scores is None else np.asarray(head_scores, dtype=np.float64).ravel()
    unseen_scores = None if unseen is None or not len(unseen) else scoring.scores(task, unseen)
    kinds = None
    if trained is not None:
        if unseen_scores is not None and unseen_trained is None:
            raise ValueError("which concepts the unseen decisions' experts trained on is needed with `trained`")
        kinds = TopKinds(untrained_lead(predictions, trained), top_untrained(predictions, trained),
                         None if unseen_scores is None else untrained_lead(unseen, unseen_trained),
                         None if unseen_scores is None else top_untrained(unseen, unseen_trained))
    if task != "multilabel" and unseen_scores is not None:  # concepts missing from the list: the best cosine says so
        return fit_decisions(scores, truth, per_decision, precision_target, min_support, predictions.max(axis=1),
                             unseen_scores=unseen_scores, unseen_head_scores=np.asarray(unseen).max(axis=1),
                             second="fit", kinds=kinds, pooled=pooled, **stats)
    return fit_decisions(scores, truth, per_decision, precision_target, min_support, head, unseen_scores=unseen_scores,
                         unseen_head_scores=unseen_head_scores, unseen_truth=unseen_y, kinds=kinds, pooled=pooled,
                         **stats)


def fit_decisions(scores: np.ndarray, truth: np.ndarray, groups: np.ndarray | None = None,
                  precision_target: float = PRECISION_TARGET, min_support: int = MIN_SUPPORT,
                  head_scores: np.ndarray | None = None, unseen_scores: np.ndarray | None = None,
                  unseen_head_scores: np.ndarray | None = None, unseen_truth: np.ndarray | None = None,
                  second: str = "head", kinds: TopKinds | None = None, pooled: np.ndarray | None = None,
                  **stats) -> Calibration:
    """Fit Platt scaling and the precision threshold on one score per decision (`scores`, and `head_scores` when the
    confidence reads a second score jointly) and whether each decision is true (`truth`).

    The threshold is the lowest confidence level whose decisions at or above it (ties included) reach
    `precision_target` pooled (counting only levels with at least `min_support` decisions: a precision
    measured on two decisions says nothing; `pooled`: the decisions that count there, default all) and within each
    of `groups` (one group per decision, e.g. its model's recipe family) that has `min_support` decisions at that
    level; if none does, the threshold is above 1: never propose. `stats` are stored in the Calibration as they are
    (`label_mean`).

    `unseen_scores` ([m, n_labels], with `unseen_head_scores` for a joint confidence): the decisions of m models
    trained on classes outside the vocabulary, wrong but where `unseen_truth` says otherwise; at the threshold at
    most 1 - `precision_target` of those models may have a wrong decision at or above it (`vocabulary_threshold`
    keeps the level the other decisions alone allow, `unseen_proposed` the share of those models given a wrong
    class at the threshold).

    `second` names what the second score is: "head" (a class's row score) or "fit" (a concept's best cosine, whose
    calibration also learns from the `unseen` decisions, all wrong, how low a concept missing from the list scores).

    `kinds` (concepts, `TopKinds`): the threshold is fitted again for each margin of `KNOWN_MARGINS` and each level of
    `UNTRAINED_LEVELS`: a decision whose top concept the expert trained on is proposed at the threshold only with a
    lead of that margin, one whose top concept it never trained on at that level, the unseen decisions' too; the
    pair that keeps the most true decisions proposed, every decision counted, wins (on ties the one with fewer wrong,
    then the lesser margin and the surer level): `known_margin`, `untrained_threshold`. Concepts (`second` "fit" or
    `kinds`) are also fitted for each least margin over the runner-up of `LEAST_MARGINS` (`least_margin`: with `kinds`
    for a top concept the expert never trained on, else for every top concept; the lesser wins ties).

    When the decisions are all true (or all false) there is no score to fit: every decision then gets the
    out-of-fold precision as its confidence (clipped to [0.001, 0.999]).
    """
    from sklearn.linear_model import LogisticRegression

    scores, truth = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(truth, dtype=bool).ravel()
    head = None if head_scores is None else np.asarray(head_scores, dtype=np.float64).ravel()
    inputs = scores[:, None] if head is None else np.stack([scores, head], axis=1)
    targets = truth
    if second == "fit" and unseen_scores is not None and len(unseen_scores):
        inputs = np.concatenate([inputs, np.stack([np.ravel(unseen_scores), np.ravel(unseen_head_scores)], axis=1)])
        targets = np.concatenate([truth, np.zeros(np.size(unseen_scores), dtype=bool)])
    weight = 0.0
    if targets.all() or not targets.any():
        a, b = 0.0, float(_logits(np.array([truth.mean()]).clip(0.001, 0.999))[0])
    else:
        platt = LogisticRegression().fit(inputs, targets)
        a, b = float(platt.coef_[0, 0]), float(platt.intercept_[0])
        weight = float(platt.coef_[0, 1]) if head is not None else 0.0
    stats[second] = weight
    scaling = Calibration(a, b, 0.0, 0.0, 0.0, 0.0, 0, head=weight)
    confidence = scaling.confidence(scores, head)
    stats["groups"] = 0 if groups is None else len(set(np.asarray(groups).tolist()))
    wrong = None
    if unseen_scores is not None and len(unseen_scores):
        wrong = scaling.confidence(unseen_scores, unseen_head_scores).reshape(len(unseen_scores), -1)
        if unseen_truth is not None:
            wrong = np.where(np.asarray(unseen_truth).reshape(wrong.shape) > 0.5, -np.inf, wrong)
    if kinds is None and second != "fit":
        return _thresholded(scaling, confidence, truth, groups, wrong, precision_target, min_support, stats, pooled)[0]
    fitted, kept = None, None
    for chosen, unseen, gates in _gated(confidence, scores, wrong, unseen_scores, kinds):
        candidate, keeps = _thresholded(scaling, chosen, truth, groups, unseen, precision_target, min_support,
                                        {**stats, **gates}, pooled)
        if fitted is None or keeps > kept:  # the first of equals: the lesser margins, the surer level
            fitted, kept = candidate, keeps
    return fitted


def _gated(confidence: np.ndarray, margins: np.ndarray, wrong: np.ndarray | None, unseen_margins: np.ndarray | None,
           kinds: TopKinds | None) -> Iterator[tuple[np.ndarray, np.ndarray | None, dict]]:
    """The concept decisions' confidences (and the unseen ones', `wrong`) under each combination of gates
    `fit_decisions` tries, in its order of preference, with the gates' values: -inf where a gate holds a decision
    back, +inf where an untrained top concept is proposed at any threshold (its own level reached)."""
    unseen_margins = None if wrong is None else np.asarray(unseen_margins, dtype=np.float64).reshape(wrong.shape)
    for least in LEAST_MARGINS:  # a top concept within `least` of the runner-up is a near tie
        tie, unseen_tie = margins < least, None if wrong is None else unseen_margins < least
        if kinds is None:  # every top concept alike
            yield (np.where(tie, -np.inf, confidence), None if wrong is None else np.where(unseen_tie, -np.inf, wrong),
                   {"least_margin": least})
            continue
        for margin in KNOWN_MARGINS:
            led = np.where(kinds.lead >= margin, confidence, -np.inf)
            for level in UNTRAINED_LEVELS:
                chosen = np.where(kinds.untrained, np.where((confidence >= level) & ~tie, np.inf, -np.inf), led)
                unseen = wrong if wrong is None or kinds.unseen_untrained is None else np.where(
                    kinds.unseen_untrained[:, None], np.where((wrong >= level) & ~unseen_tie, np.inf, -np.inf),
                    np.where((kinds.unseen_lead >= margin)[:, None], wrong, -np.inf))
                yield chosen, unseen, {"least_margin": least, "known_margin": margin, "untrained_threshold": level}


def _thresholded(scaling: Calibration, confidence: np.ndarray, truth: np.ndarray, groups: np.ndarray | None,
                 wrong: np.ndarray | None, precision_target: float, min_support: int, stats: dict,
                 pooled: np.ndarray | None = None) -> tuple[Calibration, tuple[int, int]]:
    """`fit_decisions`' threshold for the decisions' `confidence` (-inf: never proposed, +inf: proposed at any
    threshold) and the `wrong` ones' (the unseen models', [m, k]) under the Platt scaling `scaling`; and what it
    keeps, to compare calibrations by: (true decisions proposed, minus the wrong ones), every decision counted
    (its `oof_precision` and `oof_recall` count the `pooled` ones)."""
    proposable = np.isfinite(confidence)
    pooled = slice(None) if pooled is None else pooled
    precision, count = _precision_above(confidence, confidence[pooled], truth[pooled])
    valid = proposable & (precision >= precision_target) & (count >= min_support)
    if groups is not None:  # every recipe family with enough decisions at a level must reach the target there too
        groups = np.asarray(groups)
        for group in set(groups.tolist()):
            mask = groups == group
            precision, count = _precision_above(confidence, confidence[mask], truth[mask])
            valid &= (precision >= precision_target) | (count < min_support)
    stats = dict(stats)
    unseen_share = None
    if wrong is not None:
        tops = np.sort(wrong.max(1))

        def unseen_share(level: float | np.ndarray) -> np.ndarray:
            return (len(tops) - np.searchsorted(tops, level, side="left")) / len(tops)  # their share with a class at `level`

        stats.update(unseen_models=len(tops), vocabulary_threshold=float(confidence[valid].min()) if valid.any() else 1.01)
        valid &= unseen_share(confidence) <= 1 - precision_target + 1e-9
    a, b = scaling.a, scaling.b
    if not valid.any():  # never confident enough, whatever the kind of top concept
        stats.update({"untrained_threshold": 1.01} if "untrained_threshold" in stats else {})
        return Calibration(a, b, 1.01, precision_target, float("nan"), 0.0, len(truth), **stats), (0, 0)
    threshold = float(confidence[valid].min())  # the lowest level that still meets the target: the most recall
    proposed = confidence >= threshold
    if unseen_share is not None:
        stats["unseen_proposed"] = float(unseen_share(threshold))
    counted, truths = proposed[pooled], truth[pooled]
    keeps = (int(truth[proposed].sum()), -int((~truth[proposed]).sum()))
    return Calibration(a, b, threshold, precision_target, float(truths[counted].mean()),
                       float(truths[counted].sum() / max(truths.sum(), 1)), len(truth), **stats), keeps


def holds_out_of_family(task: str, predictions: np.ndarray, y: np.ndarray, groups: np.ndarray | None,
                        head_scores: np.ndarray | None = None, precision_target: float = PRECISION_TARGET,
                        significance: float = 0.01) -> bool:
    """Whether calibrating this way survives a recipe family it never saw: for each family, the calibration fitted
    on the other families' decisions (`fit_calibration`, same arguments) proposes on that family's decisions, and
    its errors there must not be significantly more than the target allows (one-sided binomial test at
    `significance`: 13 wrong of 21 fails, 18 of 540 passes). True when fewer than three families are known (nothing
    to check against).

    Every decision must already be out of family (each family's predictions and row scores from experts that
    never saw it), as `harness.cv_splits` makes them.
    """
    from scipy.stats import binomtest

    if groups is None or len(set(np.asarray(groups).tolist())) < 3:
        return True
    groups = np.asarray(groups)
    for group in sorted(set(groups.tolist())):
        fit, held = groups != group, groups == group
        calibration = fit_calibration(task, predictions[fit], y[fit], groups[fit], precision_target,
                                      head_scores=None if head_scores is None else head_scores[fit])
        rows = None if head_scores is None else head_scores[held]
        proposed = calibration.confidences(task, predictions[held], rows) >= calibration.threshold
        truth = decision_outcomes(task, predictions[held], y[held])[proposed]
        wrong = int((~truth).sum())
        if wrong and binomtest(wrong, truth.size, 1 - precision_target, alternative="greater").pvalue < significance:
            return False
    return True
