"""Model families behind one interface (`Adapter`), one module each, and `detect` over their registry.

Each module here defines its adapter(s) with `@register`; this package imports every module it holds,
so adding a family is adding a file (no other code changes). Detection asks the adapters in `priority`
order (LoRA families first, since their files can share names with the full models they adapt).
"""

from __future__ import annotations

import importlib
import os
import pkgutil

from ..errors import UnknownArchitectureError
from ..reading import WeightSource
from .base import (
    ADAPTERS, CLASSES_TASK, CONCEPT_TASK, Adapter, AnyFullModel, AnyLora, FullModelAdapter, LayerChoice, LoraAdapter,
    register,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["ADAPTERS", "CLASSES_TASK", "CONCEPT_TASK", "Adapter", "FullModelAdapter", "LayerChoice", "LoraAdapter",
           "detect", "detect_or_generic", "get_adapter", "read_through", "register"]


def get_adapter(family: str) -> Adapter:
    """The adapter of one family (as named by `Adapter.family`, e.g. in an expert's config)."""
    if family not in ADAPTERS:
        raise UnknownArchitectureError(f"family {family!r}", sorted(ADAPTERS))
    return ADAPTERS[family]


def _describe(source: WeightSource) -> str:
    """What the files say, for the error message: config.json's model type, else a few tensor names."""
    config = source.read_json("config.json") or {}
    if config.get("model_type") or config.get("architectures"):
        return f"config.json model_type {config.get('model_type')!r}, architectures {config.get('architectures')}"
    names = source.checkpoint().names
    return f"tensors {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"


def detect(source: WeightSource) -> Adapter:
    """The adapter whose family `source` belongs to, from its small files and tensor names.

    Raises:
        NoSafetensorsError: the model has no safetensors weights (pickled files are never opened).
        UnknownArchitectureError: no adapter recognises it; the message lists the known families.
    """
    source.require_safetensors()
    for adapter in sorted(ADAPTERS.values(), key=lambda a: (a.priority, a.family)):
        if adapter.matches(source):
            return adapter
    raise UnknownArchitectureError(source.description, sorted(ADAPTERS), seen=_describe(source))


def detect_or_generic(source: WeightSource, lora: bool) -> Adapter:
    """`detect`, falling back to a reader of any full model or any LoRA (`lora`) when no family claims the files:
    how experts read their training weights, whatever their family."""
    try:
        adapter = detect(source)
    except UnknownArchitectureError:
        return AnyLora() if lora else AnyFullModel()
    return adapter if isinstance(adapter, LoraAdapter) == lora else (AnyLora() if lora else AnyFullModel())


def read_through(source: WeightSource, adapter: Adapter | None = None, *, base: str | os.PathLike | None = None,
                 token: str | bool | None = None) -> tuple[Adapter, WeightSource]:
    """(adapter, weights) that routing and the experts read for `source` (of the family `adapter`, detected when
    None): the source itself and its adapter; for a change to a base (`Adapter.weights_of`: a peft adapter of a full
    model) the merged view and the base family's adapter. `base` overrides the base the files declare.

    Raises:
        ProbexError: the base cannot be opened, is not a full model of a known family, or does not fit the change.
    """
    adapter = adapter or detect(source)
    weights = adapter.weights_of(source, base=base, token=token)
    return (adapter, source) if weights is source else (detect(weights), weights)
