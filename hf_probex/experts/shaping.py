"""Input shaping: which layers a weight file offers, and the 2-D matrix an expert reads from one of them.

As ProbeX does it (see docs/experts.md):

- linear weights stay [out, in]: the probes multiply the input side;
- tensors with extra singleton dimensions are squeezed (a [1, 197, 768] embedding becomes [197, 768]),
  1-D tensors become a column [n, 1], other tensors keep their first axis as rows;
- k x k convolutions [out, in, k, k] become [in*k*k, out] by a plain memory reshape (ProbeX's choice,
  not a transpose), or [out, in*k*k] (one row per filter) with `conv_layout="rows"`; this holds for a
  single input channel too ([32, 1, 7, 7] patch embeddings), and 1 x 1 convolutions squeeze to [out, in];
- a LoRA pair becomes its dense update B @ A [out, in], without the alpha/r factor: recipes vary it, and
  what experts compute from an update does not depend on its scale (MVProbe's per-sample
  standardisation, the unit-norm Gram of `features`);
- within a tree the root is known, so the input can be root-centred: (W - W_root) / sigma, sigma the
  standard deviation of the training models' differences (the shared root otherwise swamps the
  fine-tuning change; docs/experts.md). LoRA updates are already differences and are not centred.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..weightsets import WeightRecord

CONV_LAYOUTS = ("probex", "rows")
#: Layers with more weights than this are not offered to experts and routing: a vocabulary's embedding table
#: (30,522 x 384 in MiniLM, 32,000 x 4,096 in Llama) costs more to read than every other layer together and
#: says more about the tokenizer than about what a fine-tune learnt.
MAX_LAYER_ELEMENTS = 4_194_304


def readable(shape: tuple[int, ...]) -> bool:
    """Whether a layer of this stored shape is small enough for experts and routing to read (`MAX_LAYER_ELEMENTS`)."""
    return int(np.prod(shape)) <= MAX_LAYER_ELEMENTS


def lora_pairs(names: list[str]) -> dict[str, tuple[str, str]]:
    """LoRA module name -> (down/A key, up/B key), for the diffusers and peft key formats."""
    pairs = {}
    for down_tag, up_tag in ((".lora.down.weight", ".lora.up.weight"), (".lora_A.weight", ".lora_B.weight")):
        for name in names:
            if name.endswith(down_tag):
                module = name[: -len(down_tag)]
                if module + up_tag in names:
                    pairs[module] = (name, module + up_tag)
    return pairs


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
    from ..adapters import detect, detect_or_generic
    from ..errors import UnknownArchitectureError
    from ..reading import open_source

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
    from ..errors import LayerMismatchError

    adapter, source = layer_reader(path, kind, base)
    try:
        return adapter.layer_shape(adapter.checkpoint(source), layer)
    except LayerMismatchError as err:
        raise ValueError(str(err)) from None


def matrix_shape(shape: tuple[int, ...], conv_layout: str = "probex") -> tuple[int, int]:
    """The [H, W] a stored tensor shape becomes (see the module docstring)."""
    if conv_layout not in CONV_LAYOUTS:
        raise ValueError(f"unknown conv layout {conv_layout!r}; choose one of: {', '.join(CONV_LAYOUTS)}")
    if len(shape) == 4 and shape[2] * shape[3] > 1:  # a k x k convolution, whatever its channel counts
        out, inp, kh, kw = shape
        return (inp * kh * kw, out) if conv_layout == "probex" else (out, inp * kh * kw)
    squeezed = tuple(d for d in shape if d != 1) or (1,)
    if len(squeezed) == 1:
        return squeezed[0], 1
    return squeezed[0], int(np.prod(squeezed[1:]))  # 2-D as is; anything else keeps its first axis as rows


def to_matrices(flat: np.ndarray, shape: tuple[int, ...], conv_layout: str = "probex") -> np.ndarray:
    """[n, prod(shape)] flattened tensors of one layer -> [n, H, W] matrices (see the module docstring)."""
    return flat.reshape(len(flat), *matrix_shape(shape, conv_layout))


def stack_inputs(arrays: list[np.ndarray]) -> np.ndarray:
    """Several layers of the same models ([n, ...] each) as one stacked input [n, 1, D]: flattened, concatenated."""
    return np.concatenate([a.reshape(len(a), -1) for a in arrays], axis=1)[:, None, :]


def check_finite(x: np.ndarray, what: str) -> None:
    """Raise ValueError naming `what` if `x` holds NaN or inf (an expert would silently output NaN)."""
    if not np.isfinite(x).all():
        raise ValueError(f"{what} holds NaN or inf weights")


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


def centring(x_train: np.ndarray, root: np.ndarray | None) -> tuple[np.ndarray, float]:
    """(offset, scale) of root centring, fitted on training matrices: x -> (x - offset) / scale.

    `root` None or of another shape gives the identity (zero offset, scale 1).
    """
    if root is None or root.shape != x_train.shape[1:]:
        return np.zeros(x_train.shape[1:], dtype=np.float32), 1.0
    scale = float((x_train - root).std())
    return root.astype(np.float32), scale if scale > 1e-12 else 1.0
