"""What every command group shares: the bad-input error, the cache folder, common options."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


class UserError(Exception):
    """A bad input: printed as one `error:` line, exit status 2."""


def default_cache_dir() -> Path:
    """Where bench zoos and other large artefacts are cached (HF_PROBEX_CACHE, else the user cache dir)."""
    if "HF_PROBEX_CACHE" in os.environ:
        return Path(os.environ["HF_PROBEX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hf_probex"


def add_cv_options(sub: argparse.ArgumentParser, *, training: bool) -> None:
    """Options shared by every cross-validated command: folds and seed (and, for experts, training)."""
    sub.add_argument("--folds", type=int, default=5, help="cross-validation folds (default: 5)")
    sub.add_argument("--seed", type=int, default=0, help="seed of the folds, the label shuffles and training")
    if training:
        sub.add_argument("--epochs", type=int, default=None, help="training epochs (default: 100, or 500 with --paper)")
        sub.add_argument("--paper", action="store_true", help="the papers' sizes and training recipe (slow on CPU)")
