"""peft adapters of any transformers model (a ResNet or ViT classifier, a BERT text classifier...), read through
their base.

Recognised by adapter_config.json (a `peft_type`) beside adapter_model.safetensors, after the LoRA families that read
their adapters as updates of their own (`sd-lora`, `peft-llm`). Such an adapter is a change to a full model, so it
is read as the full model it makes: `weights_of` opens the base and returns the merged view
(`hf_probex.merged.MergedSource`), which the base's own family adapter reads: routing compares its weights with the
tree roots and the expert reads its layers and head, as for a full fine-tune. On its own (no base), its layers are
its LoRA modules read as updates B @ A, as every `LoraAdapter` reads them (`experts.methods.shaping.layer_reader(...,
kind="lora")`).

The base is the one asked for (`base=`: a local path or a repo id, trusted), else the first the files declare
(adapter_config.json `base_model_name_or_path`, then the card's `base_model`) that hf_probex follows:

- a Hub repo id, opened on the Hub only (a name in a file never reaches into the working directory), at the
  adapter_config.json `revision` when it names one;
- an absolute path from a local adapter, when it is a model folder (config.json and safetensors weights at its top:
  peft writes the path the base was loaded from, on the machine that made the adapter).

A relative path (it depends on where the adapter was trained, and may climb out with `..`), a local path in a Hub
repo, and a base that is itself an adapter (the adapter's own folder, a cycle) are refused, with the reason in one
line. Only LoRA (and DoRA) adapters merge; other peft types (IA3, LoHa, prompt tuning...) are recognised and refused.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..cards import card_bases
from ..errors import BaseModelError, LayerMismatchError, ProbexError
from ..merged import PEFT_PREFIX, MergedSource
from ..reading import WeightSource, looks_like_repo_id, open_source
from .base import CLASSES_TASK, CONCEPT_TASK, LayerChoice, LoraAdapter, register

ADAPTER_CONFIG = "adapter_config.json"
#: peft's `task_type` -> the Hub pipeline of the adapted model (None and other tasks: the base's pipeline).
TASK_PIPELINES = {"SEQ_CLS": "text-classification", "TOKEN_CLS": "token-classification", "CAUSAL_LM": "text-generation",
                  "SEQ_2_SEQ_LM": "text2text-generation", "QUESTION_ANS": "question-answering",
                  "FEATURE_EXTRACTION": "feature-extraction"}
#: The peft types whose change merges into the base's weights.
MERGED_TYPES = frozenset({"LORA"})


@register
class PeftModelAdapter(LoraAdapter):
    family = "peft"
    library_name = "peft"
    pipeline_tag = ""
    tasks = (CLASSES_TASK, CONCEPT_TASK)
    priority = 20  # after sd-lora and peft-llm (10), before every full model (100)
    weight_files = ("adapter_model.safetensors",)

    def matches(self, source: WeightSource) -> bool:
        config = source.read_json(ADAPTER_CONFIG)
        return (config is not None and isinstance(config.get("peft_type"), str)
                and any(name in source.files for name in self.weight_files))

    def normalise(self, key: str) -> str | None:
        return key.removeprefix(PEFT_PREFIX) if key.endswith((".lora_A.weight", ".lora_B.weight")) else None

    def pipeline_for(self, source: WeightSource) -> str | None:
        task = (source.read_json(ADAPTER_CONFIG) or {}).get("task_type")
        return TASK_PIPELINES.get(task) if isinstance(task, str) else None

    def default_layer(self, root_id: str | None, source: WeightSource | None = None) -> LayerChoice:
        raise LayerMismatchError("a peft adapter's layers are its base's: read it merged onto its base (weights_of)")

    def weights_of(self, source: WeightSource, *, base: str | os.PathLike | None = None,
                   token: str | bool | None = None) -> MergedSource:
        """The adapter merged onto its base (see the module docstring).

        Raises:
            BaseModelError: no base to follow, or it cannot be opened, or it is not a full model of a known family.
            LayerMismatchError: not a LoRA adapter, or it does not fit the base (modules the base lacks, shapes).
        """
        from . import detect

        config = source.read_json(ADAPTER_CONFIG) or {}
        if config.get("peft_type") not in MERGED_TYPES:
            raise LayerMismatchError(f"{source.description} is a peft {config.get('peft_type')} adapter: hf_probex reads "
                                     f"LoRA and DoRA adapters through their base, not this type")
        base_source, named = self._open_base(source, base, token, config)
        try:
            family = detect(base_source)
        except ProbexError as err:
            raise BaseModelError(f"the base {named} of {source.description}: {err}") from None
        if isinstance(family, LoraAdapter):
            raise BaseModelError(f"the base {named} of {source.description} is itself an adapter ({family.family} family): "
                                 f"an adapter merges onto a full model; pass that model with base=...")
        return MergedSource(source, base_source, self.checkpoint(source), family.checkpoint(base_source), config)

    def named_bases(self, source: WeightSource) -> dict[str, str]:
        """Every base the files name, in the order they are tried, each with where: adapter_config.json's (a repo id or
        a path), then the card's."""
        named = (source.read_json(ADAPTER_CONFIG) or {}).get("base_model_name_or_path")
        found = {named: f"{ADAPTER_CONFIG} base_model_name_or_path"} if isinstance(named, str) and named else {}
        for name in card_bases(source.read_text("README.md")):
            found.setdefault(name, "README.md base_model")
        return found

    def _open_base(self, source: WeightSource, base: str | os.PathLike | None, token: str | bool | None,
                   config: dict) -> tuple[WeightSource, str]:
        if base is not None:
            try:
                return open_source(base, token=token), str(base)
            except ProbexError as err:
                raise BaseModelError(f"the base {base} asked for {source.description}: {err}") from None
        named = self.named_bases(source)
        refused = []
        for name, where in named.items():
            why = _unfollowed(name, source)
            if why:
                refused.append(f"{name!r:.200} ({where}) {why}")
                continue
            hub = looks_like_repo_id(name, namespaced=False)
            revision = config.get("revision") if hub and isinstance(config.get("revision"), str) else None
            try:
                return open_source(name, revision=revision, token=token, local=not hub), name
            except ProbexError as err:
                raise BaseModelError(f"the base {name} of {source.description} ({where}) cannot be read: {err}") from None
        what = "; ".join(refused) if refused else \
            f"declares no base ({ADAPTER_CONFIG} base_model_name_or_path, README.md base_model)"
        raise BaseModelError(f"{source.description}: {what}; pass its base with base=... (--base)")


def _unfollowed(name: str, adapter: WeightSource) -> str:
    """Why hf_probex does not follow the base `name` an adapter's files declare ('' when it does; module docstring)."""
    if looks_like_repo_id(name, namespaced=False):
        return ""
    path = Path(name)
    if not path.is_absolute():
        climbs = " and climbs out of it with '..'" if ".." in path.parts else ""
        return f"is a relative path, which depends on the folder the adapter was made in{climbs}"
    folder = adapter.local_folder
    if folder is None:
        return "is a path on the machine that made the adapter, not a Hub repo"
    try:
        target = path.resolve()
        if target == folder.resolve():
            return "is the adapter's own folder"
        if (target / "config.json").is_file() and any(target.glob("*.safetensors*")):
            return ""
    except (OSError, ValueError):  # too long, a NUL byte, no permission: not a folder hf_probex can read
        pass
    return "is not a model folder (config.json and safetensors weights at its top)"
