"""Resumable cross-validation runs: many (tree, layers, methods) runs in parallel processes, one JSON line each.

A `Run` names what to cross-validate: one or more (layer, method) members of one tree (several members
are averaged, late fusion) and whether inputs are root-centred. `run_all` executes the runs not yet in
a JSON-lines file, in `workers` processes of one torch thread each, appending each report (tagged
with its run) as soon as it finishes; a killed run is resumed by calling it again with the same file
(a half-written last line is dropped). Layer sweeps and the benchmark are both built on it. Under a
multi-process launch (`accelerate launch`, `torchrun`; see `launch`) the launched processes share the
runs instead, one device each, and every process returns every report.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ...weightsets import WeightSet
from .fit import TrainConfig


@dataclass(frozen=True)
class Run:
    """One cross-validation: `members` = ((layer, method), ...) of `tree`; `label` names it in tables.

    A member's layer may be a tuple of layers: they are stacked into one input (`harness.load_layer_data`).
    """

    tree: str
    members: tuple[tuple[str | tuple[str, ...], str], ...]
    centre: bool = True
    label: str = ""
    temperature: float = 1.0  # zero-shot cosine temperature
    hparams: tuple[tuple[str, object], ...] = ()  # network sizes for every member (default: the method's defaults)
    splits: tuple[str, ...] = ()  # only the models of these splits (default: every in-distribution model)
    groups: tuple[str, ...] = ()  # only the models of these recipe families (default: every family)
    features: str = ""  # what the experts read (hf_probex.experts.methods.features; default: the task's)
    shuffled: bool = True  # also cross-validate on shuffled labels, the reference a report shows (selection skips it)

    @property
    def name(self) -> str:
        return self.label or " + ".join(method for _, method in self.members)

    def key(self, folds: int, seed: int, config: TrainConfig) -> str:
        """What identifies a finished report in the file: the run and every setting that changes its numbers."""
        # settings at their defaults add nothing, so the keys of earlier run files stay valid
        sizes = [dict(self.hparams)] if self.hparams else []
        splits = [{"splits": list(self.splits)}] if self.splits else []
        groups = [{"groups": list(self.groups)}] if self.groups else []
        features = [{"features": self.features}] if self.features else []
        shuffled = [] if self.shuffled else [{"shuffled": False}]
        return json.dumps([self.tree, self.members, self.centre, self.temperature, folds, seed, asdict(config), *sizes,
                           *splits, *groups, *features, *shuffled])


def _portable(zoo: str | Path | WeightSet) -> str | WeightSet:
    """What a run is given: a folder's path as a string, or an open weight set as it is (a weight set from a tree
    table has no folder to open again; it pickles to worker processes as plain data)."""
    return zoo if isinstance(zoo, WeightSet) else str(zoo)


def _execute(zoo: str | WeightSet, run: Run, folds: int, seed: int, config: dict, threads: int | None = 1) -> dict:
    import torch

    from .harness import cross_validate_combined, load_layer_data

    if threads:  # a worker process: one thread each, so that workers do not fight over cores
        torch.set_num_threads(threads)
    members = [(load_layer_data(zoo, run.tree, layer, splits=run.splits or None, groups=run.groups or None), method,
                dict(run.hparams) or None) for layer, method in run.members]
    return cross_validate_combined(members, folds=folds, seed=seed, centre=run.centre, config=TrainConfig(**config),
                                   temperature=run.temperature, features=run.features or None, shuffled=run.shuffled)


def read_done(path: Path) -> list[dict]:
    """The complete reports of a runs file (none if it does not exist)."""
    if not path.is_file():
        return []
    done = []
    for line in path.read_text().splitlines():
        try:
            done.append(json.loads(line))
        except json.JSONDecodeError:  # the last line of a killed run
            continue
    return done


def _drop_partial_line(path: Path) -> None:
    """Cut a killed run's half-written last line, so the next report starts on a line of its own."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def run_all(zoo: str | Path | WeightSet, runs: Sequence[Run], out: Path, *, workers: int = 1, folds: int = 5, seed: int = 0,
            config: TrainConfig | None = None, progress: Callable[[str], None] | None = None) -> list[dict]:
    """Cross-validate every run not yet in `out`; returns the reports of `runs`, in their order.

    Each report carries `run_key` (settings included) and `label` (the run's name).
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from . import launch

    config = config or TrainConfig()
    keys = {run: run.key(folds, seed, config) for run in runs}
    if launch.is_main_process():
        out.parent.mkdir(parents=True, exist_ok=True)
        _drop_partial_line(out)
    launch.wait_for_everyone()
    done = {r["run_key"]: r for r in read_done(out) if "run_key" in r}
    todo = [run for run in dict.fromkeys(runs) if keys[run] not in done]
    # unbuffered appends: each report is one write() to an O_APPEND file, so launched processes never interleave
    with out.open("ab", buffering=0) as handle:
        def record(run: Run, result: dict) -> None:
            report = {**result, "run_key": keys[run], "label": run.name}
            handle.write((json.dumps(report) + "\n").encode())
            done[keys[run]] = report
            if progress:
                progress(f"{run.tree} / {report['layer']} / {run.name}: "
                         + ", ".join(f"{k} {v['mean']:.1f}" for k, v in report["metrics"].items()))

        # launched processes (accelerate / torchrun) are the workers, one device each; a single process with
        # workers <= 1 runs everything itself (starting a worker, torch import included, costs more than a ridge run)
        if launch.is_distributed() or workers <= 1:
            for run in launch.share(todo):
                record(run, _execute(_portable(zoo), run, folds, seed, asdict(config), threads=None))
        elif todo:
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(_execute, _portable(zoo), run, folds, seed, asdict(config)): run for run in todo}
                for future in as_completed(futures):
                    record(futures[future], future.result())
    if launch.is_distributed():  # the other processes' reports
        launch.wait_for_everyone()
        done |= {r["run_key"]: r for r in read_done(out) if "run_key" in r}
    return [done[keys[run]] for run in runs]
