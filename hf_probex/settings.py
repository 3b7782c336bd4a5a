"""What the environment decides, read in one place at the bottom of the package: where hf_probex caches things.

Nothing here imports the rest of hf_probex, so every layer (the zoo, experts, scans, the bot, the CLI) may read it.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """Where bench zoos, data and other large artefacts are cached (HF_PROBEX_CACHE, else the user cache dir)."""
    if "HF_PROBEX_CACHE" in os.environ:
        return Path(os.environ["HF_PROBEX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hf_probex"
