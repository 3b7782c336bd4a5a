"""A member's embedding in the tree table: the zero-shot expert's for LoRA trees, a count sketch otherwise.

- LoRA trees with a zero-shot expert: `Expert.forward` on the expert's input layer(s) as the expert reads
  them (`Adapter.read_input`), a unit-norm vector in the expert's weight-text space: a text query embedded
  with `Expert.embed_text` is scored against it by a dot product (the search of issue 15). An expert that
  fuses k modules (`Expert.fused`) gives k unit-norm blocks, one per module in that module's own space,
  concatenated in the order of `embedding_layers`; a module the LoRA lacks is a block of zeros (the
  expert's score is the mean of the blocks' cosines over the modules present).
- Every other member: a **count sketch** of the expert's input layers (of the family's default layer
  when the tree has no expert), centred as the expert centres them (minus the root's copy, divided by
  its scale, for a root-centred expert; as stored otherwise). The count sketch is a fixed sparse random
  projection: coordinate i of the flattened layer is added, with a sign s(i) = +-1, to bucket h(i) of
  `dim`; h and s are drawn once from `numpy.random.default_rng([seed, n])` (n: the layer's size), so
  every run and every machine gives the same sketch. Inner products are preserved in expectation
  (E<S x, S y> = <x, y>), so distances and cosines between members carry over at `dim` = 128 with a
  relative error of about 1/sqrt(dim); it costs one pass over the layer, nothing per member to draw.

Reads only the expert's layers (those routing did not read already: a source reads each tensor once).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from ..adapters import CLASSES_TASK, CONCEPT_TASK, Adapter
from ..experts.registry import ExpertRegistry, load_expert
from ..infer import expert_for
from ..reading import WeightSource

__all__ = ["DEFAULT_SKETCH_DIM", "Embedding", "count_sketch", "member_embedding"]

DEFAULT_SKETCH_DIM = 128
DEFAULT_SKETCH_SEED = 0


@dataclass
class Embedding:
    """A member's embedding, what it is (`kind`), and the layers it read."""

    vector: np.ndarray
    kind: str
    layers: list[str] = field(default_factory=list)


@functools.lru_cache(maxsize=16)
def _sketch_hash(size: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The buckets h (int64 [size]) and signs s (float64 [size]) of the count sketch of a vector of `size`."""
    rng = np.random.default_rng([seed, size])
    buckets = rng.integers(0, dim, size=size)
    signs = rng.integers(0, 2, size=size).astype(np.float64) * 2 - 1
    buckets.flags.writeable = signs.flags.writeable = False
    return buckets, signs


def count_sketch(values: np.ndarray, dim: int = DEFAULT_SKETCH_DIM, seed: int = DEFAULT_SKETCH_SEED) -> np.ndarray:
    """The count sketch of `values` (flattened) in `dim` float32 numbers (see the module docstring)."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    buckets, signs = _sketch_hash(flat.size, dim, seed)
    return np.bincount(buckets, weights=signs * flat, minlength=dim).astype(np.float32)


def member_embedding(source: WeightSource, adapter: Adapter, root: str, registry: ExpertRegistry, *,
                     dim: int = DEFAULT_SKETCH_DIM, seed: int = DEFAULT_SKETCH_SEED) -> Embedding:
    """The embedding of a member of the tree of `root` (see the module docstring).

    Raises:
        LayerMismatchError: the model lacks the layers the expert reads, or has them in another shape.
        ValueError: the expert cannot read them (NaN or inf weights).
        ProbexError: the layers cannot be read.
    """
    import torch

    task = CONCEPT_TASK if adapter.relation == "adapter" else CLASSES_TASK
    entry = expert_for(registry, root, task, source, adapter)
    if entry is None:  # no expert: the family's default layer for this tree
        layer = adapter.target_layer(task, root, names=adapter.candidate_layers(adapter.checkpoint(source)),
                                     source=source)
        flat, _ = adapter.read_layer(source, layer)
        return Embedding(count_sketch(flat, dim, seed), f"count-sketch {dim} seed {seed}", [layer])
    expert = load_expert(entry.location)
    layers = [name for name, _ in entry.inputs]
    matrix = adapter.read_input(source, entry.inputs, expert.config["conv_layout"], allow_missing=expert.fused)
    x = torch.as_tensor(matrix, dtype=torch.float32)
    with torch.no_grad():
        if task == CONCEPT_TASK:  # forward checks the shape and refuses NaN / inf (ValueError)
            out = expert.eval()(x)[0]
            if not expert.fused:
                return Embedding(out.numpy().astype(np.float32), f"zero-shot expert {entry.public_name}", layers)
            blocks = out * expert.present(x)[0, :, None]  # a module the LoRA lacks: a block of zeros
            return Embedding(blocks.flatten().numpy().astype(np.float32),
                             f"zero-shot expert {entry.public_name}, {blocks.shape[0]} fused modules x {blocks.shape[1]}",
                             layers)
        if not torch.isfinite(x).all():
            raise ValueError("its layers hold NaN or inf weights")
        centred = (x - expert.offset) / expert.scale  # the expert's root centring (identity for an uncentred one)
    return Embedding(count_sketch(centred.numpy(), dim, seed), f"count-sketch {dim} seed {seed}", layers)
