"""A member's embedding in the tree table: the zero-shot expert's for LoRA trees, a count sketch otherwise.

- LoRA trees with a zero-shot expert: the expert's `search_vectors` of the input layer(s) as the expert reads
  them (`Adapter.read_input`): a text's `search_vectors(text=...)` scores it by an inner product that is the
  expert's own cosine score (`Expert.predict`), so a vector index answers text search (`hf_probex.search`). An
  expert of one module gives a unit-norm vector; one that fuses k modules (`Expert.fused`) gives k blocks, one
  per module in that module's own space, in the order of `embedding_layers`, each unit-norm divided by how many
  modules the LoRA has, and zeros for a module it lacks (so the inner product is the mean of the present
  modules' cosines). `embedding_kind` names the expert and its `Expert.fingerprint` in brackets: search uses
  only vectors of the expert it embeds the query with (`expert_kind`, `kind_fingerprint`).
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
import re
from dataclasses import dataclass, field

import numpy as np

from ..adapters import CLASSES_TASK, CONCEPT_TASK, Adapter
from ..experts.hub import Expert
from ..experts.registry import ExpertRegistry, load_expert
from ..infer import expert_for
from ..reading import WeightSource

__all__ = ["DEFAULT_SKETCH_DIM", "EMBEDDING_FORMAT", "Embedding", "count_sketch", "expert_kind", "kind_fingerprint", "member_embedding"]

DEFAULT_SKETCH_DIM = 128
#: How embeddings are made (part of the scan's settings digest: rows of an older format are read again).
#: 2: LoRAs' `Expert.search_vectors`, with the expert's fingerprint in `embedding_kind`; 3: a peft adapter of a full
#: model embedded (and routed) merged onto its base.
EMBEDDING_FORMAT = 3
DEFAULT_SKETCH_SEED = 0


@dataclass
class Embedding:
    """A member's embedding, what it is (`kind`), and the layers it read."""

    vector: np.ndarray
    kind: str
    layers: list[str] = field(default_factory=list)


#: `embedding_kind` of a zero-shot expert's search vectors: "zero-shot expert NAME [FINGERPRINT]..." (`expert_kind`).
_FINGERPRINT = re.compile(r"^zero-shot expert .*\[([0-9a-f]{16})\]")


def expert_kind(expert: Expert, name: str) -> str:
    """The `embedding_kind` of `expert`'s search vectors: its public name, fingerprint and, fused, its modules."""
    fused = f", {len(expert.config['inputs'])} fused modules x {expert.net.out_dim}" if expert.fused else ""
    return f"zero-shot expert {name} [{expert.fingerprint()}]{fused}"


@functools.lru_cache(maxsize=16)
def _loaded_expert_kind(location: str, name: str) -> str:
    """`expert_kind` of the expert `load_expert` keeps for `location`: hashed once per process, not once per member."""
    return expert_kind(load_expert(location), name)


def kind_fingerprint(kind: str | None) -> str | None:
    """The expert fingerprint an `embedding_kind` names (None: a count sketch, or a table older than fingerprints)."""
    found = _FINGERPRINT.match(kind or "")
    return found[1] if found else None


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

    from ..experts.methods.models import as_tensor

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
    x = as_tensor(matrix)
    if task == CONCEPT_TASK:  # the expert's forward checks the shape and refuses NaN / inf (ValueError)
        return Embedding(expert.search_vectors(matrix)[0].astype(np.float32),
                         _loaded_expert_kind(entry.location, entry.public_name), layers)
    with torch.no_grad():
        if not torch.isfinite(x).all():
            raise ValueError("its layers hold NaN or inf weights")
        centred = (x - expert.offset) / expert.scale  # the expert's root centring (identity for an uncentred one)
    return Embedding(count_sketch(centred.numpy(), dim, seed), f"count-sketch {dim} seed {seed}", layers)
