"""Building a zoo: plan, then train roots, children and grandchildren, resumably and in parallel.

Every model trains in one thread with its own seed, so the result does not depend on how many
workers run or in which order they finish. Workers are separate processes (one per core).
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

from .cards import write_card
from .plan import ModelSpec, make_plan
from .presets import get_preset
from .store import PLAN_FILE, Zoo, ZooError, write_json_atomic
from .trees import FAMILIES


def _quiet_libraries() -> None:
    import torch
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    torch.set_num_threads(1)
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def build_model(zoo_root: str, tree: str, name: str) -> dict:
    """Train one planned model into a temporary folder, then move it and its record into place."""
    _quiet_libraries()
    zoo = Zoo(Path(zoo_root))
    spec = zoo.spec(tree, name)
    tree_preset = get_preset(zoo.plan["preset"]).trees[tree]
    family = FAMILIES[tree_preset.family]
    work = zoo.tmp_dir() / f"{tree}-{name}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.perf_counter()
    if spec.parent is None:
        measurements = family.build_root(spec, tree_preset, work)
        parent_repo_id = None
    else:
        parent_repo_id = zoo.spec(tree, spec.parent).repo_id
        measurements = family.build_child(spec, tree_preset, zoo.model_dir(tree, spec.parent), work, parent_repo_id)
    write_card(spec, family, parent_repo_id, work)
    record = {**measurements, "seconds": round(time.perf_counter() - started, 3), "bytes": _folder_size(work)}
    final = zoo.model_dir(tree, name)
    final.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(work, final)
    zoo.record_path(tree, name).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(zoo.record_path(tree, name), record)
    return record


def _prepare_folder(out: Path, plan: dict) -> Zoo:
    """Create or reopen the zoo folder; refuse foreign or mismatched folders with one clear line."""
    if out.exists() and not out.is_dir():
        raise ZooError(f"{out} is a file; choose a folder for --out")
    if out.is_dir() and any(out.iterdir()) and not (out / PLAN_FILE).is_file():
        raise ZooError(f"{out} is not empty and holds no zoo; choose a new or empty folder for --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise ZooError(f"cannot write to {out} ({err.strerror}); choose a writable folder for --out") from None
    if (out / PLAN_FILE).is_file():
        existing = Zoo.open(out).plan
        if existing.get("format") != plan["format"]:
            raise ZooError(f"{out} holds a zoo of an older format ({existing.get('format')}); build into another --out "
                           f"(or delete it: this hf_probex plans zoos as {plan['format']})")
        if (existing.get("preset"), existing.get("seed")) != (plan["preset"], plan["seed"]):
            raise ZooError(
                f"{out} holds a zoo built with preset {existing.get('preset')!r} and seed {existing.get('seed')}; "
                f"use the same --preset/--seed to resume, or another --out"
            )
    write_json_atomic(out / PLAN_FILE, plan)
    zoo = Zoo(out)
    shutil.rmtree(zoo.tmp_dir(), ignore_errors=True)
    return zoo


def _pending(zoo: Zoo, specs: list[ModelSpec], warn) -> list[ModelSpec]:
    """The models still to build; finished models whose files are damaged are discarded and rebuilt."""
    pending = []
    for spec in specs:
        if zoo.is_finished(spec):
            family = FAMILIES[zoo.trees[spec.tree]["family"]]
            problem = zoo.problem(spec, family.weight_files(spec))
            if problem is None:
                continue
            warn(f"{problem}; rebuilding {spec.tree}/{spec.name}")
        zoo.discard(spec)
        pending.append(spec)
    return pending


def build_zoo(
    out: str | os.PathLike,
    preset: str = "tiny",
    *,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    warn=print,
) -> Zoo:
    """Build (or resume) a zoo of real model trees with known ground truth into `out`.

    Args:
        out: the zoo folder; created if missing. A folder holding this preset's zoo is resumed.
        preset: "tiny" (seconds, for tests), "small" (~20 s, the smallest zoo with a weight signal) or
            "bench" (the benchmark zoo).
        seed: draws every child's classes, concept and hyper-parameters; same seed, same zoo.
        workers: processes that train in parallel (default: one per core; 1 trains in this process).
        progress: show a progress bar.

    Returns:
        The finished `Zoo`.
    """
    plan = make_plan(get_preset(preset), seed)
    zoo = _prepare_folder(Path(out), plan)
    specs = zoo.specs()
    pending = _pending(zoo, specs, warn)
    workers = max(1, workers or os.cpu_count() or 1)
    from tqdm.auto import tqdm

    with tqdm(total=len(pending), desc=f"zoo {preset}", unit="model", disable=not progress) as bar:
        if workers == 1:
            for spec in sorted(pending, key=lambda s: s.generation):
                build_model(str(zoo.root), spec.tree, spec.name)
                bar.update()
        else:
            _build_in_parallel(zoo, pending, workers, bar.update)
    return zoo


def _build_in_parallel(zoo: Zoo, pending: list[ModelSpec], workers: int, on_done) -> None:
    """Train models in worker processes, each as soon as its parent is finished.

    Only `workers` models are in flight at a time, taken in plan order (roots first), so that trees
    finish one after the other and a grandchild starts soon after its parent, not after the whole zoo.
    """
    waiting = {(s.tree, s.name): s for s in sorted(pending, key=lambda s: s.generation > 0)}

    def ready(spec: ModelSpec) -> bool:
        return spec.parent is None or (spec.tree, spec.parent) not in waiting

    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        running: dict = {}
        while waiting:
            for key, spec in waiting.items():
                if len(running) >= workers:
                    break
                if key not in running.values() and ready(spec):
                    running[pool.submit(build_model, str(zoo.root), spec.tree, spec.name)] = key
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()
                del waiting[running.pop(future)]
                on_done()
