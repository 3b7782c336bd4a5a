"""Input shaping: the 2-D matrix an expert reads from one stored layer, as plain array arithmetic (no weight files).

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

This module sits below the adapters (which read one layer as an expert takes it) and the experts; reading the
layers of weight files through the adapters is `hf_probex.experts.methods.shaping`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CONV_LAYOUTS", "MAX_LAYER_ELEMENTS", "centring", "check_finite", "lora_pairs", "matrix_shape", "readable",
           "stack_inputs", "to_matrices"]

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


def centring(x_train: np.ndarray, root: np.ndarray | None) -> tuple[np.ndarray, float]:
    """(offset, scale) of root centring, fitted on training matrices: x -> (x - offset) / scale.

    `root` None or of another shape gives the identity (zero offset, scale 1).
    """
    if root is None or root.shape != x_train.shape[1:]:
        return np.zeros(x_train.shape[1:], dtype=np.float32), 1.0
    scale = float((x_train - root).std())
    return root.astype(np.float32), scale if scale > 1e-12 else 1.0
