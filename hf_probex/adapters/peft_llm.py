"""peft LoRA adapters on transformers language models (Llama, Qwen, Mistral and their kin).

Recognised by adapter_config.json plus LoRA factors on decoder blocks
(`base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight`); a layer is the base model's module
name (`model.layers.N.self_attn.q_proj`). The default is the query projection of the middle block.
"""

from __future__ import annotations

import re

from ..reading import WeightSource
from .base import CLASSES_TASK, CONCEPT_TASK, LayerChoice, LoraAdapter, register

MIDDLE_QUERY = LayerChoice(
    "model.layers.16.self_attn.q_proj", r"(?:.*\.)?layers\.(\d+)\.self_attn\.q_proj", index=16, depth=32,
)
#: Decoder blocks of a language model: `layers` bare or under the model (`model.`, `language_model.`); a ViT's
#: `vit.layers.N.mlp` (transformers 5) is not one (`adapters.peft_model` reads those).
_DECODER_LORA = re.compile(r"(?:(?:.*\.)?(?:language_)?model\.)?layers\.\d+\.(self_attn|mlp)\..*\.lora_[AB]\.weight")


@register
class PeftLLMAdapter(LoraAdapter):
    family = "peft-llm"
    library_name = "peft"
    pipeline_tag = "text-generation"
    tasks = (CLASSES_TASK, CONCEPT_TASK)
    weight_files = ("adapter_model.safetensors",)

    def normalise(self, key: str) -> str | None:
        key = key.removeprefix("base_model.model.")
        return key if _DECODER_LORA.fullmatch(key) else None

    def matches(self, source: WeightSource) -> bool:
        config = source.read_json("adapter_config.json")
        return config is not None and bool(self.module_pairs(self.checkpoint(source)))

    def default_layer(self, root_id: str | None, source: WeightSource | None = None) -> LayerChoice:
        return MIDDLE_QUERY
