"""Stable Diffusion UNet LoRAs in the three key formats met in the wild, read under one module naming.

- diffusers: `unet.down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_q.lora.down.weight` / `lora.up`
  (what `save_lora_weights` writes, the zoo and Model-J included; older files say `...attn2.processor.to_q_lora.down`);
- peft: `...to_q.lora_A.weight` / `lora_B`, with or without `base_model.model.` or `unet.` in front;
- kohya: `lora_unet_down_blocks_2_attentions_1_transformer_blocks_0_attn2_to_q.lora_down.weight` /
  `lora_up`, plus `.alpha`.

All become diffusers module names, `unet.down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_q`
(Model-J's layer, the default), through diffusers' own converters (kohya key -> diffusers key, diffusers
-> peft suffixes); only the peft prefixes are handled here. Text-encoder LoRAs and alphas are ignored:
the update is B @ A without alpha/r, as the experts read it.
"""

from __future__ import annotations

import json
import re

from ..reading import WeightSource, looks_like_repo_id
from .base import CONCEPT_TASK, LayerChoice, LoraAdapter, register

MODEL_J_LAYER = LayerChoice(
    "unet.down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_q",
    r"unet\.down_blocks\.(\d+)\.attentions\.\d+\.transformer_blocks\.0\.attn2\.to_q", index=2, depth=3,
)
#: UNet modules saved by peft without the `unet.` prefix start with one of these.
_BARE_UNET_MODULE = re.compile(r"(down_blocks|mid_block|up_blocks|conv_in|conv_out|time_embedding)[._]")
#: Safetensors metadata keys that name the base model: Model-J / diffusers scripts, kohya.
BASE_METADATA_KEYS = ("pretrained_model_name_or_path", "ss_sd_model_name")


@register
class SDLoraAdapter(LoraAdapter):
    family = "sd-lora"
    library_name = "diffusers"
    pipeline_tag = "text-to-image"
    tasks = (CONCEPT_TASK,)
    weight_files = ("pytorch_lora_weights.safetensors", "adapter_model.safetensors")

    def normalise(self, key: str) -> str | None:
        from diffusers.loaders.lora_conversion_utils import _convert_unet_lora_key
        from diffusers.utils.state_dict_utils import convert_unet_state_dict_to_peft

        key = key.removeprefix("base_model.model.")
        if key.startswith("lora_unet_"):
            # diffusers converts kohya keys one at a time with this (private) helper; its public caller
            # needs every tensor's value, and we read only names here.
            key = "unet." + _convert_unet_lora_key(key)
        elif _BARE_UNET_MODULE.match(key):
            key = "unet." + key
        if not key.startswith("unet."):
            return None
        (key,) = convert_unet_state_dict_to_peft({key: None})
        return key if key.endswith((".lora_A.weight", ".lora_B.weight")) else None

    def base_module(self, weight: str) -> str | None:
        """A UNet weight (`down_blocks.0...to_q.weight`, with or without `unet.`) -> `unet.down_blocks.0...to_q`."""
        module = super().base_module(weight)
        return None if module is None else "unet." + module.removeprefix("unet.")

    def matches(self, source: WeightSource) -> bool:
        return bool(self.module_pairs(self.checkpoint(source)))

    def declared_bases(self, source: WeightSource) -> dict[str, str]:
        """The bases the LoRA file's safetensors metadata names (`BASE_METADATA_KEYS`, diffusers' peft config),
        then adapter_config.json's."""
        checkpoint = self.checkpoint(source)
        metadata = checkpoint.metadata
        found = [(metadata.get(k), f"{checkpoint.name} metadata {k}") for k in BASE_METADATA_KEYS]
        try:  # diffusers stores the peft config of each component under `lora_adapter_metadata`
            found.append((json.loads(metadata.get("lora_adapter_metadata", "{}")).get("unet.base_model_name_or_path"),
                          f"{checkpoint.name} metadata lora_adapter_metadata unet.base_model_name_or_path"))
        except (ValueError, AttributeError):
            pass
        declared: dict[str, str] = {}
        for base, where in [*found, *super().declared_bases(source).items()]:
            if looks_like_repo_id(base):
                declared.setdefault(base, where)  # where it is named first
        return declared

    def default_layer(self, root_id: str | None, source: WeightSource | None = None) -> LayerChoice:
        return MODEL_J_LAYER
