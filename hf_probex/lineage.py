"""A tree's edges from its members' weights: which member each model was fine-tuned from (`hf-probex lineage`).

Each member is read whole against the root and count-sketched (`hf_probex.experts.calibration.lineage`: the measurement, the
share s(p) of a model's movement from the root that a member p explains, and the tree's calibration of it, which
its expert carries). The best member is a model's parent where its s reaches the tree's threshold, else the root
is; `lineage_calibration` finds that threshold in a tree's expert (`routing["lineage"]`, fitted when it was
trained), and a tree's expert without it cannot name parents.

A tree too large to read whole (past `MAX_MEMBERS`) is read from its table instead: `lineage_from_sketches` takes
each member's row (a count sketch of its movement in the expert's input layers, `hf_probex.scan.embedding`), finds
each member's candidate parents in a vector index and measures s on their sketches, with the expert's calibration
of exactly those sketches (`routing["sketch_lineage"]`).

The measurement's names (`LineageCalibration`, `MovementSketch`, `open_model`, `SKETCH_DIM`, ...) stay importable
from here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping, Sequence

import numpy as np

from .bounded import load_json
from .errors import ProbexError
from .experts.calibration.lineage import (
    NO_MEMBER, NO_MEMBER_WHY, REINITIALISED, SKETCH_DIM, LineageCalibration, MovementSketch, best_members, fit_lineage,
    fit_lineage_calibration, open_model, sketch_candidates,
)
from .experts.registry import ExpertRegistry, load_expert
from .suggestions import Edge

__all__ = ["MAX_MEMBERS", "NO_MEMBER", "NO_MEMBER_WHY", "REINITIALISED", "SKETCH_DIM", "Edge", "LineageCalibration",
           "MovementSketch", "best_members", "fit_lineage", "fit_lineage_calibration", "lineage_calibration", "lineage_from_sketches",
           "open_model", "read_edges", "recover_lineage"]

#: Members read at once: each keeps a sketch of 0.5 MB and every pair is compared (a larger tree's parents come from
#: its table's sketches, `lineage_from_sketches`).
MAX_MEMBERS = 2_000
#: An edges file (`hf-probex lineage --json`) longer than this is not one of at most `MAX_MEMBERS` edges.
MAX_EDGES_BYTES = 4 * 2**20


def recover_lineage(root: str | os.PathLike, members: Sequence[str | os.PathLike], calibration: LineageCalibration, *,
                    root_id: str | None = None, token: str | bool | None = None,
                    progress: Callable[[str], None] | None = None, from_hub: Collection[str] = (),
                    local: Mapping[str, str | os.PathLike] | None = None) -> list[Edge]:
    """Each member's parent (the root or another member) from the weights, as `calibration` decides (see the module
    docstring); the root is named `root_id` where given (its weights may be a local copy, which an adapter declaring
    `root_id` as its base is read on). `local` maps other repo ids to local copies an adapter's declared base is read
    from (a member's folder, offline). The members in `from_hub` came from the network (a tree table, a Hub listing):
    they are read as Hub repo ids only, never as a folder of that name here. A member that cannot be
    read, or is not of the root's shapes, is left out with a line through `progress`; one bad repo never breaks the
    others.

    Raises:
        ProbexError: the root cannot be read, or more than `MAX_MEMBERS` members are given.
    """
    if len(members) > MAX_MEMBERS:
        raise ProbexError(f"{len(members):,} members: hf_probex reads at most {MAX_MEMBERS:,} at once (each is read "
                          f"whole and compared with every other); name the parents from the tree table's sketches instead "
                          f"(hf-probex lineage ROOT --table TABLE --sketches), or pass one branch of the tree")
    sketch = MovementSketch(open_model(root, token=token))
    bases = {**(local or {}), **({root_id: root} if root_id else {})}
    opened = {}
    for member in members:
        try:
            opened[str(member)] = open_model(member, token=token, local=bases,
                                             hub_only=str(member) in from_hub)
        except ProbexError as err:
            if progress:
                progress(f"left out {member}: {err}")
    names, rows = [], []
    for (name, model), why in zip(opened.items(), sketch.keep_common(list(opened.values()))):
        if why is not None:
            if progress:
                progress(f"left out {name}: {why}")
            continue
        try:
            rows.append(sketch(model))
            names.append(name)
        except ProbexError as err:
            if progress:
                progress(f"left out {name}: {err}")
    return _edges(names, best_members(np.stack(rows) if rows else np.zeros((0, SKETCH_DIM))), calibration,
                  root_id or str(root))


def lineage_from_sketches(names: Sequence[str], sketches: np.ndarray, calibration: LineageCalibration,
                          root_id: str) -> list[Edge]:
    """Each member's parent (the root `root_id` or another member) from a tree table's count sketches alone, no
    weights read: `sketches` [members, dim] are the rows' `embedding`s in the order of `names`, each a member's
    movement from the root as the scan sketched the tree's expert's input layers (that expert root-centred), and
    `calibration` the tree's calibration of such sketches (`lineage_calibration(..., sketches=True)`). Each member's
    candidate parents come from a vector index (`sketch_candidates`), so a table of 10^5 rows takes minutes, not
    all pairs (docs/benchmarks.md, "Lineage from a table's sketches").

    Raises:
        ProbexError: the sketches are not [len(names), dim] finite numbers, or `calibration` is not one of sketches.
    """
    matrix = np.asarray(sketches, dtype=np.float32)  # a table's numbers: float64 would double 1.6 GB at 10^5 rows
    if calibration.sketch is None:
        raise ProbexError("this lineage calibration is of models read whole, not of a table's sketches: take the "
                          "expert's with lineage_calibration(..., sketches=True)")
    if matrix.ndim != 2 or len(matrix) != len(names) or not np.isfinite(matrix).all():
        raise ProbexError(f"{len(names)} members need a finite [{len(names)}, dim] matrix of sketches, not one of "
                          f"shape {matrix.shape}")
    return _edges(list(names), best_members(matrix, sketch_candidates(matrix)) if len(matrix) else [], calibration,
                  root_id)


def _edges(names: list[str], found: Sequence[tuple[int | None, float | None]], calibration: LineageCalibration,
           root: str) -> list[Edge]:
    """Each member's edge: its best member where that explains at least the tree's threshold, else the root."""
    edges = []
    for name, (best, share) in zip(names, found):
        if share is not None and share >= calibration.threshold:
            edges.append(Edge(name, names[best], calibration.member_precision,
                              f"{names[best]} explains {share:.0%} of its movement from the root (>= "
                              f"{calibration.threshold:.0%}, the tree's threshold)", share, names[best]))
            continue
        if share is None:
            said = "no member moved less from the root"
        elif calibration.names_no_member:
            said = f"the tree's calibration names no member ({NO_MEMBER_WHY}; best {names[best]}: {share:.0%})"
        else:
            said = (f"no member explains enough of its movement (best {names[best]}: {share:.0%} < "
                    f"{calibration.threshold:.0%})")
        edges.append(Edge(name, root, calibration.root_precision, said, share,
                          names[best] if best is not None else None))
    return edges


def lineage_calibration(registry: ExpertRegistry, root: str, *, sketches: bool = False) -> LineageCalibration:
    """The `LineageCalibration` of the tree of `root`: from the first of its experts in `registry` that carries one (an
    expert that cannot be loaded is passed over); with `sketches`, the one of a tree table's count sketches
    (`lineage_from_sketches`) instead of models read whole.

    Raises:
        ProbexError: none of them does.
    """
    for entry in registry.entries:
        if entry.root != root:
            continue
        try:
            value = load_expert(entry.location).routing.get("sketch_lineage" if sketches else "lineage")
        except Exception:  # a damaged or outdated expert: the others may still have one
            continue
        if value:
            return LineageCalibration.from_dict(value)
    can = "name parents from a table's sketches (a root-centred expert does)" if sketches else "name parents"
    raise ProbexError(f"no expert of the tree of {root} can {can}: train one with this hf_probex "
                      f"(hf-probex train --tree ...) and pass it with --expert")


def read_edges(path: str | os.PathLike) -> list[Edge]:
    """The edges `hf-probex lineage --json` wrote to `path` (its "edges"), for `infer_card(parents=...)`.

    Raises:
        ValueError: not such a file (unreadable, too long, not JSON, or an edge without its fields); the message
            says what to give instead.
    """
    fix = "give the output of `hf-probex lineage ROOT ... --json`"
    if os.path.exists(path) and not os.path.isfile(path):  # a FIFO or a device is read until it ends: maybe never
        raise ValueError(f"the edges file {path} is not a regular file: {fix}")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_EDGES_BYTES + 1)
        document = load_json(data, max_bytes=MAX_EDGES_BYTES)
    except (OSError, ValueError) as err:  # TooComplexError is a ValueError
        raise ValueError(f"cannot read the edges file {path} ({err.__class__.__name__}): {fix}") from None
    edges = document.get("edges") if isinstance(document, dict) else None
    if not isinstance(edges, list):
        raise ValueError(f"{path} holds no list of edges: {fix}")
    try:
        return [Edge.from_dict(edge) for edge in edges]
    except ValueError as err:
        raise ValueError(f"{path}: {err}: {fix}") from None

