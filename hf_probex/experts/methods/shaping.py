"""Reading an expert's inputs from weight files: which layers a model offers, and each as the matrix an expert reads.

Layers are read as `infer_card` reads them, through `hf_probex.reading` and the family's adapter (a generic reader
for a family no adapter knows); the arithmetic that turns a stored tensor into an expert's matrix (convolutions
reshaped, LoRA pairs made dense, root centring) is `hf_probex.shaping`, whose names stay importable from here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...adapters import detect, detect_or_generic
from ...errors import LayerMismatchError, UnknownArchitectureError
from ...reading import open_source
from ...shaping import (
    CONV_LAYOUTS, MAX_LAYER_ELEMENTS, centring, check_finite, lora_pairs, matrix_shape, readable, stack_inputs, to_matrices,
)
from ...weightsets import WeightRecord

# The array arithmetic lives in `hf_probex.shaping` (below the adapters, which shape one layer as experts read it);
# its names stay importable from here.
__all__ = ["CONV_LAYOUTS", "MAX_LAYER_ELEMENTS", "centring", "check_finite", "layer_reader", "layer_shape", "layer_shapes",
           "load_matrices", "lora_pairs", "matrix_shape", "read_layers", "readable", "root_matrix", "stack_inputs",
           "to_matrices"]


def layer_reader(path: Path, kind: str, base: Path | str | None = None):
    """(adapter, source) that read the layers of one model's weights (a folder or a .safetensors file) as
    `infer_card` reads them: through `hf_probex.reading` (any float dtype, shards, memory maps) and the family's
    adapter (LoRA key formats), or a generic reader for a family no adapter knows.

    A peft adapter of a full model (`adapters.peft_model`) read as a full model (`kind` other than "lora") is its
    merged view on its base: `base` (a local folder or a repo id), else the base its files declare. As a "lora" it is
    its updates B @ A.

    Raises:
        ProbexError: such an adapter's base cannot be opened or does not fit it.
    """
    source = open_source(path)
    if kind != "lora":
        try:
            source = detect(source).weights_of(source, base=base)
        except UnknownArchitectureError:  # a family no adapter knows: read as it is, by the generic reader
            pass
    return detect_or_generic(source, lora=kind == "lora"), source


def read_layers(records: list[WeightRecord], progress: bool = False, names: set[str] | None = None) -> dict[str, np.ndarray]:
    """Every candidate layer (or only `names`) of every record, flattened: {layer name: [n_models, n_weights] float32}.

    Classifier layers are the tensors with two or more dimensions; LoRA layers are the dense updates
    B @ A of each adapted module (no alpha/r scaling, as ProbeX does). Layers missing from a record,
    or shaped differently across records, are left out.
    """
    from tqdm.auto import tqdm

    columns: dict[str, list[np.ndarray]] = {}
    for record in tqdm(records, desc="reading weights", unit="model", disable=not progress, leave=False):
        adapter, source = layer_reader(record.path, record.kind, record.base)
        for name in adapter.candidate_layers(adapter.checkpoint(source)):
            if names is None or name in names:
                columns.setdefault(name, []).append(adapter.read_layer(source, name)[0])
    return {
        name: np.stack(values)
        for name, values in columns.items()
        if len(values) == len(records) and len({v.shape for v in values}) == 1
    }


def layer_shapes(path: Path, kind: str, base: Path | None = None) -> dict[str, tuple[int, ...]]:
    """Every candidate layer of one model's weights and its stored shape (a LoRA module: its dense update's; a peft
    adapter's on `base`, see `layer_reader`)."""
    adapter, source = layer_reader(path, kind, base)
    checkpoint = adapter.checkpoint(source)
    return {name: adapter.layer_shape(checkpoint, name) for name in adapter.candidate_layers(checkpoint)}


def layer_shape(path: Path, layer: str, kind: str, base: Path | None = None) -> tuple[int, ...]:
    """The stored shape of `layer` in one model's weights (a LoRA module: the shape of its dense update).

    Raises:
        ValueError: the weights have no such layer.
    """
    adapter, source = layer_reader(path, kind, base)
    try:
        return adapter.layer_shape(adapter.checkpoint(source), layer)
    except LayerMismatchError as err:
        raise ValueError(str(err)) from None


def load_matrices(records: list[WeightRecord], layer: str, conv_layout: str = "probex") -> tuple[np.ndarray, tuple[int, ...]]:
    """One layer of every record as [n, H, W] float32 matrices, and the layer's stored shape.

    Raises:
        ValueError: a record lacks the layer, its shape differs across records, or it holds NaN/inf.
    """
    if not records:
        raise ValueError("no models to read")
    shape = layer_shape(records[0].path, layer, records[0].kind, records[0].base)
    flat = read_layers(records, names={layer}).get(layer)
    if flat is None:
        raise ValueError(f"layer {layer!r} is missing from some models or shaped differently across them")
    for record, row in zip(records, flat):
        check_finite(row, f"layer {layer!r} of {record.model_id}")
    return to_matrices(flat, shape, conv_layout), shape


def root_matrix(root: Path | None, layer: str, kind: str, conv_layout: str = "probex") -> np.ndarray | None:
    """The root's matrix of `layer` ([H, W]), or None where centring does not apply.

    None for LoRA trees (an update is already the difference from the root), for an unknown root, and
    for a layer the root lacks (a classification head of another size is re-initialised per child).
    """
    if kind == "lora" or root is None:
        return None
    shapes = layer_shapes(root, kind)
    if layer not in shapes:
        return None
    adapter, source = layer_reader(root, kind)
    flat, shape = adapter.read_layer(source, layer)
    return to_matrices(flat.reshape(1, -1), shape, conv_layout)[0]
