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
  its scale, for a root-centred expert; as stored otherwise): `hf_probex.sketch.count_sketch`, a fixed sparse random
  projection the same on every machine, of `DEFAULT_SKETCH_DIM` numbers, enough for lineage to name a member's
  parent from the table alone (`hf_probex.lineage.lineage_from_sketches`); it costs one pass over the layer.

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
from ..sketch import DEFAULT_SKETCH_DIM, DEFAULT_SKETCH_SEED, count_sketch, sketch_kind

__all__ = ["DEFAULT_SKETCH_DIM", "EMBEDDING_FORMAT", "Embedding", "count_sketch", "expert_kind", "kind_fingerprint", "member_embedding"]

#: How embeddings are made (part of the scan's settings digest: rows of an older format are read again).
#: 2: LoRAs' `Expert.search_vectors`, with the expert's fingerprint in `embedding_kind`; 3: a peft adapter of a full
#: model embedded (and routed) merged onto its base; 4: count sketches of 2,048 numbers (lineage reads them).
EMBEDDING_FORMAT = 4


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
        return Embedding(count_sketch(flat, dim, seed), sketch_kind(dim, seed), [layer])
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
    return Embedding(count_sketch(centred.numpy(), dim, seed), sketch_kind(dim, seed), layers)
