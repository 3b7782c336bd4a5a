"""Expert features: what an expert computes from the raw layers it reads before its network sees them.

Both start from the layer's change, W - W_root (the root travels with the expert as its centring offset;
a LoRA update already is a change):

- `delta`: the change itself, divided by one scale fitted on the training models ((W - W_root) / sigma,
  docs/experts.md). What the papers' networks read.
- `gram`: per layer, the change as one row per output unit, M = (W - W_root) reshaped [out, in*k*k], and
  its input-side Gram matrix M^T M, scaled to unit norm. A fine-tune's change of a layer is a sum of
  outer products of back-propagated errors and the layer's inputs, so M^T M is a weighted second moment
  of the training images' features at that layer: it says what the model saw, and it does not change
  when output units are permuted or rotated (a head re-initialised in another class order, with another
  class count, moves every layer's outputs differently), nor with the size of the change (the learning
  rate, the number of steps, alpha / r). Measured across recipe families it keeps the signal that the
  raw change loses (docs/experts.md, "Features").

One layer gives the full symmetric Gram [in, in] (a matrix for the matrix networks); several stacked
layers give their upper triangles concatenated into one [1, D] vector. A layer wider than
`GRAM_MAX_WIDTH` on its input side (a 3x3 convolution of 128 channels has 1,152 inputs, a ViT-B MLP
3,072) is first projected onto `GRAM_MAX_WIDTH` directions by a fixed random Gaussian matrix, the same
for every model and process (seeded by the width): the Gram of the projection, RᵀMᵀMR, is a linear
image of the full Gram, so a linear expert on it loses only dimensions, and its size stays bounded.
"""

from __future__ import annotations

import functools
import zlib

import numpy as np
import torch

from ...shaping import matrix_shape

FEATURES = ("delta", "gram")
GRAM_MAX_WIDTH = 384


@functools.lru_cache(maxsize=16)
def projection(width: int) -> torch.Tensor:
    """The fixed [width, GRAM_MAX_WIDTH] Gaussian projection of inputs wider than GRAM_MAX_WIDTH."""
    rng = np.random.default_rng([zlib.crc32(b"hf-probex-gram"), width])
    return torch.from_numpy((rng.normal(size=(width, GRAM_MAX_WIDTH)) / np.sqrt(GRAM_MAX_WIDTH)).astype(np.float32))


def _rows(shape: tuple[int, ...]) -> tuple[int, int]:
    """A stored tensor shape as one row per output unit, [out, in*k*k] (`shaping.matrix_shape`'s rows layout)."""
    return matrix_shape(tuple(shape), "rows")


def _width(shape: tuple[int, ...]) -> int:
    return min(_rows(shape)[1], GRAM_MAX_WIDTH)


def feature_shape(features: str, input_shape: tuple[int, ...], inputs: list) -> tuple[int, int]:
    """The [H, W] a network receives for `features` of inputs (`input_shape`: the raw batch shape per model)."""
    if features == "delta":
        return tuple(input_shape)
    if features != "gram":
        raise ValueError(f"unknown features {features!r}; choose one of: {', '.join(FEATURES)}")
    widths = [_width(shape) for _, shape in inputs]
    if len(widths) == 1:
        return widths[0], widths[0]
    return 1, sum(w * (w + 1) // 2 for w in widths)


def gram(delta: torch.Tensor, inputs: list) -> torch.Tensor:
    """[B, ...] changes of the layers `inputs` ((name, stored shape), flattened in that order when stacked)
    -> their unit-norm input-side Gram features (see the module docstring)."""
    flat = delta.reshape(len(delta), -1)
    parts, start = [], 0
    for _, shape in inputs:
        size = int(np.prod(shape))
        rows = flat[:, start:start + size].reshape(len(flat), *_rows(shape))
        start += size
        if rows.shape[2] > GRAM_MAX_WIDTH:
            rows = rows @ projection(rows.shape[2])
        g = rows.transpose(1, 2) @ rows  # [B, in, in]
        if len(inputs) > 1:
            upper = torch.triu_indices(g.shape[1], g.shape[2])
            g = g[:, upper[0], upper[1]]
        parts.append(g / g.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, *([1] * (g.dim() - 1))))
    if len(parts) == 1:
        return parts[0]
    return torch.cat(parts, dim=1)[:, None, :]
