"""Tree families of the zoo, by name: one module per family behind `TreeFamily`.

Adding a family means adding a module and one line here; the builder never changes.
"""

from __future__ import annotations

from .base import TreeFamily
from .classifier import ResNetFamily, ViTFamily
from .sd_lora import SDLoraFamily
from .text import TextFamily

FAMILIES: dict[str, TreeFamily] = {
    "vit": ViTFamily(),
    "resnet": ResNetFamily(),
    "sd-lora": SDLoraFamily(),
    "text": TextFamily(),
}

__all__ = ["FAMILIES", "TreeFamily"]
