"""A peft adapter read through its base: the merged view (`MergedSource`) that routing and the experts read.

A peft adapter stores only a change to its base model: for each module it targets, LoRA factors A [r, in] and
B [out, r] (a convolution's: [r, in, k, k] and [out, r, 1, 1]; an embedding's: `lora_embedding_A` [r, n] and
`lora_embedding_B` [d, r]), and the whole tensors of the modules it trains outright (`modules_to_save`: a new
classification head). `MergedSource` shows base and adapter as one model, as `merge_and_unload` leaves it, under the
base's checkpoint names:

- a targeted module's weight is W + s * B @ A, with s = lora_alpha / r (rslora: lora_alpha / sqrt(r)); r is the
  factors' rank (so `rank_pattern` holds by the file itself), lora_alpha the config's or `alpha_pattern`'s for the
  module; `fan_in_fan_out` transposes the update; DoRA rescales each output row to its magnitude
  (`lora_magnitude_vector`); a LoRA bias (`lora_B.bias`) adds s * b to the module's bias;
- a saved module's tensors replace the base's (or are added: a head the base lacks);
- every other tensor, small file and header is the base's, except README.md (always the adapter's: the base's card
  describes the base) and config.json (the adapter's when it has one).

Names. peft names a module as the model in memory does, which can differ from the base's checkpoint on disk: by a
task model's prefix (an adapter of a `BertForSequenceClassification`, `bert.encoder...`, on a `BertModel` base stored
as `encoder...`), and by transformers 5's renamed modules (a ViT stores `vit.encoder.layer.0.attention.attention.
query.weight`, in memory `vit.layers.0.attention.q_proj`). `CheckpointNames` maps them with transformers' own
conversion mapping (`get_checkpoint_conversion_mapping`, `rename_source_key`), looked up as `from_pretrained` looks
it up for a task model (its class's or model type's, then its base model's under the prefix) without building the
model, so a hostile config cannot make us build one. Adapters made under transformers 4 name modules as stored;
those match as they are. A tensor transformers builds by fusing or splitting stored ones (a `WeightConverter`) is
not merged into: an adapter targeting one is refused.

Opening a view reads the two headers and checks that every module the adapter targets is one of the base's, in the
shape of its update (`LayerMismatchError` names the first that is not); reading a merged tensor reads the base's
tensor and the module's factors, once each. `bytes_read` counts both repos.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LayerMismatchError
from .reading import Checkpoint, WeightSource
from .safetensors_format import SafetensorsHeader, TensorInfo

#: The prefix peft gives every key of a transformers model's adapter.
PEFT_PREFIX = "base_model.model."
#: A peft key's suffix -> the part of a LoRA module it holds.
LORA_PARTS = {".lora_A.weight": "A", ".lora_B.weight": "B", ".lora_embedding_A": "embedding_A",
              ".lora_embedding_B": "embedding_B", ".lora_B.bias": "bias", ".lora_magnitude_vector": "magnitude",
              ".lora_magnitude_vector.weight": "magnitude"}
#: The files a view takes from the adapter: its card always, its config.json when it has one.
CARD, CONFIG = "README.md", "config.json"
#: An `alpha_pattern` key is a regular expression (peft's semantics); beyond these bounds (or with a repeated group)
#: it could backtrack for ages.
MAX_PATTERN_CHARS, MAX_PATTERN_REPEATS = 200, 3


# ---- names: the model in memory vs the checkpoint on disk -------------------------------------------------------


def _conversions(config: dict[str, Any]) -> tuple[str, list]:
    """(base_model_prefix, transformers' conversion transforms) for a model of `config`, as `from_pretrained` finds
    them for a task model: its class's mapping (else its model type's), then its base model class's, scoped under the
    prefix, then the legacy renames. ('', []) under transformers 4, which renames nothing."""
    try:
        import transformers
        from transformers.conversion_mapping import get_checkpoint_conversion_mapping as mapping
        from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES
    except ImportError:
        return "", []
    model_type = config.get("model_type")
    base_class = MODEL_MAPPING_NAMES.get(model_type) if isinstance(model_type, str) else None
    try:
        prefix = getattr(transformers, base_class).base_model_prefix if base_class else ""
    except (AttributeError, ImportError):
        prefix = ""
    architecture = (config.get("architectures") or [base_class])[0]
    transforms: list = []
    claimed: set[str] = set()
    for class_name, scoped in ((architecture, False), (base_class, True)):
        if not class_name or class_name in claimed:
            continue
        claimed.add(class_name)
        found = mapping(class_name)
        if found is None and model_type and model_type not in claimed:
            found = mapping(model_type)
            claimed.update([model_type] if found else [])
        for transform in found or []:
            if scoped:  # the base model inside a task model: its names with or without the prefix
                transform.scope_prefix, transform.base_model_prefix = "", prefix
            transforms.append(transform)
    return prefix, transforms + (mapping("legacy") or [])


class CheckpointNames:
    """The names a checkpoint's tensors have on disk, found by the parameter names a model in memory gives them
    (see the module docstring)."""

    def __init__(self, stored: Iterable[str], config: dict[str, Any]) -> None:
        self.prefix, transforms = _conversions(config)
        stored = list(stored)
        self._stored = {name: name for name in stored}  # as stored: transformers 4's names, and every unrenamed one
        #: In-memory names transformers builds by fusing or splitting stored tensors: nothing merges into them.
        self.converted: set[str] = set()
        if transforms:
            from transformers.core_model_loading import WeightConverter, rename_source_key

            renamings = [t for t in transforms if not isinstance(t, WeightConverter)]
            converters = [t for t in transforms if isinstance(t, WeightConverter)]
            for name in stored:
                memory, converter = rename_source_key(name, renamings, converters)
                if converter is not None:
                    self.converted.add(memory)
                else:
                    self._stored.setdefault(memory, name)

    def _candidates(self, param: str) -> list[str]:
        """`param`, and the same name with the task model's prefix taken off or put on (adapter and base may be a task
        model and its bare base model, either way round)."""
        if not self.prefix:
            return [param]
        mark = f"{self.prefix}."
        return [param, param.removeprefix(mark) if param.startswith(mark) else mark + param]

    def stored(self, param: str) -> str | None:
        """The stored name of the in-memory parameter `param` (either naming), or None when the checkpoint lacks it."""
        return next((self._stored[c] for c in self._candidates(param) if c in self._stored), None)

    def is_converted(self, param: str) -> bool:
        """Whether transformers builds `param` from fused or split stored tensors."""
        return any(c in self.converted for c in self._candidates(param))


# ---- the change an adapter makes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoraUpdate:
    """One targeted module: its factors' keys in the adapter, the scale s, and how the update lies on the weight."""

    module: str  # the in-memory module name, as peft names it
    down: str  # A, or lora_embedding_A
    up: str  # B, or lora_embedding_B
    scale: float
    embedding: bool  # lora_embedding_A [r, n] / B [d, r]: the update is (B @ A).T
    transpose: bool  # fan_in_fan_out: the base stores the weight [in, out]
    magnitude: str | None = None  # DoRA's lora_magnitude_vector key


def update(a: np.ndarray, b: np.ndarray, embedding: bool = False) -> np.ndarray:
    """The dense update B @ A of one module's factors, shaped as the module's weight: [out, in] for a linear layer,
    [out, in, k, k] for a convolution (A [r, in, k, k], B [out, r, 1, 1]), [n, d] for an embedding."""
    if embedding:
        return (b @ a).T
    rank = a.shape[0]
    return (b.reshape(b.shape[0], rank) @ a.reshape(rank, -1)).reshape(b.shape[0], *a.shape[1:])


def merge_weight(weight: np.ndarray, delta: np.ndarray, magnitude: np.ndarray | None = None,
                 transpose: bool = False) -> np.ndarray:
    """W + delta, as peft merges it; with DoRA's `magnitude`, each output row rescaled to it: m * (W + d) / ||W + d||
    (rows of [out, ...] weights; `transpose`: the base stores [in, out])."""
    merged = weight + (delta.T if transpose else delta)
    if magnitude is None:
        return merged
    rows = merged.T if transpose else merged
    norms = np.linalg.norm(rows.reshape(len(rows), -1), axis=1)
    scaled = rows * (magnitude.reshape(-1) / norms).reshape(-1, *[1] * (rows.ndim - 1))
    return scaled.T if transpose else scaled


def _pattern_value(patterns: dict[str, Any], module: str, default: Any, what: str) -> Any:
    """peft's `alpha_pattern` lookup: the value of the first key that matches the end of `module` after a dot."""
    for key, value in patterns.items():
        if (not isinstance(key, str) or len(key) > MAX_PATTERN_CHARS or re.search(r"\)[*+?{]", key)
                or len(re.findall(r"[*+?{]", key)) > MAX_PATTERN_REPEATS):
            raise LayerMismatchError(f"adapter_config.json {what} has the key {key!r:.60}, a pattern hf_probex does not "
                                     f"evaluate (longer than {MAX_PATTERN_CHARS} characters, a repeated group, or more "
                                     f"than {MAX_PATTERN_REPEATS} repetitions); fix the config")
        try:
            if re.match(rf"(.*\.)?({key})$", module):
                return value
        except re.error:
            raise LayerMismatchError(f"adapter_config.json {what} has the key {key!r:.60}, not a regular expression; "
                                     f"fix the config") from None
    return default


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise LayerMismatchError(f"adapter_config.json {what} is {value!r:.40}, not a positive number; fix the config")
    return float(value)


def _saved_module(key: str, modules_to_save: list[str]) -> bool:
    """Whether the tensor `key` belongs to one of `modules_to_save` (peft matches a module name's end, on a dot)."""
    parts = key.split(".")[:-1]
    modules = {".".join(parts[i:j]) for j in range(1, len(parts) + 1) for i in range(j)}
    return any(m in modules for m in modules_to_save if isinstance(m, str))


@dataclass
class Plan:
    """What an adapter does to its base's checkpoint, by stored name: merged weights, merged biases, whole tensors."""

    weights: dict[str, LoraUpdate]
    biases: dict[str, tuple[str, float]]  # stored bias -> (lora_B.bias key, scale)
    tensors: dict[str, str]  # stored (or added) name -> the adapter's tensor


def plan(adapter: Checkpoint, config: dict[str, Any], base: Checkpoint, names: CheckpointNames) -> Plan:
    """Map every tensor of a peft LoRA adapter (`adapter`, its `config`) onto the base's checkpoint, from headers only.

    Raises:
        LayerMismatchError: the adapter targets a module the base lacks (or one transformers fuses), or its update's
            shape is not the base's weight's; a config value that is not a number; DoRA on an embedding.
    """
    modules: dict[str, dict[str, str]] = {}
    saved: dict[str, str] = {}
    to_save = config.get("modules_to_save") or []
    for key in adapter.names:
        name = key.removeprefix(PEFT_PREFIX)
        found = next(((suffix, part) for suffix, part in LORA_PARTS.items() if name.endswith(suffix)), None)
        if found is not None:
            modules.setdefault(name[: -len(found[0])], {})[found[1]] = key
        elif isinstance(to_save, list) and _saved_module(name, to_save):
            saved[name] = key
        # anything else (trainable token deltas...) changes no layer an expert reads
    alpha, patterns = config.get("lora_alpha", 8), config.get("alpha_pattern") or {}
    if not isinstance(patterns, dict):
        raise LayerMismatchError("adapter_config.json alpha_pattern is not an object of module patterns; fix the config")
    rslora, transpose = bool(config.get("use_rslora")), bool(config.get("fan_in_fan_out"))
    result = Plan({}, {}, {})
    where = f"the adapter {adapter.source.description}"
    for module, parts in sorted(modules.items()):
        embedding = "embedding_A" in parts or "embedding_B" in parts
        down, up = (parts.get("embedding_A"), parts.get("embedding_B")) if embedding else (parts.get("A"), parts.get("B"))
        if down is None or up is None:
            raise LayerMismatchError(f"{where} holds only one LoRA factor of {module!r}; re-save it with peft")
        stored = names.stored(f"{module}.weight")
        if stored is None or stored not in base:
            fused = " (transformers builds it by fusing or splitting stored tensors, which hf_probex does not merge " \
                    "into)" if names.is_converted(f"{module}.weight") else ""
            raise LayerMismatchError(f"{where} targets {module!r}, which its base {base.source.description} lacks{fused}: "
                                     f"it was made on another model; pass its real base")
        a, b, weight = adapter.shape(down), adapter.shape(up), base.shape(stored)
        rank = a[0] if a else 0
        if rank == 0:
            shape = None
        elif embedding:
            shape = (a[1], b[0]) if len(a) == 2 and len(b) == 2 and b[1] == rank else None
        else:
            fits = len(b) >= 2 and b[1] == rank and all(d == 1 for d in b[2:]) and len(b) == len(a)
            shape = (b[0], *a[1:]) if fits else None
            shape = shape[::-1] if shape is not None and transpose and len(shape) == 2 else shape
        if shape != weight:
            raise LayerMismatchError(f"{where}: the update of {module!r} (factors {list(a)} and {list(b)}) does not fit "
                                     f"the base's {stored!r} {list(weight)}: it was made on another model; pass its real base")
        if "magnitude" in parts and (embedding or math.prod(adapter.shape(parts["magnitude"])) != weight[1 if transpose else 0]):
            raise LayerMismatchError(f"{where}: the DoRA magnitudes of {module!r} do not fit the base's {stored!r} "
                                     f"{list(weight)} (hf_probex merges DoRA on linear and convolution layers)")
        value = _number(_pattern_value(patterns, module, alpha, "alpha_pattern"), "lora_alpha")
        scale = value / (math.sqrt(rank) if rslora else rank)
        result.weights[stored] = LoraUpdate(module, down, up, scale, embedding, transpose, parts.get("magnitude"))
        bias = stored.removesuffix(".weight") + ".bias"
        if "bias" in parts and bias in base:
            result.biases[bias] = (parts["bias"], scale)
    for name, key in saved.items():
        result.tensors[names.stored(name) or name] = key
    return result


# ---- the merged view ----------------------------------------------------------------------------------------------


class MergedCheckpoint:
    """The base's checkpoint with the adapter's change applied (the interface of `reading.Checkpoint`)."""

    def __init__(self, source: MergedSource, base: Checkpoint, adapter: Checkpoint, changes: Plan) -> None:
        self.source, self.name, self.metadata = source, base.name, base.metadata
        self._base, self._adapter, self._plan = base, adapter, changes
        self._merged: dict[str, np.ndarray] = {}

    def __repr__(self) -> str:
        return f"MergedCheckpoint({self.source.description!r}, {self.name!r})"

    @property
    def names(self) -> list[str]:
        return sorted(set(self._base.names) | set(self._plan.tensors))

    @property
    def shards(self) -> list[str]:
        return self._base.shards

    def __contains__(self, name: object) -> bool:
        return name in self._plan.tensors or name in self._base

    def info(self, name: str) -> TensorInfo:
        """Where the tensor `name` lies: the adapter's for a saved module's, else the base's (a merged weight has
        the base's shape)."""
        return self._adapter.info(self._plan.tensors[name]) if name in self._plan.tensors else self._base.info(name)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.info(name).shape

    def read(self, name: str) -> np.ndarray:
        """One tensor as the merged model holds it (float32, the base's stored shape); computed once."""
        if name not in self._merged:
            self._merged[name] = self._compute(name)
        return self._merged[name]

    def _compute(self, name: str) -> np.ndarray:
        if name in self._plan.tensors:
            return self._adapter.read(self._plan.tensors[name])
        base = self._base.read(name)
        if name in self._plan.weights:
            lora = self._plan.weights[name]
            delta = lora.scale * update(self._adapter.read(lora.down), self._adapter.read(lora.up), lora.embedding)
            magnitude = self._adapter.read(lora.magnitude) if lora.magnitude else None
            return merge_weight(base, delta, magnitude, lora.transpose).astype(np.float32)
        if name in self._plan.biases:
            key, scale = self._plan.biases[name]
            return (base + scale * self._adapter.read(key)).astype(np.float32)
        return base


class MergedSource:
    """A peft adapter and its base as one model (see the module docstring); the interface of `reading.WeightSource`.

    Build one with `PeftModelAdapter.weights_of` (`hf_probex.adapters.peft_model`), which opens the base."""

    def __init__(self, adapter: WeightSource, base: WeightSource, adapter_checkpoint: Checkpoint, base_checkpoint: Checkpoint,
                 config: dict[str, Any]) -> None:
        self.adapter, self.base = adapter, base
        self.description = f"{adapter.description} (merged onto its base {base.description})"
        self.revision = adapter.revision
        names = CheckpointNames(base_checkpoint.names, base.read_json(CONFIG) or {})
        self._merged = MergedCheckpoint(self, base_checkpoint, adapter_checkpoint,
                                        plan(adapter_checkpoint, config, base_checkpoint, names))

    def __repr__(self) -> str:
        return f"MergedSource({self.description!r})"

    def _owner(self, name: str) -> WeightSource:
        """The source of a small file: the adapter for its card and its own config.json, the base otherwise."""
        return self.adapter if name == CARD or (name == CONFIG and CONFIG in self.adapter.files) else self.base

    @property
    def local_folder(self) -> Path | None:
        """The adapter's folder where it is local (its files declare the bases), None for a Hub repo."""
        return self.adapter.local_folder

    @property
    def bytes_read(self) -> int:
        """Bytes read from both repos."""
        return self.adapter.bytes_read + self.base.bytes_read

    @property
    def files(self) -> list[str]:
        own = {name for name in (CARD, CONFIG) if name in self.adapter.files}
        return sorted((set(self.base.files) - {CARD}) | own)

    @property
    def size(self) -> int:
        return self.adapter.size + self.base.size

    def file_size(self, name: str) -> int:
        return self._owner(name).file_size(name)

    @property
    def safetensors_files(self) -> list[str]:
        return self.base.safetensors_files

    @property
    def pickled_files(self) -> list[str]:
        return self.base.pickled_files

    def require_safetensors(self) -> None:
        self.base.require_safetensors()

    def read_text(self, name: str) -> str | None:
        return self._owner(name).read_text(name)

    def read_json(self, name: str) -> dict[str, Any] | None:
        return self._owner(name).read_json(name)

    def header(self, name: str) -> SafetensorsHeader:
        return self.base.header(name)

    def checkpoint(self, preferred: tuple[str, ...] = ()) -> Checkpoint | MergedCheckpoint:
        """The merged checkpoint when the base's choice is the one the adapter changes, else the base's own."""
        return self.open_checkpoint(self.base.checkpoint(preferred).name)

    def open_checkpoint(self, name: str) -> Checkpoint | MergedCheckpoint:
        return self._merged if name == self._merged.name else self.base.open_checkpoint(name)
