"""Multi-process (multi-GPU) execution through accelerate: which process this is, its device, its share.

`accelerate launch --multi_gpu --num_processes N -m hf_probex.cli bench ...` (or `torchrun`) starts N
processes; each trains on its own device (`device`), takes its share of the runs (`share`), and only
the main process writes what concerns everyone (tables, docs). A plain `hf-probex` call is one process
on CUDA when present. Experts are small (at most a few million parameters, and every model of a tree
fits in memory), so the parallelism that pays is one expert per device, not one expert split over
devices: runs are distributed, not gradients.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import TypeVar

import torch

T = TypeVar("T")


@functools.lru_cache(maxsize=1)
def _state():
    from accelerate import PartialState

    # without CUDA, several launched processes still share work (MULTI_CPU over gloo): how the tests run it
    return PartialState(cpu=not torch.cuda.is_available())


def device() -> torch.device:
    """Where this process trains: $HF_PROBEX_DEVICE (e.g. "cpu", "cuda:1") if set, else the device accelerate
    gives this process (its own GPU under a multi-GPU launch; CUDA when present; else the CPU)."""
    return torch.device(os.environ.get("HF_PROBEX_DEVICE") or _state().device)


def is_distributed() -> bool:
    """Whether this is one of several launched processes."""
    return _state().num_processes > 1


def is_main_process() -> bool:
    """Whether this process writes shared outputs (always true in a plain, single-process call)."""
    return _state().is_main_process


def share(items: Sequence[T]) -> list[T]:
    """This process's contiguous share of `items` (all of them in a single-process call)."""
    with _state().split_between_processes(list(items)) as mine:
        return list(mine)


def wait_for_everyone() -> None:
    """Block until every launched process gets here (no-op in a single-process call)."""
    _state().wait_for_everyone()
