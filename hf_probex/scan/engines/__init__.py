"""Scan engines behind one interface (`Engine`), one module each: `local` (threads, the default) and `ray`.

Each module here defines its engine with `@register_engine`; this package imports every module it holds,
so adding an engine is adding a file. `make_engine` builds one by name.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import ENGINES, Engine, ScanEngineError, register_engine

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["ENGINES", "Engine", "ScanEngineError", "make_engine", "register_engine"]


def make_engine(name: str, *, workers: int = 2, address: str | None = None) -> Engine:
    """The engine called `name`, set up for `workers` reads at once (and, for Ray, the cluster at `address`)."""
    if name not in ENGINES:
        raise ScanEngineError(f"unknown scan engine {name!r}; choose one of: {', '.join(sorted(ENGINES))}")
    return ENGINES[name](workers=workers, address=address)
