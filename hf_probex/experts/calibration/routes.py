"""What an expert knows for routing: the layers that tell its tree apart, how far its models go, where others begin.

Distances are cosine distances to the root, 1 - cos(W, W_root), averaged over the routing layers. A
fine-tune keeps its root's direction however far it travels in norm (weight decay shrinks a layer, a
large learning rate grows it; a cosine ignores both), while a model of an independently initialised
tree is orthogonal to the root (distance about 1): that is the gap routing needs.

`fit_routing` measures it on a tree's training models (every recipe family the weight set holds) and the
other roots of the same architecture: for each layer the root has in the models' shape, the margin
between the nearest other root and the farthest training model; the best layer of the input-side half
and the best of the output-side half are kept (`ROUTING_LAYERS`), preferring layers that every training
model moved, so that a partial fine-tune that froze its input side still moves them (a model whose
routing layers all equal the root's is taken for the root itself). Without another root of that architecture the other side is
`INDEPENDENT`, the distance of independently initialised weights. The tree's `reach` is the geometric
mean of the farthest model's distance and the nearest other root's: halfway, on a log scale, between
what the tree's own models did and where another tree begins.

Routing names the tree; whether the root is also a model's direct parent is another question: a fine-tune of a
fine-tune sits in the same tree, usually farther from the root, but a grandchild whose parent barely moved looks
like a child. `fit_direct_children` measures, on the training models whose parent is known, how often a model at
most a given distance from the root is one of its direct children (`routing["direct_children"]`), and `infer_card`
names the root as `base_model` from weights only where that share is high enough. The expert also lists its
training models' parents (`routing["members"]`), so that a model whose card names one of them as its base is
followed to the root where the Hub cannot be asked.

LoRA trees route by another fact: a LoRA's update cannot be compared with a root, but every module it
targets reveals the shape that module has in its base. `fit_lora_modules` records every linear module of
the tree's base with its shape (`modules`: the root's 2-D weights under the LoRA adapter's module names,
and every module a training LoRA targets), so that a LoRA targeting any subset of them (self-attention
only, cross-attention only, with or without `to_out`) routes to the tree, whatever layer the expert reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ...shaping import readable
from ...weightsets import WeightRecord
from ..methods.shaping import layer_reader, layer_shapes

ROUTING_LAYERS = 2
#: How sure the training models must make the direct-children share (`fit_direct_children`): a grandchild whose
#: parent moved little sits as near the root as its children, and the share measured on the few dozen training
#: models that near is a point estimate; its lower end at this credibility keeps every held-out grandchild of
#: text-bench and small from the root, and 17 of 18 where the curve never saw the grandchild's recipe family
#: (docs/benchmarks.md, "The root as base_model from weights alone").
DIRECT_SHARE_CREDIBILITY = 0.95
MAX_KNOTS = 256  # points of the direct-children curve an expert keeps, whatever the size of its training set
MAX_MEMBERS = 10_000  # training models whose parents an expert lists (`routing["members"]`)
INDEPENDENT = 1.0  # cosine distance of independently initialised weights: orthogonal
#: The least distance of weights that are not the root's own: a fine-tune of a pretrained root can move a layer
#: less than rounding to bfloat16 does (a 0.2 % change is a cosine distance of 2e-6), so "the root's own" is decided
#: by equality with the root's rounded copies (`is_root_copy`), never by a small distance.
MIN_DISTANCE = 1e-12


def _bfloat16(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to bfloat16 (to nearest, ties to even, as torch rounds) and widened back."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return rounded.view(np.float32)


def is_root_copy(flat: np.ndarray, root: np.ndarray) -> bool:
    """Whether weights are the root's own, as stored in float32, float16 or bfloat16: the root re-saved, or a layer
    a fine-tune froze."""
    root = np.asarray(root, dtype=np.float32)
    if flat.shape != root.shape:
        return False
    with np.errstate(over="ignore"):  # a root value beyond float16's range cannot be its float16 copy
        return any(np.array_equal(flat, copy) for copy in (root, root.astype(np.float16).astype(np.float32), _bfloat16(root)))


def root_distance(flat: np.ndarray, root: np.ndarray) -> float:
    """The cosine distance of weights to the root's: 0 for the root's own (`is_root_copy`), else at least
    `MIN_DISTANCE` however little they moved; NaN for weights holding NaN or inf."""
    if is_root_copy(flat, root):
        return 0.0
    distance = float(cosine_distance(flat, root))
    return max(distance, MIN_DISTANCE) if distance == distance else distance


def cosine_distance(flat: np.ndarray, root: np.ndarray) -> np.ndarray:
    """1 - cos between flattened weights [..., D] and a flattened root [D]; NaN where the weights hold NaN or inf."""
    with np.errstate(invalid="ignore", over="ignore"):  # a NaN distance is the answer for such weights: callers abstain
        norms = np.linalg.norm(flat, axis=-1) * max(float(np.linalg.norm(root)), 1e-12)
        return 1.0 - (flat @ root) / np.maximum(norms, 1e-12)


def _read(path: Path, names: Iterable[str], base: Path | None = None) -> dict[str, np.ndarray]:
    adapter, source = layer_reader(path, "classifier", base)
    return {name: adapter.read_layer(source, name)[0] for name in names}


def layer_distances(records: list[WeightRecord], root: dict[str, np.ndarray]) -> np.ndarray:
    """[n_models, n_layers] cosine distance of each model's layers to the root's (`root`: name -> flat)."""
    names = list(root)
    out = np.empty((len(records), len(names)), dtype=np.float64)
    for i, record in enumerate(records):
        layers = _read(record.path, names, record.base)
        out[i] = [root_distance(layers[name], root[name]) for name in names]
    return out


def fit_lora_modules(records: list[WeightRecord], root: Path | None) -> dict:
    """The `routing` config of a LoRA tree: `modules`, every linear module of its base as [name, [out, in]]
    (from the root's weights where known, named as the LoRAs' adapter names modules, and every module a
    training LoRA targets), sorted by name."""
    adapter, _ = layer_reader(records[0].path, "lora")
    modules: dict[str, tuple[int, ...]] = {}
    if root is not None:  # the base's own weights name every module a LoRA could target
        for name, shape in layer_shapes(root, "classifier").items():
            module = adapter.base_module(name)
            if len(shape) == 2 and module is not None:
                modules[module] = shape
    for record in records:  # and what the LoRAs target, should the root name a module otherwise
        for name, shape in layer_shapes(record.path, "lora").items():
            modules.setdefault(name, shape)
    return {"metric": "module shapes", "modules": [[name, list(shape)] for name, shape in sorted(modules.items())]}


def fit_direct_children(distances: np.ndarray, direct: np.ndarray,
                        credibility: float | None = DIRECT_SHARE_CREDIBILITY) -> dict:
    """How often, at least, a training model at most a distance from the root is one of its direct children: at each
    model's distance d (sorted), the lower end of the one-sided Jeffreys interval at `credibility` of the share of
    direct children among the models at most d away (a few models prove little), at its best over every larger
    distance; `credibility` None: the Laplace-smoothed share itself. Read at a model's distance, it is the precision
    of naming the root as parent for every model at least as near, as each expert's threshold is a precision; it never
    rises with distance. At most `MAX_KNOTS` points are kept (the curve read at the next kept point: never higher)."""
    order = np.argsort(distances, kind="stable")
    at, hits = distances[order], np.cumsum(direct[order])
    last = np.r_[at[1:] != at[:-1], True]  # models at the same distance count together
    seen = np.arange(1, len(at) + 1)
    if credibility is None:
        share = (hits + 1) / (seen + 2)
    else:
        from scipy.stats import beta  # only here: importing scipy.stats would cost every `import hf_probex` 0.7 s

        share = beta.ppf(1 - credibility, hits + 0.5, seen - hits + 0.5)
    share = share[last]
    at, share = at[last], np.maximum.accumulate(share[::-1])[::-1]
    keep = np.unique(np.linspace(0, len(at) - 1, min(len(at), MAX_KNOTS)).round().astype(int))
    return {"distances": [float(x) for x in at[keep]], "share": [float(x) for x in share[keep]],
            "models": int(len(distances)), "direct": int(direct.sum()), "credibility": credibility}


def direct_children_ok(curve: object) -> bool:
    """Whether `curve` is one `fit_direct_children` could have made (an expert's config comes from anywhere): at most
    `MAX_KNOTS` finite, non-decreasing distances, each with a share in [0, 1]."""
    if not isinstance(curve, dict):
        return False
    distances, share = curve.get("distances"), curve.get("share")
    if not (isinstance(distances, list) and isinstance(share, list) and 0 < len(distances) == len(share) <= MAX_KNOTS):
        return False
    if not all(type(x) in (int, float) for x in distances + share):
        return False
    d, p = np.array(distances, dtype=float), np.array(share, dtype=float)
    return bool(np.isfinite(d).all() and (np.diff(d) >= 0).all() and ((p >= 0) & (p <= 1)).all())


def members_ok(members: object) -> bool:
    """Whether `members` is a list of training models' parents an expert may carry: at most `MAX_MEMBERS` pairs of
    repo ids."""
    return isinstance(members, dict) and len(members) <= MAX_MEMBERS and all(
        isinstance(k, str) and isinstance(v, str) and len(k) <= 200 and len(v) <= 200 for k, v in members.items())


def direct_child_share(routing: dict, distance: float) -> float | None:
    """The share `fit_direct_children` measured for a model at `distance` from the root (past the farthest training
    model: the share over all of them); None where the expert did not measure it (its parents unknown, or trained
    before hf-probex measured it)."""
    curve = routing.get("direct_children")
    if not curve:
        return None
    at = int(np.searchsorted(curve["distances"], distance, side="left"))
    return float(curve["share"][min(at, len(curve["share"]) - 1)])


def fit_routing(records: list[WeightRecord], root: Path, other_roots: Iterable[Path] = (),
                root_id: str | None = None) -> tuple[dict, np.ndarray]:
    """(the expert's `routing` config, the root's copy of its routing layers, flattened) for a tree whose root
    weights are at `root`, from its training models `records` and the roots of other trees (see the module
    docstring). Layers of other shapes in the models than in the root (a re-initialised head) never route. With the
    root's Hub id, the records whose `parent` is known measure how often a model is the root's direct child
    (`fit_direct_children`).

    Raises:
        ValueError: no layer of the models has the root's shape (nothing to route by).
    """
    root_shapes = layer_shapes(root, "classifier")
    model_shapes = layer_shapes(records[0].path, "classifier", records[0].base)
    names = [n for n, shape in root_shapes.items() if model_shapes.get(n) == shape and readable(shape)]
    if not names:
        raise ValueError(f"no layer of the models has the shape it has in the root {root}: nothing to route by")
    root_layers = _read(root, names)
    children = layer_distances(records, root_layers)
    others = [(path, layer_shapes(path, "classifier")) for path in other_roots]
    others = [path for path, shapes in others if all(shapes.get(n) == root_shapes[n] for n in names)]
    between = layer_distances([WeightRecord("", str(p), None, (), p, "classifier") for p in others], root_layers) \
        if others else np.full((1, len(names)), INDEPENDENT)
    margin = between.min(0) / np.maximum(children.max(0), 1e-9)
    # the best layer of each part of the network (names run from input to output), preferring layers every
    # training model moved: a fine-tune that froze them would look like the root itself
    moved = children.min(0) > 0
    parts = np.array_split(np.arange(len(names)), min(ROUTING_LAYERS, len(names)))
    chosen = [int(part[np.argmax(np.where(moved[part], margin[part], margin[part] - margin.max() - 1))]) for part in parts]
    distances = children[:, chosen].mean(1)
    farthest = float(distances.max())
    nearest_other = float(between[:, chosen].mean(1).min())
    routing = {
        "layers": [[names[i], list(root_shapes[names[i]])] for i in chosen],
        "metric": "cosine",
        "max_distance": farthest,
        "nearest_other": nearest_other,
        "other_roots": len(others),
        "reach": float(np.sqrt(max(farthest, 1e-9) * nearest_other)),
    }
    known = np.array([r.parent is not None for r in records])
    if root_id is not None and known.any():
        direct = np.array([r.parent == root_id for r in records])
        routing["direct_children"] = fit_direct_children(distances[known], direct[known])
        routing["members"] = {r.model_id: r.parent for r in records if r.parent is not None}
        if len(routing["members"]) > MAX_MEMBERS:
            routing["members"] = dict(list(routing["members"].items())[:MAX_MEMBERS])
    return routing, np.concatenate([root_layers[names[i]] for i in chosen])
