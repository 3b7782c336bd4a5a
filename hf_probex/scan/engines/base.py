"""The interface of a scan engine, and the registry engines add themselves to.

An engine runs `member.read_member` over a list of jobs and yields the rows as they complete (in any
order: the scan flushes them in parts as they come). It is a context manager: resources it starts (a
thread pool, a Ray cluster) live inside the `with` block. Each engine module decorates its class with
`@register_engine`; `hf_probex.scan.engines` imports every module it holds, so a new engine is a new file.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, ClassVar

from ...errors import ProbexError

if TYPE_CHECKING:  # engines are listed by `--help`, which must not import torch
    from ..member import MemberJob, ScanSettings
    from ..table import ScanRow

__all__ = ["ENGINES", "Engine", "ScanEngineError", "register_engine"]

#: name -> engine class, filled by `register_engine`.
ENGINES: dict[str, type[Engine]] = {}


class ScanEngineError(ProbexError):
    """An engine that cannot run: a missing library, a cluster that cannot be reached, bad options."""


def register_engine(cls: type[Engine]) -> type[Engine]:
    """Class decorator: add an engine to `ENGINES` under its `name`."""
    if cls.name in ENGINES:
        raise ValueError(f"two scan engines claim the name {cls.name!r}")
    ENGINES[cls.name] = cls
    return cls


class Engine(abc.ABC):
    """Runs reads of tree members (see the module docstring).

    Args:
        workers: reads at once (threads, or Ray CPUs on a local cluster).
        address: a Ray cluster's address (engines that have no cluster refuse one).
    """

    #: The engine's name on the command line (`--engine`).
    name: ClassVar[str]
    #: One line for `--help`.
    description: ClassVar[str]

    def __init__(self, workers: int = 2, address: str | None = None) -> None:
        if workers < 1:
            raise ScanEngineError(f"workers must be at least 1, not {workers}")
        self.workers, self.address = workers, address

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release what the engine started (default: nothing)."""

    @abc.abstractmethod
    def map(self, jobs: Sequence[MemberJob], settings: ScanSettings) -> Iterator[ScanRow]:
        """`read_member(job, settings)` for every job, yielded as each completes."""
