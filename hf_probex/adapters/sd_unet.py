"""Full diffusers UNets (`UNet2DConditionModel`): Stable Diffusion roots and full fine-tunes, the zoo's SD root.

Recognised from model_index.json (a `unet` component of class UNet2DConditionModel), the UNet's own
config.json, or UNet tensor names. The default layer is the dense weight of the module Model-J reads
as a LoRA: `down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_q.weight`.
"""

from __future__ import annotations

from ..reading import WeightSource
from .base import CONCEPT_TASK, FullModelAdapter, LayerChoice, register

UNET_CLASS = "UNet2DConditionModel"
CROSS_ATTENTION_QUERY = LayerChoice(
    "down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_q.weight",
    r"(?:.*\.)?down_blocks\.(\d+)\.attentions\.\d+\.transformer_blocks\.0\.attn2\.to_q\.weight", index=2, depth=3,
)


@register
class SDUNetAdapter(FullModelAdapter):
    family = "sd-unet"
    library_name = "diffusers"
    pipeline_tag = "text-to-image"
    tasks = (CONCEPT_TASK,)
    key_pattern = r"(unet\.)?(down_blocks|mid_block|up_blocks)\.\d+\.(attentions|resnets)\."
    weight_files = (
        "unet/diffusion_pytorch_model.safetensors.index.json", "unet/diffusion_pytorch_model.safetensors",
        "diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.safetensors",
    )

    def matches(self, source: WeightSource) -> bool:
        index = source.read_json("model_index.json")
        if index is not None:
            return list(index.get("unet") or [])[-1:] == [UNET_CLASS]
        config = source.read_json("unet/config.json") or self.config(source)
        if config:
            return config.get("_class_name") == UNET_CLASS
        return super().matches(source)

    def default_layer(self, root_id: str | None, source: WeightSource | None = None) -> LayerChoice:
        return CROSS_ATTENTION_QUERY
