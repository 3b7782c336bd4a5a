"""The transformers ResNet family (Model-J's ResNet-101 tree and the zoo's ResNets).

Model-J reads the 1x1 convolution `resnet.encoder.stages.2.layers.19.layer.0.convolution.weight`
(block 19 of the 23 in ResNet-101's third stage); other depths get the block at the same relative depth.
"""

from __future__ import annotations

from ..reading import WeightSource
from .base import FullModelAdapter, LayerChoice, register

STAGE2_CONV = LayerChoice(
    "resnet.encoder.stages.2.layers.19.layer.0.convolution.weight",
    r"(?:.*\.)?encoder\.stages\.2\.layers\.(\d+)\.layer\.0\.convolution\.weight", index=19, depth=23,
)


@register
class ResNetAdapter(FullModelAdapter):
    family = "resnet"
    library_name = "transformers"
    pipeline_tag = "image-classification"
    model_types = frozenset({"resnet"})
    key_pattern = r"resnet\.(embedder|encoder)\."
    weight_files = ("model.safetensors.index.json", "model.safetensors")

    def default_layer(self, root_id: str | None, source: WeightSource | None = None) -> LayerChoice:
        return STAGE2_CONV
