"""What a member's files and card say about it: the declared card fields and the labels harvested from them.

Documented members of a tree are free training data for the undocumented ones (issue 15): this module
reads what the owners wrote, from what the scan has already read (README.md, config.json, the LoRA
file's safetensors header), never more:

- the card's front matter (`cards.metadata_of`, bounded YAML): base_model, datasets, tags, pipeline_tag,
  library_name, license, language, and the fields it lacks (`cards.missing_fields`: what the Space's browse
  tab and the bot look for);
- labels, each with its source: config.json `id2label` (or SetFit's config_setfit.json `labels`) when the names
  are real (`infer.declared_labels`),
  the card's `instance_prompt` and `widget` texts (what diffusers' LoRA training scripts write), its
  `trained-on:` tags (what hf_probex proposes), its `datasets`, and a LoRA file's safetensors metadata
  keys that name its concept (`METADATA_LABEL_KEYS`: the zoo writes them, as Model-J does its own).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..adapters import Adapter, LoraAdapter
from ..cards import CardError, metadata_of, missing_fields, trained_on_value
from ..suggestions import CARD_FIELDS
from ..errors import ProbexError
from ..infer import declared_labels
from ..reading import WeightSource
from .table import Label

__all__ = ["METADATA_LABEL_KEYS", "CardFields", "card_fields", "harvest_labels"]

#: Safetensors metadata keys of a LoRA file that name what it draws (the zoo's, hf_probex/zoo/trees/sd_lora.py).
METADATA_LABEL_KEYS = ("instance_prompt", "concept_name")
#: A label longer than this is not a label (a whole prompt collection pasted into a card).
MAX_LABEL_CHARS = 300
#: At most this many widget texts per card.
MAX_WIDGET_TEXTS = 20


def _strings(value: object) -> list[str]:
    """A card value that may be one string or a list of them -> the non-empty strings, stripped."""
    values = value if isinstance(value, list) else [value]
    return [str(v).strip() for v in values if isinstance(v, str | int | float) and str(v).strip()]


def _string(value: object) -> str | None:
    found = _strings(value)
    return found[0] if found else None


@dataclass
class CardFields:
    """A card's declared fields (empty when there is no card or its front matter cannot be read)."""

    has_card: bool = False
    base_model: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    pipeline_tag: str | None = None
    library_name: str | None = None
    license: str | None = None
    language: list[str] = field(default_factory=list)
    instance_prompt: str | None = None
    widget_texts: list[str] = field(default_factory=list)
    missing: list[str] | None = field(default_factory=lambda: list(CARD_FIELDS))  # None: the card cannot be read
    problem: str | None = None  # why the front matter could not be read


def card_fields(readme: str | None) -> CardFields:
    """The declared fields of a README.md (None: the repo has no card)."""
    if readme is None:
        return CardFields()
    try:
        metadata = metadata_of(readme)
        missing = missing_fields(readme)
    except CardError as err:
        return CardFields(has_card=True, missing=None, problem=f"the card's front matter cannot be read: {err}")
    widget = metadata.get("widget")
    texts = [_string(item.get("text")) for item in widget if isinstance(item, dict)] if isinstance(widget, list) else []
    return CardFields(
        has_card=True, base_model=_strings(metadata.get("base_model")), datasets=_strings(metadata.get("datasets")),
        tags=_strings(metadata.get("tags")), pipeline_tag=_string(metadata.get("pipeline_tag")),
        library_name=_string(metadata.get("library_name")), license=_string(metadata.get("license")),
        language=_strings(metadata.get("language")), instance_prompt=_string(metadata.get("instance_prompt")),
        widget_texts=[t for t in texts if t][:MAX_WIDGET_TEXTS], missing=[name for name in CARD_FIELDS if name in missing],
    )


def harvest_labels(source: WeightSource, adapter: Adapter, card: CardFields) -> list[Label]:
    """The labels a member's files and card give (see the module docstring), without duplicates, in source order.

    Reads config.json (config_setfit.json where it exists: small files) and, for a LoRA, the header its adapter
    already read; nothing else.
    """
    names, where = declared_labels(source)
    found: list[Label] = [Label(name, where) for name in names]
    if card.instance_prompt:
        found.append(Label(card.instance_prompt, "card instance_prompt"))
    found += [Label(text, "card widget") for text in card.widget_texts]
    found += [Label(value, "card trained-on tag") for value in map(trained_on_value, card.tags) if value]
    found += [Label(name, "card datasets") for name in card.datasets]
    if isinstance(adapter, LoraAdapter):
        try:
            checkpoint = adapter.checkpoint(source)
        except ProbexError:
            checkpoint = None
        if checkpoint is not None:
            found += [Label(str(checkpoint.metadata[key]).strip(), f"{checkpoint.name} metadata {key}")
                      for key in METADATA_LABEL_KEYS if str(checkpoint.metadata.get(key) or "").strip()]
    unique = dict.fromkeys(label for label in found if len(label.value) <= MAX_LABEL_CHARS)
    return list(unique)
