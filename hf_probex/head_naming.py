"""Naming a text classifier's classes by running it on candidate texts.

A classifier whose config says only LABEL_0, LABEL_1... still knows its classes: shown a text of one of them, it
puts its probability on that class's head row. So each candidate class (a name, optionally with example texts) is
turned into a few texts (`Candidate.texts_to_run`: the name in `PROMPTS`, and its examples), the classifier is run on
them once (`text_classifiers.TextClassifier`), and each head row is named by the candidate whose texts it answers
most:

- the score of (candidate k, row i) is the mean log-softmax of row i over k's texts, centred over the candidates
  (a row every text leans to says nothing) and over the rows (a candidate every row leans to neither), then scaled
  per row over the candidates (so one threshold serves classifiers trained hard or gently);
- rows are assigned to distinct candidates (a head's classes are distinct): the assignment of highest total score
  (`scipy.optimize.linear_sum_assignment`);
- the decision score of a row is its margin: its assigned candidate's score minus the best other candidate's;
- a `Calibration` (Platt scaling and the threshold of `experts.calibration.confidence`, `fit_naming_calibration`) turns it into
  a confidence, and a row is proposed only at or above the threshold. The shipped calibrations (`CALIBRATIONS`: one
  for candidates given by name, one for candidates with example texts) were fitted on the text-bench zoo's
  classifiers with the zoo's 27 categories as candidates and, for every row, once more without its own class (the
  "none of these" case: a row whose class is not among the candidates must not be named), to 95 % precision in
  every recipe family (scripts/bench_head_naming.py).

Why these choices (first on 21 classifiers of text-bench, then checked on 36 by scripts/bench_head_naming.py; 27
categories as candidates; on all 259 of text-bench: top-1 75.5 % with examples, 65.0 % by names): among mean
log-softmax, raw logits and probabilities, centred over the candidates only or over the rows too, scaled or not, the
scaled double-centred log-softmax held the most rows at 95 % out of family (names alone, calibrated on the full
vocabulary: recall 73 % against 57 to 59 % unscaled or centred over the candidates only); the margin to the
runner-up candidate in the row does as well as the margin of the whole assignment (the best assignment without the
row's candidate) and is simpler; the name alone names as many rows at top-1 (70 %) as the name in prompts (65 to 68
%). Example texts name more (top-1 77.1 % against 65.1 % on 36 classifiers, chance 3.7 %) and are the only way that
stays right when a row's class may be missing from the candidates: by names a near class (computers for linux) then
takes the row with a margin as wide as the right class's, so no threshold reaches 95 % out of family, while with 8
examples per class 19.8 % of the rows are proposed out of family, all right, and 2 rows in 192 are named when their
class is missing (on all 259: 13.9 % at 99.5 %, 3 in 1,346).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .experts.calibration.confidence import Calibration, fit_decisions
from .experts.hub import MAX_EXAMPLES, MAX_VOCABULARY  # examples used at most: more cost a forward pass each and add little
from .text_classifiers import TextClassifier

#: How a candidate's name is put into texts the classifier runs on (the name alone first).
PROMPTS = ("{}", "This is about {}.", "A quote on {}.", "{} jokes and sayings")

#: Calibrations fitted by scripts/bench_head_naming.py (see the module docstring): "names" for candidates given by
#: name only, "examples" when every candidate comes with example texts.
CALIBRATIONS: dict[str, Calibration] = {
    # no threshold reaches 95 % once a row's class may be missing from the names: a near class takes its place with
    # as wide a margin as the right one has (text-bench, 259 classifiers, held out per family: 19 rows proposed)
    "names": Calibration(a=1.2270353445027196, b=-1.7437340450598464, threshold=1.01, precision_target=0.95,
                         oof_precision=float("nan"), oof_recall=0.0, decisions=2721, groups=4),
    # a margin of about 2.6 and up: text-bench's 259 classifiers held out per family, 188 of 1,375 rows proposed, 99.5 %
    # right (recall 13.9 %), and 3 of 1,346 rows named among candidates without their class
    "examples": Calibration(a=1.6550858493984406, b=-1.8161436164000029, threshold=0.9184316303720162,
                            precision_target=0.95, oof_precision=0.9842931937172775, oof_recall=0.18503937007874016,
                            decisions=2721, groups=4),
}


@dataclass(frozen=True)
class Candidate:
    """A class a head row may be named: its name and, optionally, a few texts of that class."""

    name: str
    examples: tuple[str, ...] = ()

    def texts_to_run(self) -> list[str]:
        """The texts the classifier runs on for this candidate: its name in each of `PROMPTS`, then its examples."""
        return [prompt.format(self.name) for prompt in PROMPTS] + list(self.examples[:MAX_EXAMPLES])


@dataclass(frozen=True)
class RowName:
    """What one head row was named: the candidate assigned to it, its margin and calibrated confidence."""

    row: int
    candidate: str | None  #: None when the head has more rows than there are candidates and this one got none
    score: float  #: the row's score for that candidate (scaled over the candidates)
    margin: float  #: the score minus the runner-up candidate's for this row: the decision score calibrated
    runner_up: str | None
    confidence: float
    proposed: bool  #: confidence at or above the calibration's threshold


@dataclass
class HeadNaming:
    """The naming of every head row of one classifier among candidates."""

    rows: list[RowName]
    candidates: list[str]
    scores: np.ndarray  #: [candidates, rows]: the score of each (candidate, row), as the module docstring defines it
    calibration: Calibration = field(repr=False)
    calibration_name: str  #: which of CALIBRATIONS (or "given")
    seconds: float = 0.0  #: time to run the classifier on the candidates' texts and assign

    @property
    def proposed(self) -> dict[int, str]:
        """Row -> candidate, for the rows named at or above the threshold."""
        return {r.row: r.candidate for r in self.rows if r.proposed and r.candidate is not None}

    @property
    def threshold(self) -> float:
        return self.calibration.threshold

    def evidence(self) -> str:
        """One line saying how the rows were named, for a card field's evidence."""
        how = "names and example texts" if self.calibration_name == "examples" else "names"
        return (f"ran the classifier on texts of {len(self.candidates)} candidate classes ({how}); each head row named by "
                f"the candidate it answers most, rows assigned to distinct candidates; {len(self.proposed)} of "
                f"{len(self.rows)} rows at or above the calibrated threshold {self.threshold:.2f}")


def candidate_list(candidates: Sequence[str | Candidate]) -> list[Candidate]:
    """Candidates as `Candidate`s (a plain string is a name), names stripped.

    Raises:
        ValueError: no candidate, an empty name, or a name given twice.
    """
    out = [c if isinstance(c, Candidate) else Candidate(str(c)) for c in candidates]
    out = [Candidate(c.name.strip(), tuple(str(t) for t in c.examples)) for c in out]
    names = [c.name for c in out]
    if not out or not all(names):
        raise ValueError("give at least one candidate class, each with a non-empty name")
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"candidate names must be distinct; given more than once: {', '.join(twice)}")
    return out


def parse_candidates(text: str, separator: str = "\t", limit: int = MAX_VOCABULARY) -> list[Candidate]:
    """Candidate classes or concepts from text, one a line (blank lines ignored); a line may add example texts of the
    class after `separator` (`name<TAB>example<TAB>example`: a text classifier's rows are named from them far more
    often; a LoRA's concept is ranked by its name).

    Raises:
        ValueError: no candidate, more than `limit` (default what an expert's vocabulary holds), or text that is
            not UTF-8.
    """
    from .errors import BadTextError
    from .experts.vocabulary import clean_candidates
    from .text import check_texts

    rows = [[part.strip() for part in line.split(separator)] for line in text.splitlines() if line.strip()]
    names = clean_candidates((row[0] for row in rows), limit)  # in order, blanks and repeats dropped
    examples = {}
    for name, *texts in rows:
        examples.setdefault(name, tuple(t for t in texts if t)[:MAX_EXAMPLES])
    try:
        check_texts([t for name in names for t in examples[name]])
    except BadTextError as err:
        raise ValueError(f"an example {err}") from None
    return [Candidate(name, examples[name]) for name in names]


def read_candidates(path: str | os.PathLike) -> list[Candidate]:
    """Candidate classes or concepts from a UTF-8 text file, as `parse_candidates` reads them (examples after tabs).

    Raises:
        ValueError: an unreadable or empty file, or one that is not UTF-8 text (the message says what to fix).
    """
    if Path(path).exists() and not Path(path).is_file():  # a FIFO or a device is read until it ends: maybe never
        raise ValueError(f"{path} is not a regular file: give a UTF-8 text file with one concept per line")
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(MAX_VOCABULARY * 200)
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read the candidates file {path}: {err.__class__.__name__}; give a UTF-8 text file "
                         f"with one concept per line") from None
    try:
        return parse_candidates(text)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def score_matrix(logits: Sequence[np.ndarray]) -> np.ndarray:
    """The [candidates, rows] scores from each candidate's logits [its texts, rows] (the module docstring)."""
    from scipy.special import log_softmax

    mean = np.stack([log_softmax(np.asarray(x, dtype=np.float64), axis=-1).mean(0) for x in logits])
    centred = mean - mean.mean(0, keepdims=True)
    centred = centred - centred.mean(1, keepdims=True)
    return centred / np.maximum(centred.std(0, keepdims=True), 1e-9)


def calibration_for(candidates: Sequence[Candidate]) -> tuple[str, Calibration]:
    """The shipped calibration that fits these candidates: "examples" when every one has example texts, else "names"."""
    name = "examples" if all(c.examples for c in candidates) else "names"
    return name, CALIBRATIONS[name]


def assign(scores: np.ndarray, names: Sequence[str], calibration: Calibration, calibration_name: str = "given") -> HeadNaming:
    """Name the rows from a [candidates, rows] score matrix (`score_matrix`): rows assigned to distinct candidates,
    each with its margin to the runner-up and its calibrated confidence."""
    from scipy.optimize import linear_sum_assignment

    scores = np.asarray(scores, dtype=np.float64)
    n_candidates, n_rows = scores.shape
    assigned = dict(zip(*linear_sum_assignment(-scores.T)))  # row -> candidate index
    rows = []
    for row in range(n_rows):
        k = assigned.get(row)
        if k is None:
            rows.append(RowName(row, None, float("nan"), float("nan"), None, 0.0, False))
            continue
        column = scores[:, row]
        others = np.delete(np.arange(n_candidates), k)
        runner = int(others[column[others].argmax()]) if len(others) else None
        margin = float(column[k] - column[runner]) if runner is not None else 0.0
        confidence = float(calibration.confidence(np.array([margin]))[0])
        rows.append(RowName(row, names[k], float(column[k]), margin, None if runner is None else names[runner],
                            confidence, confidence >= calibration.threshold))
    return HeadNaming(rows, list(names), scores, calibration, calibration_name)


def name_rows(classifier: TextClassifier, candidates: Sequence[str | Candidate],
              calibration: Calibration | None = None) -> HeadNaming:
    """Name each head row of `classifier` among `candidates` (names, or `Candidate`s with example texts).

    Runs the classifier once on every candidate's texts (`Candidate.texts_to_run`), scores each (candidate, row)
    (`score_matrix`), assigns rows to distinct candidates (`assign`) and proposes the rows whose calibrated confidence
    reaches the threshold. `calibration` defaults to the shipped one for these candidates (`calibration_for`).

    Raises:
        ValueError: no candidates, an empty or repeated name (`candidate_list`).
    """
    started = time.perf_counter()
    chosen = candidate_list(candidates)
    name, shipped = calibration_for(chosen)
    texts = [c.texts_to_run() for c in chosen]
    logits = classifier.logits([t for group in texts for t in group])
    bounds = np.cumsum([0] + [len(group) for group in texts])
    scores = score_matrix([logits[start:end] for start, end in zip(bounds[:-1], bounds[1:])])
    naming = assign(scores, [c.name for c in chosen], calibration or shipped, name if calibration is None else "given")
    naming.seconds = time.perf_counter() - started
    return naming


def naming_decisions(namings: Sequence[HeadNaming], labels: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    """The decisions of `namings` as calibration reads them: each assigned row's margin, and whether its candidate is
    the row's true class (`labels[m][row]`, one list per model in head-row order)."""
    margins, truth = [], []
    for naming, truths in zip(namings, labels):
        for row in naming.rows:
            if row.candidate is not None:
                margins.append(row.margin)
                truth.append(row.candidate == truths[row.row])
    return np.array(margins, dtype=np.float64), np.array(truth, dtype=bool)


def fit_naming_calibration(namings: Sequence[HeadNaming], labels: Sequence[Sequence[str]], groups: Sequence[str],
                           precision_target: float = 0.95) -> Calibration:
    """Fit the calibration of row margins on classifiers whose classes are known: Platt scaling and the lowest
    threshold whose proposals reach `precision_target` pooled and in every group (one per naming: its model's recipe
    family) with enough of them (`experts.calibration.confidence.fit_decisions`).

    Include namings among candidates that lack some rows' true classes: those rows are wrong whatever they are
    named, and the threshold learns to leave them unnamed.
    """
    margins, truth = naming_decisions(namings, labels)
    per_row = [group for naming, group in zip(namings, groups) for row in naming.rows if row.candidate is not None]
    return fit_decisions(margins, truth, np.array(per_row), precision_target)
