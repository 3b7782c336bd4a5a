"""Tree routing: which known tree (root) a model belongs to, from its declared lineage and its weights.

1. Declared lineage: the bases the model's files name (card `base_model`, adapter_config.json
   `base_model_name_or_path`, legacy config `_name_or_path`), each walked up through its parents'
   cards on the Hub until a root that has an expert (at most `MAX_LINEAGE_DEPTH` steps).
2. Weights: for full models, the cosine distance to the root of every expert whose routing layers
   (`hf_probex.experts.calibration.routes`: chosen by the margin between the tree's farthest training model over
   every recipe family and the nearest other root) the model has in the same shapes; the root's copy
   travels with the expert. Cosines ignore a layer's norm, so dtype, shards, weight decay and the size of
   the fine-tune do not matter, and independently initialised trees sit near 1. The nearest root wins
   when the model is within that tree's reach. The confidence is `CERTAIN` as near as the tree's
   training models, falling to `UNCONFIRMED` at its reach. Routing layers equal to the root's mean the
   model is the root itself. LoRA weights are updates, not weights, so they cannot be compared with a
   root: a LoRA routes by declared lineage, checked against its modules' shapes, or by being the only
   known LoRA tree whose base has every module it targets in the shape it has there (the expert's
   `routing.modules`, `experts.calibration.routes.fit_lora_modules`): a LoRA of self-attention only, of
   cross-attention only or of every projection routes alike, whichever module the expert reads.

Weights name a model's tree, not its parent: `Route.direct_share` says how often a training model of the tree this
near its root is one of the root's direct children (`experts.calibration.routes.fit_direct_children`), which is what naming
the root as `base_model` from weights alone rests on.

A declared lineage the weights contradict, or cannot confirm (beyond every reach, or no expert routes
by this model's shapes), and a declared base hf_probex cannot place while the weights sit in a known
tree, are findings (`Route.finding`) with a lowered confidence, never a silent 1.0. No lineage and
nothing close enough: no route, with the reason.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .adapters import Adapter, read_through
from .cards import card_bases
from .errors import LayerMismatchError, ProbexError
from .experts.registry import ExpertEntry, ExpertRegistry, load_expert
from .experts.calibration.routes import direct_child_share, root_distance
from .merged import MergedSource
from .reading import WeightSource, looks_like_repo_id, open_source

MAX_LINEAGE_DEPTH = 8
CERTAIN = 0.99
UNCONFIRMED = 0.5  # a declared lineage the weights cannot check, or a model at the edge of a tree's reach


@dataclass
class Route:
    """Where a model was routed: its tree root (None: abstained) and why."""

    root: str | None
    confidence: float
    evidence: str
    declared: dict[str, str] = field(default_factory=dict)  # the direct bases the files declare -> where
    lineage: list[str] = field(default_factory=list)  # declared base -> ... -> root, as walked
    distances: dict[str, float] = field(default_factory=dict)  # root -> cosine distance on its routing layers
    finding: str | None = None  # a declared lineage the weights contradict or cannot confirm
    reason: str | None = None  # why there is no route
    is_root: bool = False  # the model's layer is the root's own: it is the root (it has no base)
    direct_share: float | None = None  # how often a model this near the root is its direct child (routes.direct_child_share)


def declared_bases(source: WeightSource, adapter: Adapter) -> dict[str, str]:
    """The direct bases the model declares, each with where: its card first, then its adapter / config files."""
    declared = dict.fromkeys(card_bases(source.read_text("README.md")), "README.md base_model")
    for base, where in adapter.declared_bases(source).items():
        declared.setdefault(base, where)
    return declared


def route_through(source: WeightSource, adapter: Adapter, registry: ExpertRegistry, *, token: str | bool | None = None,
                  base: str | None = None) -> tuple[Adapter, WeightSource, Route]:
    """(reader, weights, route) of a model as `infer_card` reads it: a peft adapter of a full model merged onto its
    base (`adapters.read_through`; `base` overrides the one its files declare) and routed by the merged weights, with
    the bases the adapter's own files declare; any other model as it is. An adapter leaves most layers as its base has
    them, so it is of its base's tree, never the root itself.

    Raises:
        ProbexError: the adapter's base cannot be read, or does not fit it (`BaseModelError`, `LayerMismatchError`).
    """
    reader, weights = read_through(source, adapter, base=base, token=token)
    found = route(weights, reader, registry, token=token, declared=declared_bases(source, adapter))
    found.is_root = found.is_root and weights is source
    return reader, weights, found


def _declared_card(name: str, local: bool, token: str | bool | None) -> str | None:
    """The card of a base some file declares: a repo id is read from the Hub, never from a folder of that name in the
    working directory; an absolute path only for a local model (`local`) and only where it is a model folder, as a
    peft adapter's base is followed (`adapters.peft_model`). Else nothing is read (None)."""
    if looks_like_repo_id(name, namespaced=False):
        return open_source(name, token=token, local=False).read_text("README.md")
    path = Path(name)
    try:
        is_model = local and path.is_absolute() and (path / "config.json").is_file()
    except (OSError, ValueError):  # too long, a NUL byte, no permission
        is_model = False
    return open_source(path).read_text("README.md") if is_model else None


def walk_lineage(base: str, roots: set[str], *, token: str | bool | None = None, local: bool = False) -> list[str]:
    """`base` and its ancestors through their cards' `base_model`, up to the first of `roots` (or as far as
    the Hub answers: a parent that cannot be read ends the walk). `local`: the bases were declared by a local model,
    whose absolute model-folder paths may be followed (`_declared_card`)."""
    chain = [base]
    while chain[-1] not in roots and len(chain) <= MAX_LINEAGE_DEPTH:
        try:
            parents = card_bases(_declared_card(chain[-1], local, token))
        except ProbexError:
            break
        if not parents or parents[0] in chain:
            break
        chain.append(parents[0])
    return chain


def walk_members(base: str, members: dict[str, str], root: str) -> list[str]:
    """`base` and its ancestors through a tree's training models' parents (`TreeDistance.members`), up to `root`;
    empty where `base` is not followed to it."""
    chain = [base]
    while chain[-1] != root and chain[-1] in members and len(chain) <= MAX_LINEAGE_DEPTH:
        chain.append(members[chain[-1]])
    return chain if chain[-1] == root and len(chain) > 1 else []


def has_layers(source: WeightSource, adapter: Adapter, layers) -> bool:
    """Whether the model has every one of `layers` ((name, shape) pairs) in the same shape (from the header only)."""
    try:
        checkpoint = adapter.checkpoint(source)
        return all(adapter.layer_shape(checkpoint, name) == tuple(shape) for name, shape in layers)
    except LayerMismatchError:
        return False


def lora_targets(source: WeightSource, adapter: Adapter) -> dict[str, tuple[int, ...]]:
    """The linear modules a LoRA targets and the shape of each update (the base's shape of that module), from the
    header only. Modules whose factors are not a linear pair (a convolution LoRA) reveal no shape and are left out."""
    checkpoint = adapter.checkpoint(source)
    targets = {}
    for name in adapter.candidate_layers(checkpoint):
        try:
            targets[name] = adapter.layer_shape(checkpoint, name)
        except LayerMismatchError:
            continue
    return targets


def fits_lora_tree(source: WeightSource, adapter: Adapter, entry: ExpertEntry,
                   targets: dict[str, tuple[int, ...]]) -> bool:
    """Whether a LoRA (`targets`: its modules and their shapes, `lora_targets`) fits the tree of `entry`: every
    module it targets is one of the base's, in the same shape (`entry.modules`); an expert without them
    (trained before routing by modules) checks the modules it reads."""
    if not entry.modules:
        return has_layers(source, adapter, entry.inputs)
    known = dict(entry.modules)
    return bool(targets) and all(known.get(name) == shape for name, shape in targets.items())


@dataclass(frozen=True)
class TreeDistance:
    """A model's cosine distance to one tree's root on that tree's routing layers, and the tree's scale."""

    distance: float  # averaged over the routing layers
    per_layer: tuple[float, ...]
    max_distance: float  # the farthest training model's
    reach: float  # beyond it, not of this tree
    direct_share: float | None = None  # how often a training model this near the root is its direct child
    members: dict[str, str] = field(default_factory=dict)  # the tree's training models -> their parents (routes.fit_routing)

    @property
    def is_root(self) -> bool:
        return max(self.per_layer) == 0.0  # every routing layer the root's own (experts.calibration.routes.is_root_copy)


def weight_distances(source: WeightSource, adapter: Adapter, entries: list[ExpertEntry]) -> dict[str, TreeDistance]:
    """root -> the model's `TreeDistance` to it, for every expert among `entries` that carries routing layers
    (`hf_probex.experts.calibration.routes`) the model has in the same shapes. A layer several experts route by (twin
    trees') is read once. Experts that cannot be loaded are skipped (with a warning): one bad expert must
    not stop the others."""
    found: dict[str, TreeDistance] = {}
    for entry in entries:
        if entry.root is None or entry.root in found or not entry.routing_layers:
            continue
        if not has_layers(source, adapter, entry.routing_layers):
            continue
        try:
            expert = load_expert(entry.location)
        except Exception as err:  # a damaged or outdated expert: routing goes on with the others
            warnings.warn(f"skipping the expert {entry.location}: {err}", stacklevel=2)
            continue
        root, start, per_layer = expert.route_root.numpy(), 0, []
        for name, shape in entry.routing_layers:
            flat = adapter.read_layer(source, name, tuple(shape))[0]
            per_layer.append(root_distance(flat, root[start:start + flat.size]))
            start += flat.size
        distance = float(np.mean(per_layer))
        found[entry.root] = TreeDistance(distance, tuple(per_layer), expert.routing["max_distance"],
                                         expert.routing["reach"], direct_child_share(expert.routing, distance),
                                         expert.routing.get("members", {}))
    return found


def _weights_confidence(best: TreeDistance, runner_up: TreeDistance | None) -> float:
    """CERTAIN as near as the tree's own training models, down to UNCONFIRMED at the tree's reach (on a log scale);
    no more than the runner-up allows when it is within its own reach too."""
    if best.distance <= best.max_distance:
        confidence = CERTAIN
    else:
        along = np.log(best.distance / best.max_distance) / max(np.log(best.reach / best.max_distance), 1e-9)
        confidence = CERTAIN - (CERTAIN - UNCONFIRMED) * float(np.clip(along, 0.0, 1.0))
    if runner_up is not None and runner_up.distance <= runner_up.reach:
        confidence = min(confidence, runner_up.distance / (best.distance + runner_up.distance))
    return confidence


def route(source: WeightSource, adapter: Adapter, registry: ExpertRegistry, *,
          token: str | bool | None = None, declared: dict[str, str] | None = None) -> Route:
    """Route one model to a tree root of `registry` (see the module docstring). `declared`: the bases the model
    declares, when its files are not `source`'s (a peft adapter read merged onto its base: the adapter's, not the
    base's); default `declared_bases(source, adapter)`."""
    kind = "lora" if adapter.relation == "adapter" else None
    entries = [e for e in registry.entries if e.adapter == kind]
    roots = {e.root for e in entries if e.root}
    declared = declared_bases(source, adapter) if declared is None else declared
    local = source.local_folder is not None
    lineage = next((chain for chain in (walk_lineage(b, roots, token=token, local=local) for b in declared)
                    if chain[-1] in roots), [])
    walked = f"declared lineage {' -> '.join(lineage)}"
    if kind == "lora":
        targets = lora_targets(source, adapter) if roots else {}  # read once, compared with every LoRA tree's modules
        shaped = sorted({e.root for e in entries if e.root and fits_lora_tree(source, adapter, e, targets)})
        if lineage:
            if lineage[-1] in shaped:
                return Route(lineage[-1], 1.0, walked, declared, lineage)
            return Route(lineage[-1], UNCONFIRMED, walked, declared, lineage,
                         finding=f"{walked}, but the modules it targets do not have the shapes they have in that base")
        if len(shaped) == 1:
            return Route(shaped[0], 0.5, "the only known LoRA tree whose base has every module it targets, in "
                                         "these shapes", declared)
        why = "no known LoRA tree's base has the modules it targets in these shapes" if not shaped else \
            f"several LoRA trees fit its shapes ({', '.join(shaped)}) and it declares no base"
        return Route(None, 0.0, "", declared, reason=why)

    found = weight_distances(source, adapter, entries)
    broken = sorted(root for root, d in found.items() if not np.isfinite(d.distance))
    found = {root: d for root, d in found.items() if root not in broken}
    measured = {root: d.distance for root, d in found.items()}
    if broken and not found and not lineage:
        return Route(None, 0.0, "", declared, reason=f"the layers that would route it to {', '.join(broken)} hold NaN or "
                                                     f"inf weights")
    if not found:
        if lineage:
            why = ("its layers that would route it hold NaN or inf weights" if broken else
                   "no expert of that tree routes by layers of this model's shapes")
            return Route(lineage[-1], UNCONFIRMED, walked, declared, lineage, finding=f"{walked} cannot be checked: {why}")
        return Route(None, 0.0, "", declared, reason="no expert reads a layer of this model's shape")
    ranked = sorted(found, key=measured.get)
    best = ranked[0]
    near = found[best]
    if near.is_root:
        # the root itself, or an adapter that left the root's routing layers as they are: of the root directly
        return Route(best, CERTAIN, f"weights: its routing layers are {best}'s own", declared, lineage, measured, is_root=True,
                     direct_share=1.0)
    runner_up = found[ranked[1]] if len(ranked) > 1 else None
    if declared and not lineage:  # a base the Hub cannot follow may be one of the tree's training models
        lineage = next((chain for chain in (walk_members(b, near.members, best) for b in declared) if chain), [])
        if lineage:
            walked = (f"declared lineage {' -> '.join(lineage)} (through the parents of {best}'s expert's training "
                      f"models)")
    evidence = (f"weights: cosine distance {near.distance:.3f} to {best} (its tree's models reach {near.max_distance:.3f}, "
                f"its reach {near.reach:.3f})" + (f"; {runner_up.distance:.3f} to {ranked[1]}" if runner_up else ""))
    within = near.distance <= near.reach
    direct_share = near.direct_share
    if isinstance(source, MergedSource):  # an adapter's parent is the base it is read through: is that the root?
        base = weight_distances(source.base, adapter, [e for e in entries if e.root == best]).get(best)
        if base is not None and base.is_root:
            direct_share, evidence = 1.0, f"{evidence}; the base it is read through is {best} itself"
    if lineage:
        if not within:
            return Route(lineage[-1], UNCONFIRMED, f"{walked}; " + evidence, declared, lineage, measured,
                         finding=f"{walked}, but its weights are beyond the reach of every known tree (nearest: {best}, "
                                 f"{near.distance:.3f} > {near.reach:.3f}): the weights do not confirm it")
        if lineage[-1] != best:
            finding = (f"declares {' -> '.join(lineage)}, but its weights sit in the tree of {best} ({near.distance:.3f}) "
                       f"rather than {lineage[-1]} ({measured.get(lineage[-1], float('nan')):.3f})")
            return Route(best, _weights_confidence(near, runner_up), evidence, declared, lineage, measured, finding=finding)
        return Route(best, 1.0, f"{walked}; " + evidence, declared, lineage, measured)
    if not within:
        return Route(None, 0.0, "", declared, distances=measured,
                     reason=f"the nearest known root, {best}, is at cosine distance {near.distance:.3f}, beyond its tree's "
                            f"reach ({near.reach:.3f})")
    finding = None
    if declared:  # it names a base hf_probex cannot follow to a known root, yet its weights sit in a known tree
        finding = (f"declares {', '.join(declared)}, which hf_probex cannot follow to a known root; its weights sit in "
                   f"the tree of {best} ({near.distance:.3f} <= reach {near.reach:.3f})")
    return Route(best, _weights_confidence(near, runner_up), evidence, declared, distances=measured, finding=finding,
                 direct_share=direct_share)
