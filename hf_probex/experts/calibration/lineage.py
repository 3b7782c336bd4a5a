"""A tree's lineage calibration, fitted when its expert is trained: how far a member must explain a model's movement
from the root to be its parent.

Every model is read whole against the root: each layer the root and every model read have in the same shape, as its
change from the root divided by the root layer's norm (so a wide embedding does not drown the rest; a layer
initialised anew, such as a new head, is left out), count-sketched into `SKETCH_DIM` dimensions (Euclidean distances
kept, memory bounded whatever the width). A fine-tune of a member is that member plus
a move of its own, so for a model m and each member p that moved less from the root than m did, the share of m's
movement p explains,

    s(p) = (|m - root| - |m - p|) / |p - root|,

is near 1 for m's parent and near or below 0 for a sibling (measured: scripts/bench_parent.py). The best member is
m's parent where its s reaches the tree's threshold, else the root is. The threshold and each side's precision are
fitted per tree on models whose parents are known (`fit_lineage`, run when the tree's expert is trained:
`routing["lineage"]`), as the direct-children share is; a tree's expert without it cannot name parents.

This module is the measurement and its calibration, which the experts carry (`experts.training.harness.train_expert` fits it,
`experts.hub.Expert` checks it); naming each member's parent with a tree's expert is `hf_probex.lineage`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from ...adapters import Adapter, detect, read_through
from ...errors import LayerMismatchError, ProbexError
from ...reading import WeightSource, open_source
from ...vector_index import build_index
from ...weightsets import WeightRecord
from .routes import cosine_distance

__all__ = ["NO_MEMBER", "NO_MEMBER_WHY", "REINITIALISED", "SKETCH_CANDIDATES", "SKETCH_DIM", "LineageCalibration",
           "MovementSketch", "best_members", "fit_lineage", "fit_lineage_calibration", "open_model", "sketch_candidates",
           "sketch_lineage"]

SKETCH_DIM = 1 << 16
#: A layer this far from the root's (cosine distance) was initialised anew (a new head), not fine-tuned: left out.
REINITIALISED = 0.5
#: Candidate parents per model from a table's sketches (`sketch_candidates`), and the width they are found at.
SKETCH_CANDIDATES = 64
CANDIDATE_DIM = 256
MAX_LAYER_ELEMENTS = 50_000_000  # a layer larger than this is left out (no hidden layer of a known family is)
#: A threshold no member reaches: `s` is at most 1 (the triangle inequality), so the root is every model's parent.
NO_MEMBER = 1.01
#: Why such a calibration names no member, as edges and `hf-probex lineage` say it.
NO_MEMBER_WHY = "on its models with known parents the root was right more often than any member it could name"


@dataclass(frozen=True)
class LineageCalibration:
    """Where a member explains enough of a model's movement to be its parent, fitted on one tree's models.

    Attributes:
        threshold: the least `s` of the best member for it to be the parent.
        member_precision: how often the best member was the parent where its `s` reached the threshold (Laplace-smoothed).
        root_precision: how often the root was the parent where no member's did (Laplace-smoothed).
        models: how many models with known parents it was fitted on.
        sketch: what `s` was measured on: None, every layer read whole (`MovementSketch`); else the `embedding_kind`
            of a tree table's count sketches of the expert's input layers (`sketch_lineage`), `layers`.
        layers: the layers those sketches read (the expert's inputs; empty for `sketch` None).
    """

    threshold: float
    member_precision: float
    root_precision: float
    models: int
    sketch: str | None = None
    layers: tuple[str, ...] = ()

    @property
    def names_no_member(self) -> bool:
        """Whether the tree's models with known parents were named best by the root alone (`NO_MEMBER`)."""
        return self.threshold >= NO_MEMBER

    def to_dict(self) -> dict:
        value = asdict(self)
        if self.sketch is None:  # as experts wrote it before table sketches were calibrated
            del value["sketch"], value["layers"]
        else:
            value["layers"] = list(self.layers)
        return value

    @classmethod
    def from_dict(cls, value: object) -> LineageCalibration:
        """Raises ValueError unless `value` is one `to_dict` could have made (an expert's config comes from anywhere)."""
        base = {"threshold", "member_precision", "root_precision", "models"}
        if not isinstance(value, dict) or set(value) not in (base, base | {"sketch", "layers"}):
            raise ValueError("a lineage calibration has threshold, member_precision, root_precision and models "
                             "(and, for a table's sketches, sketch and layers)")
        sketch, layers = value.get("sketch"), value.get("layers", [])
        if "sketch" in value and not (isinstance(sketch, str) and isinstance(layers, list)
                                      and all(isinstance(name, str) for name in layers)):
            raise ValueError("a lineage calibration's sketch is an embedding kind and its layers a list of names")
        numbers = [value[k] for k in ("threshold", "member_precision", "root_precision")]
        if not all(type(x) in (int, float) and np.isfinite(x) for x in numbers) or type(value["models"]) is not int:
            raise ValueError("a lineage calibration holds finite numbers")
        if not (0 <= value["member_precision"] <= 1 and 0 <= value["root_precision"] <= 1 and value["models"] >= 0):
            raise ValueError("a lineage calibration's precisions are in [0, 1]")
        return cls(float(value["threshold"]), float(value["member_precision"]), float(value["root_precision"]),
                   value["models"], sketch, tuple(layers))


def _layers(root: tuple[Adapter, WeightSource]) -> dict[str, tuple[int, ...]]:
    adapter, source = root
    checkpoint = adapter.checkpoint(source)
    shapes = {name: adapter.layer_shape(checkpoint, name) for name in adapter.candidate_layers(checkpoint)}
    return {name: shape for name, shape in shapes.items() if 0 < int(np.prod(shape)) <= MAX_LAYER_ELEMENTS}


def _shape(adapter: Adapter, checkpoint, name: str) -> tuple[int, ...] | None:
    try:
        return adapter.layer_shape(checkpoint, name)
    except LayerMismatchError:
        return None


class MovementSketch:
    """Count sketches of models' per-layer relative change from one root (see the module docstring)."""

    def __init__(self, root: tuple[Adapter, WeightSource], seed: int = 0):
        adapter, source = root
        self.layers = _layers(root)
        self.root = {name: adapter.read_layer(source, name, shape)[0].astype(np.float64).ravel()
                     for name, shape in self.layers.items()}
        rng = np.random.default_rng(seed)
        self._hashes = {name: (rng.integers(0, SKETCH_DIM, size=flat.size), rng.choice([-1.0, 1.0], size=flat.size))
                        for name, flat in self.root.items()}

    def keep_common(self, models: Sequence[tuple[Adapter, WeightSource]]) -> list[str | None]:
        """Read only the layers every one of `models` has in the root's shape (from the headers): distances between
        models are comparable only over the same layers, and a head whose class count varies is no fine-tune's. A
        model with fewer than half of the root's layers in their shapes is of another tree and does not narrow them:
        for each model, None, or why it is not of this tree (the caller leaves it out)."""
        shared = []
        for adapter, source in models:
            checkpoint = adapter.checkpoint(source)
            shared.append({name for name, shape in self.layers.items() if _shape(adapter, checkpoint, name) == shape})
        whys = [None if 2 * len(names) >= len(self.layers) else
                f"it has {len(names)} of the root's {len(self.layers)} layers in their shapes: not of this tree"
                for names in shared]
        for names, why in zip(shared, whys):
            if why is None:
                self.layers = {name: shape for name, shape in self.layers.items() if name in names}
        return whys

    def __call__(self, model: tuple[Adapter, WeightSource]) -> np.ndarray:
        """The model's sketch; layers it has in another shape or initialised anew (a new head) are left out.

        Raises:
            ProbexError: the model shares no layer with the root.
        """
        adapter, source = model
        checkpoint = adapter.checkpoint(source)
        out, read = np.zeros(SKETCH_DIM), 0
        for name, shape in self.layers.items():
            if _shape(adapter, checkpoint, name) != shape:
                continue
            flat = adapter.read_layer(source, name, shape)[0].astype(np.float64).ravel()
            root = self.root[name]
            if not cosine_distance(flat, root) <= REINITIALISED:  # a new head; NaN weights too
                continue
            bucket, sign = self._hashes[name]
            out += np.bincount(bucket, weights=sign * (flat - root) / max(float(np.linalg.norm(root)), 1e-12),
                               minlength=SKETCH_DIM)
            read += 1
        if not read:
            raise ProbexError("it has none of the root's layers in the root's shapes: not of this tree")
        return out


def best_members(sketches: np.ndarray, candidates: np.ndarray | None = None) -> list[tuple[int | None, float | None]]:
    """For each model (a row of `sketches`), the member that explains most of its movement among those that moved
    less, and that share `s`; (None, None) for a model no member moved less than. `candidates` ([models, k] row
    numbers, from a vector index) limits each model's members to its row's; None: every member (all pairs)."""
    squares = (sketches ** 2).sum(1)
    from_root = np.sqrt(squares)
    gram = sketches @ sketches.T if candidates is None else None
    found = []
    for i in range(len(sketches)):
        pool = np.arange(len(sketches)) if candidates is None else np.unique(candidates[i])
        earlier = pool[from_root[pool] < from_root[i]]
        if not earlier.size:
            found.append((None, None))
            continue
        inner = gram[i, earlier] if gram is not None else sketches[earlier] @ sketches[i]
        between = np.sqrt(np.maximum(squares[i] + squares[earlier] - 2 * inner, 0.0))
        shares = (from_root[i] - between) / np.maximum(from_root[earlier], 1e-12)
        best = int(np.argmax(shares))
        found.append((int(earlier[best]), float(shares[best])))
    return found


def fit_lineage_calibration(scores: Sequence[float | None], parent_is_member: Sequence[bool],
                            best_is_parent: Sequence[bool]) -> LineageCalibration:
    """The threshold on `s` that names the most parents right on models whose parents are known (each model: its best
    member's `s`, whether its parent is a member rather than the root, whether the best member is that parent), halfway
    between the neighbouring scores, at the lowest (every scored model names its best member) or above any `s` can
    reach (`NO_MEMBER`: every model gets the root, where naming a member never pays off, e.g. a tree without later
    generations), and each side's Laplace-smoothed precision."""
    rows = list(zip(scores, parent_is_member, best_is_parent))
    values = sorted({s for s in scores if s is not None})
    cuts = [*values[:1], *((a + b) / 2 for a, b in zip(values, values[1:])), NO_MEMBER]

    def outcome(cut: float) -> tuple[int, int, int, int]:
        member = [(is_member and right) for s, is_member, right in rows if s is not None and s >= cut]
        root = [not is_member for s, is_member, _ in rows if s is None or s < cut]
        return sum(member) + sum(root), len(member), sum(member), sum(root)

    threshold = max(cuts, key=lambda cut: outcome(cut)[0])
    _, members, member_right, root_right = outcome(threshold)
    roots = len(rows) - members
    return LineageCalibration(float(threshold), (member_right + 1) / (members + 2), (root_right + 1) / (roots + 2),
                              len(rows))


def open_model(location: str | os.PathLike, *, token: str | bool | None = None, base: str | os.PathLike | None = None,
               local: Mapping[str, str | os.PathLike] | None = None, hub_only: bool = False) -> tuple[Adapter, WeightSource]:
    """(adapter, weights) of a model as lineage reads it: a peft adapter merged onto its base (`base`, else the local
    copy in `local` of the base its files declare, else that base), any other as it is. `hub_only`: `location` is a
    repo id that came from the network (a tree table's row), read from the Hub even where a folder has its name.

    Raises:
        ProbexError: it cannot be read (see `open_source`, `adapters.read_through`).
    """
    source = open_source(location, token=token, local=not hub_only)
    adapter = detect(source)
    if base is None and local:
        base = next((local[b] for b in adapter.declared_bases(source) if b in local), None)
    return read_through(source, adapter, base=base, token=token)


def fit_lineage(records: Sequence[WeightRecord], root: str | os.PathLike, root_id: str) -> LineageCalibration | None:
    """The `LineageCalibration` of a tree from its models whose parents are known (`WeightRecord.parent`: a zoo's, a
    table's declared bases) and among them or the root, each read as `recover_lineage` reads a member, with every one
    of `records` a candidate parent (as every member is there, whether its own parent is known or not); None where
    there are none."""
    ids = {r.model_id for r in records} | {root_id}
    readable, models = [], []
    for record in records:
        try:
            models.append(open_model(record.path, base=record.base))
        except ProbexError:  # a model that cannot be read here calibrates nothing
            continue
        readable.append(record)
    sketch = MovementSketch(open_model(root))
    whys = sketch.keep_common(models)
    members = [r for r, why in zip(readable, whys) if why is None]
    models = [m for m, why in zip(models, whys) if why is None]
    if not any(r.parent in ids for r in members):
        return None
    try:
        found = best_members(np.stack([sketch(model) for model in models]))
    except ProbexError:  # no layer the root and every model share: nothing to measure parents by
        return None
    return _calibrated(members, found, root_id)


def _calibrated(members: Sequence[WeightRecord], found: Sequence[tuple[int | None, float | None]], root_id: str,
                **measured) -> LineageCalibration:
    """`fit_lineage_calibration` on the models of `members` whose parents are among them or the root (`found`:
    each member's best member and share); `measured` says what the shares were measured on."""
    ids = {r.model_id for r in members} | {root_id}
    known = [(r, best, share) for r, (best, share) in zip(members, found) if r.parent in ids]
    calibration = fit_lineage_calibration(
        [share for _, _, share in known], [r.parent != root_id for r, _, _ in known],
        [best is not None and members[best].model_id == r.parent for r, best, _ in known])
    return replace(calibration, **measured)


def sketch_candidates(sketches: np.ndarray, k: int = SKETCH_CANDIDATES, kind: str | None = None) -> np.ndarray:
    """Each row's `k` candidate parents among the rows of `sketches` (count sketches of movements from the root):
    the rows nearest by cosine in the sketch folded to `CANDIDATE_DIM` numbers (a count sketch of a count sketch),
    from a vector index (`vector_index.build_index` of `kind`; default exact up to its row limit, HNSW past it). A
    parent's movement is most of its child's, so it is near; an unrelated fine-tune's is nearly orthogonal."""
    rows, dim = sketches.shape
    folded = sketches.reshape(rows, -1, CANDIDATE_DIM).sum(1) if dim % CANDIDATE_DIM == 0 and dim > CANDIDATE_DIM \
        else sketches
    unit = folded / np.maximum(np.linalg.norm(folded, axis=1, keepdims=True), 1e-30)
    return build_index(unit.astype(np.float32), kind).search_many(unit, k + 1)[0]


def sketch_lineage(records: Sequence[WeightRecord], sketches: np.ndarray, root_id: str, kind: str,
                   layers: Sequence[str]) -> LineageCalibration | None:
    """The `LineageCalibration` of a tree table's sketches: as `fit_lineage`, with each model's table row (`sketches`,
    [models, dim] in the order of `records`: its movement from the root, count-sketched as a scan sketches the
    expert's input layers `layers`, `kind` its `embedding_kind`) instead of its whole weights, and each model's
    candidate parents from a vector index (`sketch_candidates`), as lineage from a table reads them. None where no
    model's parent is known."""
    ids = {r.model_id for r in records} | {root_id}
    if not len(records) or not any(r.parent in ids for r in records):
        return None
    found = best_members(sketches, sketch_candidates(sketches))
    return _calibrated(records, found, root_id, sketch=kind, layers=tuple(layers))
