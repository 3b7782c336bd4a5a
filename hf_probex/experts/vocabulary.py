"""Which concepts a zero-shot (LoRA) expert ranks a model against, and the calibration that goes with them.

A zero-shot expert maps a LoRA's layer into a text-embedding space, so any concept written as text can be
scored. Three vocabularies, first that applies:

- `candidates`: a list the caller gives (`infer_card(..., candidates=)`, `hf-probex infer --candidates FILE`),
  embedded with the expert's own text encoder and prompt;
- `default`: the expert's open vocabulary, stored with it (the training concepts and the held-out concepts the
  weight set names, `Expert.open_vocabulary`);
- `training`: the concepts it was trained on (experts saved before open vocabularies).

The confidence of the top concept is its margin over the runner-up and its own cosine (`calibration`),
calibrated for the vocabulary it is read against: the default vocabulary's calibration was fitted on out-of-fold
decisions of both in-vocabulary LoRAs and LoRAs of held-out concepts (each read by an expert that saw neither its
concept nor its recipe family), the threshold holding on each (`harness.train_expert`), and on the same LoRAs
with their concept withheld from the list: at most 5 % of those may get a concept, so a LoRA of a concept no
list holds gets "none of these".

A caller's list is read with the open calibration too: the best cosine is a score of its own, so a list that
lacks the LoRA's concept gets "no candidate fits" rather than its nearest wrong concept. From the default
vocabulary, a concept the expert trained on must also lead the best one it never trained on by the calibration's
`known_margin`, and a top concept it never trained on has its own threshold and least margin over the runner-up
(`Calibration.threshold_for`, `margin_for`; `Vocabulary.trained`: which concepts it trained on; a candidate counts
as one when its text says the same, `SAME_CONCEPT`, which the details report; a list's calibration has one
threshold and least margin for every top concept and asks no lead). An expert
without an open calibration never proposes from a vocabulary other than its training one, except at a minimum
confidence the caller asks for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .hub import MAX_VOCABULARY, Expert

#: A calibrated threshold above every confidence: the expert never proposes at its own threshold.
NEVER = 1.01
#: How much a model's best cosine with another known concept counts against its cosine with a query (`query_fit`):
#: on the bench sd tree 0.5 and 1 both put a LoRA of each held-out concept in the top 5 (raw cosine: 10 of 12), and
#: on the tiny zoo's near-signal-free expert 0.5 keeps what the raw cosine finds, 1 does not (docs/benchmarks.md).
RIVAL_WEIGHT = 0.5
#: Text cosine at or above which a concept the expert knows says the same as a query ("a rotated 8" and
#: "a rotated eight": 0.97 with all-MiniLM-L6-v2; "a rotated nine": 0.87), so it is not a rival (`query_fit`).
SAME_CONCEPT = 0.93


@dataclass(frozen=True)
class Vocabulary:
    """The concepts a model is ranked against (`kind`: "candidates", "default" or "training"), their text
    embeddings [len(names), text_dim], the calibration of the top concept's confidence and what it was fitted on,
    and which of them the expert trained on ([len(names)] booleans)."""

    kind: str
    names: list[str]
    text: np.ndarray
    calibration: dict
    calibrated_on: str
    trained: np.ndarray

    @property
    def description(self) -> str:
        """For people: "the default vocabulary (62 concepts: the expert's training and held-out concepts)"."""
        what = {"candidates": "the candidates given", "default": "the expert's training and held-out concepts",
                "training": "the concepts the expert was trained on"}[self.kind]
        return f"the {self.kind} vocabulary ({len(self.names)} concepts: {what})"


def clean_candidates(candidates, limit: int = MAX_VOCABULARY) -> list[str]:
    """Candidate concepts, stripped, blanks and repeats dropped, in order.

    Raises:
        ValueError: none left, more than `limit` (default the bound an expert's vocabulary has, `hub.MAX_VOCABULARY`),
            or one that is not UTF-8 text (`text.check_texts`).
    """
    from ..errors import BadTextError
    from ..text import check_texts

    names = [getattr(c, "name", c) for c in candidates]  # a text classifier's `head_naming.Candidate`: its name
    names = list(dict.fromkeys(c.strip() for c in names if isinstance(c, str) and c.strip()))
    if not names:
        raise ValueError("the candidate list is empty: give one concept per line, e.g. 'a rotated seven'")
    if len(names) > limit:
        raise ValueError(f"{len(names):,} candidate concepts: give at most {limit:,}")
    try:
        return check_texts(names)
    except BadTextError as err:
        raise ValueError(f"a candidate {err}") from None


def vocabulary_for(expert: Expert, candidates=None) -> Vocabulary:
    """What `expert` ranks a model against: `candidates` when given, else its default (open) vocabulary, else its
    training one (see the module docstring).

    Raises:
        ValueError: an empty candidate list, or a text encoder that cannot be loaded.
    """
    if candidates is not None:
        from ..text import encode_texts

        names = clean_candidates(candidates)
        config = expert.config
        text = encode_texts([config["prompt"].format(n) for n in names], config["text_encoder"])
        return Vocabulary("candidates", names, text, *_open_calibration(expert),
                          _said_by(text, expert.concept_text.numpy()))
    if expert.open_vocabulary:
        trained = np.isin(expert.open_vocabulary, expert.vocabulary)
        return Vocabulary("default", expert.open_vocabulary, expert.open_text.numpy(), *_open_calibration(expert), trained)
    return Vocabulary("training", expert.vocabulary, expert.concept_text.numpy(), expert.calibration,
                      "the training concepts' out-of-fold decisions", np.ones(len(expert.vocabulary), dtype=bool))


def _text_cosines(text: np.ndarray, known_text: np.ndarray) -> np.ndarray:
    """Cosines of text embeddings [m, d] with known concepts' [k, d]: [m, k]."""
    text, known = np.asarray(text, dtype=np.float64), np.asarray(known_text, dtype=np.float64)
    norms = np.linalg.norm(text, axis=1)[:, None] * np.linalg.norm(known, axis=1)[None, :]
    return text @ known.T / np.maximum(norms, 1e-12)


def _said_by(text: np.ndarray, known_text: np.ndarray) -> np.ndarray:
    """Whether each concept (text embeddings `text`) says the same as one of the known concepts (`SAME_CONCEPT`)."""
    return _text_cosines(text, known_text).max(axis=1, initial=-1.0) >= SAME_CONCEPT


def _not_said_by(query: np.ndarray, known_text: np.ndarray) -> np.ndarray:
    """Indices of the known concepts (text embeddings `known_text`) that do not say the same as `query`
    (`SAME_CONCEPT`)."""
    return np.flatnonzero(_text_cosines(np.asarray(query)[None], known_text)[0] < SAME_CONCEPT)


def _open_calibration(expert: Expert) -> tuple[dict, str]:
    if expert.open_calibration:
        return expert.open_calibration, ("out-of-fold decisions on in-vocabulary LoRAs and on LoRAs of concepts the "
                                         "expert never trained on, and on both with their concept withheld")
    never = {**expert.calibration, "threshold": NEVER,  # for every subset of a fused expert's modules too
             "subsets": {key: {**sub, "threshold": NEVER} for key, sub in expert.calibration.get("subsets", {}).items()}}
    return never, "the training concepts only (no held-out concepts to calibrate on): proposes only at a minimum asked for"


def _known_text(expert: Expert) -> np.ndarray:
    """The text embeddings of the concepts an expert knows: its default open vocabulary's, else its training one's."""
    return (expert.open_text if expert.open_vocabulary else expert.concept_text).numpy()


def query_fit(expert: Expert, vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """How much better a text query fits each model than the concepts the expert knows do: the model's cosine with
    the query minus `RIVAL_WEIGHT` times its best cosine with a known concept that says something else
    (`SAME_CONCEPT`) [n].

    `vectors` are models' `Expert.search_vectors`, `query` the text encoder's embedding of the query (prompt
    applied). A raw cosine ranks LoRAs of a trained concept next to the query's above LoRAs of the query's own
    concept when the expert never trained on it (it maps LoRAs of concepts it trained on more surely); measured
    against what else each LoRA could be, a LoRA of the query's concept comes first.
    """
    text = _known_text(expert)
    beside = _not_said_by(query, text)
    embedded = expert.search_vectors(text=np.concatenate([np.asarray(query)[None], text[beside]]))  # one pass
    cosines = np.asarray(vectors) @ embedded.T
    return cosines[:, 0] - RIVAL_WEIGHT * cosines[:, 1:].max(axis=1) if len(beside) else cosines[:, 0]
