"""What `infer_card` returns: proposed card fields, each with a confidence and its evidence.

These are the types shared by the Python API, the CLI, the Space and the bot. A `FieldSuggestion`
is one proposed value; a `CardSuggestion` holds the fields proposed for one repo, the card it has
now, the card we would propose (only missing fields filled) and the unified diff between them. An
`Edge` is one model's parent among its tree's members (`hf_probex.lineage`), what `infer_card(parents=)`
takes base_model from.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

# The card fields hf_probex can propose, in the order they are shown.
CARD_FIELDS = ("base_model", "base_model_relation", "library_name", "pipeline_tag", "trained_on", "lineage")
#: Fields a reader of the card gains from. The others the Hub derives by itself (base_model_relation from
#: base_model and the files) or any reader sees in config.json (library_name, pipeline_tag): a pull request
#: carrying only those is noise on the owner's repo.
INFORMATIVE_FIELDS = frozenset({"base_model", "trained_on"})
#: Where a value comes from, for people (pull request titles and descriptions, the card section), by
#: `FieldSuggestion.source`.
ORIGINS = {"metadata": "the model's files", "lineage": "declared lineage", "weights": "weights routing",
           "members": "its weights compared with the tree's members", "expert": "an expert"}
#: The sources that read the weights themselves: only a value from one of them is "inferred from weights".
WEIGHT_SOURCES = frozenset({"weights", "members", "expert"})


@dataclass
class FieldSuggestion:
    """One proposed card field.

    Attributes:
        name: the field, one of `CARD_FIELDS` (`trained_on`: the training classes or the LoRA concept).
        value: the proposed value (a string, or a list of strings for `trained_on` class subsets).
        confidence: in [0, 1]; exact evidence from files is 1.0, an expert's is calibrated on validation models.
        evidence: where it comes from, for people: "adapter_config.json base_model_name_or_path",
            "expert hf-probex/expert-vit (probex) on vit.encoder.layer.0.attention.attention.value.weight".
        source: where the value comes from (`ORIGINS`): "metadata" (read from a file of the model), "lineage"
            (a base the model's files declare), "weights" (routing by weights), "members" (its parent among the
            tree's members by their weights, `Edge`) or "expert" (predicted from weights).
        missing: whether the repo's current card lacks this field (only missing fields are proposed).
        details: extras for display (per-label scores, top-k concepts, distances to roots).
        floor: the confidence this value must reach to go into a pull request, whatever threshold it was
            shown at: an expert's threshold calibrated for 95 % precision, the routing threshold for
            weights, 95 % for a parent from weights, 1.0 for a value read from a file.
    """

    name: str
    value: Any
    confidence: float
    evidence: str
    source: str = "metadata"
    missing: bool = True
    details: dict = field(default_factory=dict)
    floor: float = 1.0

    @property
    def validated(self) -> bool:
        """At or above its `floor`: fit for a pull request (a lower one was only explored)."""
        return self.confidence >= self.floor

    @property
    def origin(self) -> str:
        """Where the value comes from, for people: "the model's files", "declared lineage", "weights routing",
        "an expert"."""
        return ORIGINS.get(self.source, self.source)


@dataclass(frozen=True)
class Edge:
    """One model's parent as its weights tell it (`hf_probex.lineage.recover_lineage`, `hf-probex lineage`).

    Attributes:
        child: the model (a repo id or a local path, as given).
        parent: the root or the member it was fine-tuned from.
        confidence: how often the tree's models were right on this side of the threshold (`LineageCalibration`).
        evidence: for people: the best member's share of the model's movement, and the threshold.
        score: that share, `s` (None: no member moved less than this model).
        candidate: that member (None as for `score`).
    """

    child: str
    parent: str
    confidence: float
    evidence: str
    score: float | None = None
    candidate: str | None = None

    @property
    def names_member(self) -> bool:
        """Whether the parent is a member read beside the model, not the root."""
        return self.candidate is not None and self.parent == self.candidate

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: object) -> Edge:
        """Raises ValueError unless `value` is one `as_dict` could have made (an edges file comes from anywhere)."""
        if not isinstance(value, dict) or not {"child", "parent", "confidence", "evidence"} <= set(value) <= set(
                cls.__dataclass_fields__):
            raise ValueError("an edge has child, parent, confidence and evidence, and at most score and candidate")
        if not all(isinstance(value[k], str) for k in ("child", "parent", "evidence")) or \
                not isinstance(value.get("candidate"), str | None):
            raise ValueError("an edge's child, parent, evidence and candidate are texts")
        if not _finite(value["confidence"]) or not 0 <= value["confidence"] <= 1 or \
                (value.get("score") is not None and not _finite(value["score"])):
            raise ValueError("an edge's confidence is in [0, 1] and its score a finite number")
        return cls(**value)


def _finite(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def pull_request_choice(fields: Iterable[FieldSuggestion], min_confidence: float = 0.0) -> list[FieldSuggestion]:
    """What a pull request may carry of `fields`: those at or above their own `floor` and `min_confidence`, and
    only when one of them is informative (`INFORMATIVE_FIELDS`); [] otherwise. The one rule the bot and the
    Space's pull requests follow."""
    chosen = [f for f in fields if f.validated and f.confidence >= min_confidence]
    return chosen if any(f.name in INFORMATIVE_FIELDS for f in chosen) else []


def origins(fields: Iterable[FieldSuggestion]) -> str:
    """Where these values come from, as a phrase: "the model's files and an expert"."""
    names = list(dict.fromkeys(f.origin for f in fields))
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def inferred_from_weights(fields: Iterable[FieldSuggestion]) -> bool:
    """Whether any of these values was inferred from the weights (routing or an expert), not read from files."""
    return any(f.source in WEIGHT_SOURCES for f in fields)


@dataclass
class CardSuggestion:
    """The result of `infer_card` for one repo, local folder or safetensors file.

    Attributes:
        source: what was asked about (repo id, folder or file path).
        revision: the commit the answer was computed for, where known.
        family: the adapter family that recognised it ("vit", "resnet", "sd-lora", "peft-llm"), or None.
        tree: the model tree it was routed to (the root's repo id), or None when routing abstained.
        fields: proposed fields by name, at or above the confidence threshold.
        abstained: fields or questions not answered, with the reason ({"trained_on": "no expert for tree X"}).
        current_card: the repo's README.md as it is ("" if none).
        suggested_card: README.md with only the missing fields filled ("" if nothing to propose).
        diff: a unified diff of README.md (current -> suggested).
        bytes_read: bytes fetched to answer (headers, one tensor, small metadata files).
        details: what an expert read, by field, whether it answered or abstained (its per-class or
            per-concept scores, the threshold asked at and its calibrated one), for display.
    """

    source: str
    revision: str | None = None
    family: str | None = None
    tree: str | None = None
    fields: dict[str, FieldSuggestion] = field(default_factory=dict)
    abstained: dict[str, str] = field(default_factory=dict)
    current_card: str = ""
    suggested_card: str = ""
    diff: str = ""
    bytes_read: int = 0
    details: dict[str, dict] = field(default_factory=dict)

    @property
    def proposed(self) -> dict[str, FieldSuggestion]:
        """The fields the current card lacks, at the threshold they were asked at (what `infer` shows)."""
        return {name: f for name, f in self.fields.items() if f.missing}

    @property
    def pull_request_fields(self) -> dict[str, FieldSuggestion]:
        """What a pull request may carry: the proposed fields at or above their own `floor`, and only when one
        of them is informative (`INFORMATIVE_FIELDS`); empty otherwise."""
        return {f.name: f for f in pull_request_choice(self.proposed.values())}

    def to_dict(self) -> dict:
        """A JSON-ready dict of everything above."""
        return asdict(self)

    def to_json(self, **kwargs: Any) -> str:
        """`to_dict()` as JSON (keyword arguments go to `json.dumps`)."""
        return json.dumps(self.to_dict(), **kwargs)
