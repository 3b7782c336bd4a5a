"""The interface of a model family (an adapter), its two kinds (full models, LoRAs), and the registry.

An adapter recognises a model of its family from its files, names the bases the files declare, proposes
the layer an expert reads (the real Model-J layer for Model-J's roots, a layer at the same relative
depth for other models of the family), lists the candidate layers, and reads one layer as a flat
float32 array plus its stored shape. A LoRA "layer" is a module name; reading it gives the dense update
B @ A without the alpha/r factor, the convention of `hf_probex.shaping`.

Every module of this package that defines an adapter decorates it with `@register`; `hf_probex.adapters`
imports them all, so a new family is one new file.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import LayerMismatchError
from ..reading import Checkpoint, WeightSource, looks_like_repo_id
from ..shaping import lora_pairs, stack_inputs, to_matrices

#: family -> adapter, filled by `register`.
ADAPTERS: dict[str, Adapter] = {}
#: The expert tasks (hf_probex.experts.hub.TASKS): the classes a model learnt, or a LoRA's concept.
CLASSES_TASK, CONCEPT_TASK = "multilabel", "zeroshot"


def register(cls: type[Adapter]) -> type[Adapter]:
    """Class decorator: add one instance of an adapter to `ADAPTERS` under its `family`."""
    if cls.family in ADAPTERS:
        raise ValueError(f"two adapters claim the family {cls.family!r}")
    ADAPTERS[cls.family] = cls()
    return cls


@dataclass(frozen=True)
class LayerChoice:
    """A default layer: its exact name in the reference root, and where it sits among the blocks.

    `pattern` matches the same sub-layer in any block (one group: the block index, any name prefix);
    a model of the family with another depth gets the block at the same relative depth.
    """

    name: str
    pattern: str
    index: int  # the block index of `name`
    depth: int  # the number of blocks in the reference root

    def resolve(self, names: Collection[str] | None = None) -> str:
        """`name` when `names` is None or holds it, else the same sub-layer at the same relative depth.

        Falls back to `name` when no name matches `pattern` (reading it then reports the missing layer).
        """
        if names is None or self.name in names:
            return self.name
        regex = re.compile(self.pattern)
        found = sorted((int(m.group(1)), n) for n in names if (m := regex.fullmatch(n)))
        if not found:
            return self.name
        blocks = sorted({i for i, _ in found})
        wanted = blocks[round(self.index / max(self.depth - 1, 1) * (len(blocks) - 1))]
        # Several sub-layers per block (SD's attentions.0/.1): the last, as Model-J's SD layer is.
        return [n for i, n in found if i == wanted][-1]


class Adapter(abc.ABC):
    """One model family (see the module docstring). Subclass `FullModelAdapter` or `LoraAdapter`."""

    #: Registry key, e.g. "vit".
    family: ClassVar[str]
    #: Hub card fields for models of this family.
    library_name: ClassVar[str]
    pipeline_tag: ClassVar[str]
    #: Hub `base_model_relation` of a model of this family to its base: "finetune" or "adapter".
    relation: ClassVar[str]
    #: The expert tasks the family's layers serve.
    tasks: ClassVar[tuple[str, ...]]
    #: Checkpoint files to prefer (index files first), relative to the model's folder.
    weight_files: ClassVar[tuple[str, ...]] = ()
    #: Detection order, lower first: LoRA families before the full models whose names they share.
    priority: ClassVar[int] = 100

    def __repr__(self) -> str:
        return f"<adapter {self.family}>"

    def checkpoint(self, source: WeightSource) -> Checkpoint:
        """The checkpoint holding this family's layers in `source`."""
        return source.checkpoint(self.weight_files)

    def library_for(self, source: WeightSource) -> str:
        """The Hub `library_name` of this model: the family's, unless the family's layouts differ (`adapters.bert`)."""
        return self.library_name

    def pipeline_for(self, source: WeightSource) -> str | None:
        """The Hub `pipeline_tag` of this model: the family's, unless its files say more (a task model, a layout);
        None when they do not tell."""
        return self.pipeline_tag or None

    def weights_of(self, source: WeightSource, *, base: str | None = None,
                   token: str | bool | None = None) -> WeightSource:
        """The weights an expert reads for this model: `source` itself, unless the files hold only a change to a base
        that must be read with it (a peft adapter of a full model, `adapters.peft_model`: its base and the change
        merged). `base` overrides the base the files declare.

        Raises:
            ProbexError: the base cannot be opened or does not fit the change (one line: which base, why).
        """
        return source

    @abc.abstractmethod
    def matches(self, source: WeightSource) -> bool:
        """True if `source` is a model of this family (from its small files and tensor names only)."""

    def declared_bases(self, source: WeightSource) -> dict[str, str]:
        """Base repo ids the files declare, each with where (the evidence a card field cites); default: config.json
        `_name_or_path` when it looks like a repo id.

        Only older configs keep `_name_or_path`, and it may be stale: the router checks it against the weights.
        """
        name = (source.read_json("config.json") or {}).get("_name_or_path")
        return {name: "config.json _name_or_path"} if looks_like_repo_id(name) else {}

    @abc.abstractmethod
    def default_layer(self, root_id: str | None, source: WeightSource | None = None) -> LayerChoice:
        """The reference layer for the tree of `root_id` (or for what `source`'s files say it is)."""

    def target_layer(self, task: str, root_id: str | None = None, names: Collection[str] | None = None,
                     source: WeightSource | None = None) -> str:
        """The layer an expert of `task` reads in the tree of `root_id`.

        Model-J's layer for Model-J's roots; with `names` (the candidate layers of a model), the same
        sub-layer at the same relative depth when the model is shallower or deeper. The layer is the same
        for every task of a family (as in Model-J). A trained expert names its own layer: prefer that one.
        """
        if task not in self.tasks:
            raise ValueError(f"the {self.family} family serves the tasks {', '.join(self.tasks)}, not {task!r}")
        return self.default_layer(root_id, source).resolve(names)

    @abc.abstractmethod
    def candidate_layers(self, checkpoint: Checkpoint) -> list[str]:
        """Every layer an expert could read in this checkpoint (sorted)."""

    @abc.abstractmethod
    def layer_shape(self, checkpoint: Checkpoint, name: str) -> tuple[int, ...]:
        """The stored shape of one layer, from the header only (LayerMismatchError if absent)."""

    @abc.abstractmethod
    def _read(self, checkpoint: Checkpoint, name: str) -> np.ndarray:
        """One layer as a float32 array of its stored shape."""

    def read_layer(self, source: WeightSource, name: str,
                   expected_shape: tuple[int, ...] | None = None) -> tuple[np.ndarray, tuple[int, ...]]:
        """One layer of `source`: (flat float32 array, stored shape), reading only its tensor(s).

        Raises:
            LayerMismatchError: the model lacks the layer, or stores it in another shape than
                `expected_shape` (checked from the header, before any tensor byte is read).
        """
        checkpoint = self.checkpoint(source)
        shape = self.layer_shape(checkpoint, name)
        if expected_shape is not None and tuple(expected_shape) != shape:
            raise LayerMismatchError(
                f"layer {name!r} of {source.description} has shape {list(shape)}, not {list(expected_shape)} as the "
                f"expert expects: the model belongs to another tree or architecture; use an expert of its tree"
            )
        return self._read(checkpoint, name).ravel(), shape

    def read_matrix(self, source: WeightSource, name: str, expected_shape: tuple[int, ...] | None = None,
                    conv_layout: str = "probex") -> np.ndarray:
        """One layer shaped as an expert reads it: a [1, H, W] float32 batch (see `shaping.to_matrices`)."""
        flat, shape = self.read_layer(source, name, expected_shape)
        return to_matrices(flat.reshape(1, -1), shape, conv_layout)

    def read_input(self, source: WeightSource, inputs: Sequence[tuple[str, tuple[int, ...]]],
                   conv_layout: str = "probex", allow_missing: bool = False) -> np.ndarray:
        """What an expert reading `inputs` ((layer, stored shape) pairs) takes: one layer as `read_matrix`
        gives it, several stacked into one [1, 1, D] vector (`shaping.stack_inputs`). With `allow_missing`
        (an expert that fuses modules, `Expert.fused`) a layer the model lacks is NaN; one in another shape still
        raises."""
        if len(inputs) == 1:
            return self.read_matrix(source, inputs[0][0], inputs[0][1], conv_layout)
        return stack_inputs([self._read_or_missing(source, name, shape, allow_missing)[None] for name, shape in inputs])

    def _read_or_missing(self, source: WeightSource, name: str, shape: tuple[int, ...], allow_missing: bool) -> np.ndarray:
        if allow_missing and not self.has_layer(source, name):
            return np.full(int(np.prod(shape)), np.nan, dtype=np.float32)
        return self.read_layer(source, name, shape)[0]

    def has_layer(self, source: WeightSource, name: str) -> bool:
        """Whether the model stores the layer `name` (in any shape; from the header only)."""
        try:
            self.layer_shape(self.checkpoint(source), name)
        except LayerMismatchError:
            return False
        return True

    def _missing(self, checkpoint: Checkpoint, name: str) -> LayerMismatchError:
        shown = self.candidate_layers(checkpoint)
        return LayerMismatchError(
            f"{checkpoint.source.description} has no layer {name!r} ({self.family} family); its layers include "
            f"{', '.join(shown[:3])}{' ...' if len(shown) > 3 else ''}: use an expert of its tree or another layer"
        )


class FullModelAdapter(Adapter):
    """A family of full models (every weight stored): a layer is one tensor name, read as stored."""

    relation = "finetune"
    tasks = (CLASSES_TASK,)
    #: config.json `model_type`s of the family.
    model_types: ClassVar[frozenset[str]] = frozenset()
    #: Matched at the start of tensor names, for a bare .safetensors file (no config.json).
    key_pattern: ClassVar[str] = r"(?!)"

    def matches(self, source: WeightSource) -> bool:
        config = self.config(source)
        if config:
            return config.get("model_type") in self.model_types
        pattern = re.compile(self.key_pattern)
        return any(pattern.match(name) for name in self.checkpoint(source).names)

    def candidate_layers(self, checkpoint: Checkpoint) -> list[str]:
        # As the experts read them: tensors of two or more dimensions (weights, not biases or norms).
        return [n for n in checkpoint.names if len(checkpoint.shape(n)) >= 2]

    def layer_shape(self, checkpoint: Checkpoint, name: str) -> tuple[int, ...]:
        if name not in checkpoint:
            raise self._missing(checkpoint, name)
        return checkpoint.shape(name)

    def _read(self, checkpoint: Checkpoint, name: str) -> np.ndarray:
        return checkpoint.read(name)

    @staticmethod
    def config(source: WeightSource) -> dict[str, Any]:
        """config.json, or {} when absent."""
        return source.read_json("config.json") or {}


class LoraAdapter(Adapter):
    """A family of LoRA adapters: a layer is a module name, read as the dense update B @ A (no alpha/r)."""

    relation = "adapter"
    priority = 10

    def declared_bases(self, source: WeightSource) -> dict[str, str]:
        """adapter_config.json `base_model_name_or_path` (peft writes it in every adapter) when it is a repo id."""
        base = (source.read_json("adapter_config.json") or {}).get("base_model_name_or_path")
        return {base: "adapter_config.json base_model_name_or_path"} if looks_like_repo_id(base) else {}

    @abc.abstractmethod
    def normalise(self, key: str) -> str | None:
        """A tensor name -> the same name in the family's one naming, ending `.lora_A.weight` / `.lora_B.weight`
        (None for tensors that are not LoRA factors: alphas, biases, text-encoder LoRAs the family ignores)."""

    def base_module(self, weight: str) -> str | None:
        """The module name this family's LoRAs give the base's weight tensor `weight` (None: not a module's weight).
        Routing records a tree base's modules under these names (`experts.calibration.routes.fit_lora_modules`)."""
        return weight.removesuffix(".weight") if weight.endswith(".weight") else None

    def module_pairs(self, checkpoint: Checkpoint) -> dict[str, tuple[str, str]]:
        """Normalised module name -> (A/down key, B/up key) as stored in the checkpoint."""
        stored = {}
        for key in checkpoint.names:
            normal = self.normalise(key)
            if normal is not None:
                stored[normal] = key
        return {module: (stored[a], stored[b]) for module, (a, b) in lora_pairs(list(stored)).items()}

    def candidate_layers(self, checkpoint: Checkpoint) -> list[str]:
        return sorted(self.module_pairs(checkpoint))

    def layer_shape(self, checkpoint: Checkpoint, name: str) -> tuple[int, ...]:
        pair = self.module_pairs(checkpoint).get(name)
        if pair is None:
            raise self._missing(checkpoint, name)
        down, up = (checkpoint.shape(k) for k in pair)
        if len(down) != 2 or len(up) != 2 or down[0] != up[1]:
            raise LayerMismatchError(
                f"{checkpoint.source.description}: the LoRA factors of {name!r} have shapes {list(down)} and {list(up)}, "
                f"not [r, in] and [out, r] (a convolution LoRA?); choose a linear module"
            )
        return (up[0], down[1])

    def _read(self, checkpoint: Checkpoint, name: str) -> np.ndarray:
        down, up = self.module_pairs(checkpoint)[name]
        return checkpoint.read(up) @ checkpoint.read(down)


class AnyFullModel(FullModelAdapter):
    """Every tensor of two or more dimensions is a layer: reads weights of a family no adapter knows (experts'
    training files, tests). Not registered: `detect` never answers it."""

    family = "any"
    library_name = ""
    pipeline_tag = ""

    def matches(self, source: WeightSource) -> bool:
        return True

    def default_layer(self, root_id: str | None, source: WeightSource | None = None) -> LayerChoice:
        raise LayerMismatchError("weights of an unknown family have no default layer; name the layer")


class AnyLora(LoraAdapter):
    """LoRA factors in the diffusers (`.lora.down/up.weight`) or peft (`.lora_A/B.weight`) naming, whatever the
    base; the module is the name before the suffix. Not registered, like `AnyFullModel`."""

    family = "any-lora"
    library_name = ""
    pipeline_tag = ""
    tasks = (CLASSES_TASK, CONCEPT_TASK)
    _SUFFIXES = {".lora.down.weight": ".lora_A.weight", ".lora.up.weight": ".lora_B.weight",
                 ".lora_A.weight": ".lora_A.weight", ".lora_B.weight": ".lora_B.weight"}

    def normalise(self, key: str) -> str | None:
        suffix = next((s for s in self._SUFFIXES if key.endswith(s)), None)
        return None if suffix is None else key[: -len(suffix)] + self._SUFFIXES[suffix]

    def matches(self, source: WeightSource) -> bool:
        return True

    def default_layer(self, root_id: str | None, source: WeightSource | None = None) -> LayerChoice:
        raise LayerMismatchError("LoRAs of an unknown family have no default layer; name the module")
