"""Which concepts a zero-shot (LoRA) expert ranks a model against, and the calibration that goes with them.

A zero-shot expert maps a LoRA's layer into a text-embedding space, so any concept written as text can be
scored. Three vocabularies, first that applies:

- `candidates`: a list the caller gives (`infer_card(..., candidates=)`, `hf-probex infer --candidates FILE`),
  embedded with the expert's own text encoder and prompt;
- `default`: the expert's open vocabulary, stored with it (the training concepts and the held-out concepts the
  weight set names, `Expert.open_vocabulary`);
- `training`: the concepts it was trained on (experts saved before open vocabularies).

The confidence of the top concept is its margin over the runner-up (`calibration`), calibrated for the
vocabulary it is read against: the default vocabulary's calibration was fitted on out-of-fold decisions of
both in-vocabulary LoRAs and LoRAs of held-out concepts, the threshold holding on each
(`harness.train_expert`). A caller's list is read with that calibration too (its margins are comparable where
the list is no denser in near-synonyms than the default); an expert without it never proposes from a vocabulary
other than its training one, except at a minimum confidence the caller asks for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .hub import MAX_VOCABULARY, Expert

#: A calibrated threshold above every confidence: the expert never proposes at its own threshold.
NEVER = 1.01


@dataclass(frozen=True)
class Vocabulary:
    """The concepts a model is ranked against (`kind`: "candidates", "default" or "training"), their text
    embeddings [len(names), text_dim], the calibration of the top concept's confidence and what it was fitted on."""

    kind: str
    names: list[str]
    text: np.ndarray
    calibration: dict
    calibrated_on: str

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
        return Vocabulary("candidates", names, text, *_open_calibration(expert))
    if expert.open_vocabulary:
        return Vocabulary("default", expert.open_vocabulary, expert.open_text.numpy(), *_open_calibration(expert))
    return Vocabulary("training", expert.vocabulary, expert.concept_text.numpy(), expert.calibration,
                      "the training concepts' out-of-fold decisions")


def _open_calibration(expert: Expert) -> tuple[dict, str]:
    if expert.open_calibration:
        return expert.open_calibration, "out-of-fold decisions on in-vocabulary LoRAs and LoRAs of held-out concepts"
    never = {**expert.calibration, "threshold": NEVER,  # for every subset of a fused expert's modules too
             "subsets": {key: {**sub, "threshold": NEVER} for key, sub in expert.calibration.get("subsets", {}).items()}}
    return never, "the training concepts only (no held-out concepts to calibrate on): proposes only at a minimum asked for"
