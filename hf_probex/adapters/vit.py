"""The transformers ViT family: supervised ViT, DINO, MAE, DeiT, DINOv2 and the zoo's ViTs.

Model-J reads `vit.encoder.layer.7.attention.output.dense.weight` of its supervised ViT and DINO trees
and `vit.encoder.layer.8.attention.attention.value.weight` of its MAE tree (ViT-B/16, 12 blocks);
shallower models such as the zoo's get the same sub-layer at the same relative depth.
"""

from __future__ import annotations

from ..reading import WeightSource
from .base import FullModelAdapter, LayerChoice, register

ATTENTION_OUTPUT = LayerChoice(
    "vit.encoder.layer.7.attention.output.dense.weight",
    r"(?:.*\.)?encoder\.layer\.(\d+)\.attention\.output\.dense\.weight", index=7, depth=12,
)
MAE_VALUE = LayerChoice(
    "vit.encoder.layer.8.attention.attention.value.weight",
    r"(?:.*\.)?encoder\.layer\.(\d+)\.attention\.attention\.value\.weight", index=8, depth=12,
)
#: A root id or config model_type containing the key selects the layer (default: ATTENTION_OUTPUT).
LAYERS_BY_ROOT = {"vit-mae": MAE_VALUE, "vit_mae": MAE_VALUE}


@register
class ViTAdapter(FullModelAdapter):
    family = "vit"
    library_name = "transformers"
    pipeline_tag = "image-classification"
    model_types = frozenset({"vit", "vit_mae", "vit_msn", "vit_hybrid", "deit", "dinov2"})
    key_pattern = r"(vit|deit|dinov2)\.(embeddings|encoder)\."
    weight_files = ("model.safetensors.index.json", "model.safetensors")

    def default_layer(self, root_id: str | None, source: WeightSource | None = None) -> LayerChoice:
        hints = [root_id or "", self.config(source).get("model_type", "") if source else ""]
        return next((layer for key, layer in LAYERS_BY_ROOT.items() if any(key in h.lower() for h in hints)),
                    ATTENTION_OUTPUT)
