"""Layer sweeps and layer selection: cross-validate methods on every candidate layer of a tree.

Built on `runs.run_all`: parallel processes, one JSON line per finished (layer, method), resumable
after a kill. The ranking is by the first metric's CV mean, so the chosen layer's score is selected
on the folds it is reported on: confirm it on models the sweep did not see before quoting it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ...weightsets import WeightSet
from ..methods.models import METHODS
from .runs import Run, run_all
from .fit import TrainConfig

MAX_STACKED = 4  # layers a stacked expert reads at most
STACK_CANDIDATES = 8  # the best single layers tried as additions
#: Below this many models a class-subset tree's expert reads its family's default layer: a sweep over dozens of
#: layers (37 in MiniLM) on a few models picks the one that fits their noise best (text-small: 12 models).
MIN_MODELS_TO_SELECT = 40


def sweep(zoo: str | Path | WeightSet, tree: str, methods: list[str], out: Path, *, layers: list[str] | None = None,
          splits: tuple[str, ...] = (), groups: tuple[str, ...] = (), workers: int = 1, folds: int = 5, seed: int = 0,
          config: TrainConfig | None = None, progress: Callable[[str], None] | None = None,
          shuffled: bool = True) -> list[dict]:
    """Cross-validate every method on every layer of `tree` (or `layers`), appending reports to `out`; on
    the models of `splits` only when given (e.g. ("train", "val"): select there, report on "test"), and of
    the recipe families `groups` only when given (select without a family, then report on it). Where the
    zoo records recipe families, every score is leave-one-family-out (`harness.cv_splits`). Without `shuffled` the
    reports lack the shuffled-label reference (half the cost: what choosing a layer needs).

    Returns the reports, best first.

    Raises:
        ValueError: an unknown tree or layer.
    """
    from .harness import candidate_layers

    available = candidate_layers(zoo, tree)
    unknown = sorted(set(layers or []) - set(available))
    if unknown:
        raise ValueError(f"tree {tree!r} has no layer {unknown[0]!r}; layers: {', '.join(available)}")
    runs = [Run(tree, ((layer, method),), splits=tuple(splits), groups=tuple(groups), shuffled=shuffled)
            for layer in (layers or list(available)) for method in methods]
    reports = run_all(zoo, runs, out, workers=workers, folds=folds, seed=seed, config=config, progress=progress)
    return sorted(reports, key=lambda r: -next(iter(r["metrics"].values()))["mean"])


def select_layer(zoo: str | Path | WeightSet, tree: str, out: Path, *, method: str = "ridge", **options) -> str:
    """The layer of `tree` where `method` (default: the fast tuned ridge) cross-validates best, among the
    layers models can also be routed by (`harness.routable_layers`: the root has them in the same shape).

    Options as `sweep` (splits, workers, folds, seed, config, progress); reports are kept in `out` (resumable).
    """
    from .harness import routable_layers

    return sweep(zoo, tree, [method], out, layers=routable_layers(zoo, tree), shuffled=False, **options)[0]["layer"]


def select_stack(zoo: str | Path | WeightSet, tree: str, out: Path, *, method: str = "ridge", splits: tuple[str, ...] = (),
                 groups: tuple[str, ...] = (), **options) -> list[str]:
    """Layers of `tree` to stack into one input, chosen greedily: the best single routable layer, then
    each of the next best single layers in turn, kept when it raises the cross-validated score by more
    than one standard error (at most `MAX_STACKED` layers). Reports are kept in `out` (resumable).

    The score of the result is selected on the folds it is measured on, like any sweep's best layer.
    """
    from .harness import routable_layers

    ranked = [r["layer"] for r in sweep(zoo, tree, [method], out, layers=routable_layers(zoo, tree), splits=splits,
                                        groups=groups, shuffled=False, **options)]
    chosen = ranked[:1]
    best = None
    subset = {"splits": tuple(splits), "groups": tuple(groups), "shuffled": False}
    for candidate in ranked[1:STACK_CANDIDATES]:
        if len(chosen) == MAX_STACKED:
            break
        trial = run_all(zoo, [Run(tree, ((tuple(chosen + [candidate]), method),), **subset)], out, **options)[0]
        score = next(iter(trial["metrics"].values()))
        if best is None:
            single = Run(tree, ((chosen[0], method),), **subset)
            best = next(iter(run_all(zoo, [single], out, **options)[0]["metrics"].values()))
        if score["mean"] > best["mean"] + score["se"]:
            chosen, best = chosen + [candidate], score
    return chosen


def family_default(zoo: str | Path | WeightSet, tree: str, splits: tuple[str, ...] = (),
                   groups: tuple[str, ...] = ()) -> str | None:
    """The layer a class-subset tree's expert reads when it has too few models to choose one (`MIN_MODELS_TO_SELECT`,
    among `splits` and `groups` when given): its family's default layer (`Adapter.target_layer`, Model-J's layer or
    the same sub-layer at the same relative depth) where the tree's models have it; else None."""
    from ...adapters import CLASSES_TASK
    from ...errors import ProbexError
    from ...weightsets import open_weight_set
    from .harness import candidate_layers, tree_task
    from ..methods.shaping import layer_reader

    weights = zoo if isinstance(zoo, WeightSet) else open_weight_set(zoo)
    records = [r for r in weights.for_tree(tree, tuple(splits) or None) if not groups or r.group in groups]
    if tree_task(weights, tree) != CLASSES_TASK or not records or len(records) >= MIN_MODELS_TO_SELECT:
        return None
    adapter, _ = layer_reader(records[0].path, records[0].kind, records[0].base)
    names = candidate_layers(weights, tree)
    try:
        layer = adapter.target_layer(CLASSES_TASK, weights.root_ids.get(tree), names)
    except (ValueError, ProbexError):  # a family without a default layer (the generic reader): the sweep chooses
        return None
    return layer if layer in names else None


def select_inputs(zoo: str | Path | WeightSet, tree: str, method: str, out: Path, **options) -> list[str] | str:
    """What an expert of `method` should read in `tree`: ridge reads a stack (`select_stack`); a network on a LoRA
    tree reads several modules, one network each (`select_modules`, `hub.Expert.fused`); elsewhere the networks,
    which read one layer as a matrix, read the single best layer (`select_layer`). A class-subset tree of too few models
    to choose among its layers reads its family's default layer (`family_default`)."""
    from .harness import tree_task

    default = family_default(zoo, tree, options.get("splits", ()), options.get("groups", ()))
    if default is not None:
        return [default] if method == "ridge" else default
    if method == "ridge":
        return select_stack(zoo, tree, out, **options)
    if method in METHODS and not METHODS[method].closed_form and tree_task(zoo, tree) == "zeroshot":
        return select_modules(zoo, tree, out, **options)
    return select_layer(zoo, tree, out, **options)


def select_modules(zoo: str | Path | WeightSet, tree: str, out: Path, **options) -> list[str]:
    """The modules a LoRA tree's fused expert reads: the `MAX_STACKED` best single modules by the tuned ridge's
    cross-validated score. Not greedily stacked as `select_stack`: a fused expert reads each module on its own and
    averages what the modules a LoRA has say, so every module that reads well helps, and reads the LoRAs that target
    only it (on the bench sd tree, leave-one-family-out, the ridge's per-family spread was larger than any gain a
    stack showed; training the network for every greedy trial instead took hours on 2 cores).

    Options as `sweep`; reports are kept in `out` (resumable).
    """
    from .harness import routable_layers

    ranked = sweep(zoo, tree, ["ridge"], out, layers=routable_layers(zoo, tree), shuffled=False, **options)
    return [r["layer"] for r in ranked[:MAX_STACKED]]
