"""Tree routing: which known tree (root) a model belongs to, from its declared lineage and its weights.

1. Declared lineage: the bases the model's files name (card `base_model`, adapter_config.json
   `base_model_name_or_path`, legacy config `_name_or_path`), each walked up through its parents'
   cards on the Hub until a root that has an expert (at most `MAX_LINEAGE_DEPTH` steps).
2. Weights: for full models, the relative distance ||W - W_root|| / ||W_root|| of one layer to the
   root of every expert that reads layers of these shapes: the expert's routing layer (the first layer
   it reads; twin trees' experts share it, so it is read once), whose root copy travels with the expert
   as its centring offset. The nearest root wins when it is within reach of its tree (at most
   `REACH` times the farthest training model). The confidence is `CERTAIN` when the model is as near
   its root as the tree's training models are and farther from every other root than those trees'
   training models; otherwise it is how much nearer the winner is than the runner-up, d2 / (d1 + d2).
   A distance of zero means the model is the root itself. LoRA weights are updates, not weights, so
   they cannot be compared with a root: a LoRA routes by declared lineage, or by being the only known
   LoRA tree with its modules' shapes.

A declared lineage that the weights contradict is a finding (`Route.finding`); no lineage and nothing
close enough: no route, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .adapters import Adapter
from .cards import CardError, metadata_of
from .errors import LayerMismatchError, ProbexError
from .experts.registry import ExpertEntry, ExpertRegistry, load_expert
from .experts.shaping import relative_distance
from .reading import WeightSource, looks_like_repo_id, open_source

MAX_LINEAGE_DEPTH = 8
REACH = 2.0  # a model farther than REACH x the farthest training model of a tree is not of that tree
CERTAIN = 0.99


@dataclass
class Route:
    """Where a model was routed: its tree root (None: abstained) and why."""

    root: str | None
    confidence: float
    evidence: str
    declared: list[str] = field(default_factory=list)  # the direct bases the files declare
    lineage: list[str] = field(default_factory=list)  # declared base -> ... -> root, as walked
    distances: dict[str, float] = field(default_factory=dict)  # root -> relative distance of the target layer
    finding: str | None = None  # a declared lineage the weights contradict
    reason: str | None = None  # why there is no route
    is_root: bool = False  # the model's layer is the root's own: it is the root (it has no base)


def card_bases(readme: str | None) -> list[str]:
    """The `base_model` ids a card declares (none for no card or unreadable metadata)."""
    if not readme:
        return []
    try:
        value = metadata_of(readme).get("base_model")
    except CardError:
        return []
    values = value if isinstance(value, list) else [value]
    return [v for v in values if looks_like_repo_id(v)]


def declared_bases(source: WeightSource, adapter: Adapter) -> list[str]:
    """The direct bases the model declares: its card first, then its adapter / config files."""
    return list(dict.fromkeys([*card_bases(source.read_text("README.md")), *adapter.declared_bases(source)]))


def walk_lineage(base: str, roots: set[str], *, token: str | bool | None = None) -> list[str]:
    """`base` and its ancestors through their cards' `base_model`, up to the first of `roots` (or as far as
    the Hub answers: a parent that cannot be read ends the walk)."""
    chain = [base]
    while chain[-1] not in roots and len(chain) <= MAX_LINEAGE_DEPTH:
        try:
            parents = card_bases(open_source(chain[-1], token=token).read_text("README.md"))
        except ProbexError:
            break
        if not parents or parents[0] in chain:
            break
        chain.append(parents[0])
    return chain


def _layer_matches(source: WeightSource, adapter: Adapter, entry: ExpertEntry) -> bool:
    """Whether the model has every layer the expert reads, in the same shapes (from the header only)."""
    try:
        checkpoint = adapter.checkpoint(source)
        return all(adapter.layer_shape(checkpoint, name) == tuple(shape) for name, shape in entry.inputs)
    except LayerMismatchError:
        return False


def _routing_input(expert, entry: ExpertEntry) -> tuple[tuple, np.ndarray]:
    """(the inputs routing reads, the root's part of the expert's offset for them): the expert's routing layer,
    or every layer it reads when it names none (experts saved before routing named its layer)."""
    offset = expert.offset.numpy().reshape(-1)
    if "layer" not in expert.routing or len(entry.inputs) == 1:
        return entry.inputs, offset
    first = entry.inputs[0]  # the routing layer is the first the expert reads (`harness.routing_layer`)
    return (first,), offset[: int(np.prod(first[1]))]


def weight_distances(source: WeightSource, adapter: Adapter, entries: list[ExpertEntry]) -> dict[str, tuple[float, float]]:
    """root -> (relative distance of the model's routing layer to the root's, the farthest training model's),
    for every root-centred expert among `entries` whose layers the model has in the same shapes. Experts
    of twin trees share their routing layer, which the source reads once."""
    found: dict[str, tuple[float, float]] = {}
    for entry in entries:
        if entry.root is None or entry.root in found or not _layer_matches(source, adapter, entry):
            continue
        expert = load_expert(entry.location)
        if not expert.config["centred"]:
            continue
        inputs, root = _routing_input(expert, entry)
        distance = float(relative_distance(adapter.read_input(source, inputs, expert.config["conv_layout"]).reshape(-1), root))
        found[entry.root] = (distance, float(expert.routing.get("max_root_distance", np.inf)))
    return found


def route(source: WeightSource, adapter: Adapter, registry: ExpertRegistry, *,
          token: str | bool | None = None) -> Route:
    """Route one model to a tree root of `registry` (see the module docstring)."""
    kind = "lora" if adapter.relation == "adapter" else None
    entries = [e for e in registry.entries if e.adapter == kind]
    roots = {e.root for e in entries if e.root}
    declared = declared_bases(source, adapter)
    lineage = next((chain for chain in (walk_lineage(b, roots, token=token) for b in declared) if chain[-1] in roots),
                   [])
    if kind == "lora":
        if lineage:
            return Route(lineage[-1], 1.0, f"declared lineage {' -> '.join(lineage)}", declared, lineage)
        shaped = sorted({e.root for e in entries if e.root and _layer_matches(source, adapter, e)})
        if len(shaped) == 1:
            return Route(shaped[0], 0.5, "the only known LoRA tree whose modules have these shapes", declared)
        why = "no LoRA tree expert reads modules of these shapes" if not shaped else \
            f"several LoRA trees fit its shapes ({', '.join(shaped)}) and it declares no base"
        return Route(None, 0.0, "", declared, reason=why)

    distances = weight_distances(source, adapter, entries)
    measured = {root: d for root, (d, _) in distances.items()}
    if not distances:
        if lineage:
            return Route(lineage[-1], 1.0, f"declared lineage {' -> '.join(lineage)}", declared, lineage)
        return Route(None, 0.0, "", declared, reason="no expert reads a layer of this model's shape")
    ranked = sorted(measured, key=measured.get)
    best = ranked[0]
    d_best, reach = distances[best][0], REACH * distances[best][1]
    if d_best < 1e-7:
        return Route(best, CERTAIN, f"weights: its target layer is {best}'s own", declared, lineage, measured,
                     is_root=True)
    typical = d_best <= distances[best][1] and all(d > far for root, (d, far) in distances.items() if root != best)
    confidence = CERTAIN if typical or len(ranked) == 1 else float(measured[ranked[1]] / (d_best + measured[ranked[1]]))
    evidence = (f"weights: relative distance of the target layer {d_best:.3f} to {best}"
                + (f" vs {measured[ranked[1]]:.3f} to {ranked[1]}" if len(ranked) > 1 else ""))
    if lineage:
        if lineage[-1] != best and d_best < reach:
            finding = (f"declares {' -> '.join(lineage)}, but its weights are nearer {best} ({d_best:.3f}) than "
                       f"{lineage[-1]} ({measured.get(lineage[-1], float('nan')):.3f})")
            return Route(best, confidence, evidence, declared, lineage, measured, finding=finding)
        return Route(lineage[-1], 1.0, f"declared lineage {' -> '.join(lineage)}; " + evidence, declared, lineage,
                     measured)
    if d_best > reach:
        return Route(None, 0.0, "", declared, distances=measured,
                     reason=f"the nearest known root, {best}, is at relative distance {d_best:.3f}, beyond its tree's "
                            f"reach ({reach:.3f})")
    return Route(best, confidence, evidence, declared, distances=measured)
