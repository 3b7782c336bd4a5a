"""The interface every tree family implements: build a root, build a child from its parent."""

from __future__ import annotations

import abc
import json
from pathlib import Path

import safetensors
import safetensors.torch

from ..plan import ModelSpec
from ..presets import TreePreset


class TreeFamily(abc.ABC):
    """A kind of model tree (a transformers classifier, a diffusers UNet with LoRA children...).

    Implementations train real models and write them as Hub-format repo folders. `out` is an empty
    temporary folder; the builder moves it into place only once the family returns, so a family never
    needs to care about crashes.
    """

    #: Hub `library_name` of the tree's models.
    library_name: str
    #: Hub `pipeline_tag` of the tree's models.
    pipeline_tag: str

    @abc.abstractmethod
    def build_root(self, spec: ModelSpec, tree: TreePreset, out: Path) -> dict:
        """Train the root and save it into `out`; return measurements (e.g. test accuracy)."""

    @abc.abstractmethod
    def build_child(self, spec: ModelSpec, tree: TreePreset, parent_dir: Path, out: Path, parent_repo_id: str) -> dict:
        """Fine-tune a child from the model saved in `parent_dir` (published as `parent_repo_id`) and save it into
        `out`."""

    @abc.abstractmethod
    def weight_files(self, spec: ModelSpec) -> list[str]:
        """The safetensors files (relative to the repo folder) that a finished model must have."""

    def library_of(self, spec: ModelSpec) -> str:
        """The Hub `library_name` of one model of the tree (default: the family's)."""
        return self.library_name

    def pipeline_of(self, spec: ModelSpec) -> str:
        """The Hub `pipeline_tag` of one model of the tree (default: the family's)."""
        return self.pipeline_tag

    def card_facts(self, spec: ModelSpec) -> dict:
        """Family-specific facts for the model card (tags, a description of the training data)."""
        return {}

    def class_examples(self, classes: list[str]) -> dict[str, list[str]]:
        """Example inputs of each class that an expert can ship to name a classifier's classes by running it
        (text trees); empty where the family's models are not run."""
        return {}


def write_safetensors_metadata(path: Path, metadata: dict[str, object]) -> None:
    """Rewrite a safetensors file with extra string metadata (values are JSON-encoded unless strings).

    transformers and diffusers cannot add metadata on save; Model-J stores its ground truth there.
    """
    with safetensors.safe_open(str(path), framework="pt") as handle:
        existing = handle.metadata() or {}
    tensors = safetensors.torch.load_file(str(path))
    merged = dict(existing)
    merged.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
    merged.setdefault("format", "pt")
    safetensors.torch.save_file(tensors, str(path), metadata=merged)
