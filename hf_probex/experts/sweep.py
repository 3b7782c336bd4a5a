"""Layer sweeps: cross-validate methods on every candidate layer of a tree, in parallel, resumable.

Each (layer, method) report is appended to a JSON-lines file as soon as it is done, so a killed sweep
rerun with the same file skips what is finished (a half-written last line is ignored). Workers are
separate processes with one torch thread each. The ranking is by the first metric's CV mean; the
chosen layer's score is then optimistic (selected on the folds it is reported on): confirm it on
models the sweep did not see before quoting it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .training import TrainConfig


def _run_one(zoo: str, tree: str, layer: str, method: str, options: dict) -> dict:
    import torch

    from .harness import cross_validate, load_layer_data

    torch.set_num_threads(1)
    config = TrainConfig(**options.pop("config"))
    return cross_validate(load_layer_data(zoo, tree, layer), method, config=config, **options)


def read_done(path: Path) -> list[dict]:
    """The complete reports of a sweep file (none if it does not exist)."""
    if not path.is_file():
        return []
    done = []
    for line in path.read_text().splitlines():
        try:
            done.append(json.loads(line))
        except json.JSONDecodeError:  # the last line of a killed sweep
            continue
    return done


def _drop_partial_line(path: Path) -> None:
    """Cut a killed sweep's half-written last line, so the next report starts on a line of its own."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def sweep(zoo: str | Path, tree: str, methods: list[str], out: Path, *, layers: list[str] | None = None,
          workers: int = 1, folds: int = 5, seed: int = 0, config: TrainConfig = TrainConfig(),
          progress: Callable[[str], None] | None = None) -> list[dict]:
    """Cross-validate every method on every layer of `tree` (or `layers`), appending reports to `out`.

    Returns all reports in `out` for these settings, best first.
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from dataclasses import asdict
    from multiprocessing import get_context

    from .harness import candidate_layers

    available = candidate_layers(zoo, tree)
    unknown = sorted(set(layers or []) - set(available))
    if unknown:
        raise ValueError(f"tree {tree!r} has no layer {unknown[0]!r}; layers: {', '.join(available)}")

    def key(layer: str, method: str) -> tuple:
        return (tree, layer, method, folds, seed, config.epochs)

    done = {key(r["layer"], r["method"]): r for r in read_done(out)
            if (r["tree"], r["folds"], r["seed"], r["train_config"]["epochs"]) == (tree, folds, seed, config.epochs)}
    todo = [(layer, m) for layer in (layers or list(available)) for m in methods if key(layer, m) not in done]
    options = dict(folds=folds, seed=seed, config=asdict(config))
    out.parent.mkdir(parents=True, exist_ok=True)
    _drop_partial_line(out)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool, out.open("a") as handle:
        futures = {pool.submit(_run_one, str(zoo), tree, layer, m, dict(options)): (layer, m) for layer, m in todo}
        for future in as_completed(futures):
            report = future.result()
            handle.write(json.dumps(report) + "\n")
            handle.flush()
            done[key(report["layer"], report["method"])] = report
            if progress:
                progress(f"{report['layer']} / {report['method']}: "
                         + ", ".join(f"{k} {v['mean']:.1f}" for k, v in report["metrics"].items()))
    wanted = {key(layer, m) for layer in (layers or list(available)) for m in methods}
    reports = [r for k, r in done.items() if k in wanted]
    return sorted(reports, key=lambda r: -next(iter(r["metrics"].values()))["mean"])
