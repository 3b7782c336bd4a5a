"""Labelled real text that ships offline: Debian's `fortunes` package, one category file per class.

The text trees fine-tune the real all-MiniLM-L6-v2 on subsets of these categories; a class's name is its
file's name (`computers`, `science`, `law`...). Entries are separated by lines holding a single `%`. The
package is fetched once into the cache without installing anything (`apt-get download fortunes`, then
`dpkg -x`: no root needed), or read from a folder of category files named by HF_PROBEX_FORTUNES.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..settings import default_cache_dir
from .errors import ZooError

#: A folder of category files to read instead of fetching the Debian package.
FORTUNES_ENV = "HF_PROBEX_FORTUNES"
#: Where the Debian package puts the category files, inside the extracted package.
PACKAGE_FOLDER = Path("usr/share/games/fortunes")
#: Entries shorter or longer than this (characters, whitespace collapsed) are left out: a signature line is
#: no sentence, a page-long story is not what a 32-token classifier reads.
MIN_CHARS, MAX_CHARS = 20, 400
#: Share of each category's entries kept for testing the children (the same split for every tree).
TEST_FRACTION = 0.2
_SEPARATOR = re.compile(r"^%\s*$", re.MULTILINE)


def fortunes_dir() -> Path:
    """The folder of category files: HF_PROBEX_FORTUNES if set, else the Debian package extracted in the cache
    (fetched on first use).

    Raises:
        ZooError: the files cannot be found or fetched (one line saying what to do).
    """
    if os.environ.get(FORTUNES_ENV):
        folder = Path(os.environ[FORTUNES_ENV])
        if not folder.is_dir():
            raise ZooError(f"{FORTUNES_ENV}={folder} is not a folder; point it at the fortunes category files "
                           f"(usr/share/games/fortunes of Debian's fortunes package)")
        return folder
    root = default_cache_dir() / "data" / "fortunes"
    folder = root / PACKAGE_FOLDER
    if not folder.is_dir():
        _fetch_package(root)
    return folder


def _fetch_package(root: Path) -> None:
    """Download Debian's fortunes package and extract it into `root`, atomically (a killed fetch leaves nothing)."""
    missing = [tool for tool in ("apt-get", "dpkg") if shutil.which(tool) is None]
    if missing:
        raise ZooError(f"the text trees read Debian's fortunes package, and this machine has no {' or '.join(missing)}: "
                       f"extract usr/share/games/fortunes from fortunes_*.deb (packages.debian.org/fortunes) and set "
                       f"{FORTUNES_ENV} to that folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=".fortunes-") as work:
        try:
            subprocess.run(["apt-get", "download", "fortunes"], cwd=work, check=True, capture_output=True, timeout=300)
            package = next(Path(work).glob("fortunes_*.deb"))
            subprocess.run(["dpkg", "-x", str(package), str(Path(work) / "extracted")], check=True, capture_output=True,
                           timeout=300)
        except (subprocess.SubprocessError, StopIteration, OSError) as err:
            detail = err.stderr.decode(errors="replace").strip().splitlines()[-1:] if getattr(err, "stderr", None) else []
            raise ZooError(f"could not fetch Debian's fortunes package ({'; '.join(detail) or type(err).__name__}): "
                           f"run `apt-get update`, or set {FORTUNES_ENV} to a folder of its category files") from None
        shutil.rmtree(root, ignore_errors=True)
        os.replace(Path(work) / "extracted", root)


def parse_fortunes(text: str) -> list[str]:
    """The entries of one category file: split at `%` lines, whitespace collapsed, too short or long ones left out,
    duplicates dropped (first kept)."""
    entries = (" ".join(part.split()) for part in _SEPARATOR.split(text))
    return list(dict.fromkeys(e for e in entries if MIN_CHARS <= len(e) <= MAX_CHARS))


@dataclass(frozen=True)
class TextSplit:
    """The entries of each category, split once into train and test (a fixed seed, shared by every tree)."""

    train: dict[str, list[str]]
    test: dict[str, list[str]]

    def labelled(self, categories: list[str], split: str, per_class: int | None,
                 rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
        """Texts and label indices (position in `categories`) of a task, `per_class` texts per category (all: None)."""
        source = self.train if split == "train" else self.test
        texts, labels = [], []
        for label, category in enumerate(categories):
            entries = source[category]
            if per_class is not None and per_class < len(entries):
                entries = [entries[i] for i in sorted(rng.choice(len(entries), size=per_class, replace=False))]
            texts += entries
            labels += [label] * len(entries)
        return texts, np.array(labels, dtype=np.int64)


@functools.lru_cache(maxsize=4)
def load_fortunes(categories: tuple[str, ...]) -> TextSplit:
    """The entries of `categories`, split per category into train and test.

    Raises:
        ZooError: a category file is missing (the message lists those there are) or too small to split.
    """
    folder = fortunes_dir()
    missing = [c for c in categories if not (folder / c).is_file()]
    if missing:
        there = sorted(p.name for p in folder.iterdir() if p.is_file() and "." not in p.name)
        raise ZooError(f"no fortunes category {', '.join(missing)} in {folder}; categories there: {', '.join(there)}")
    rng = np.random.default_rng(0)
    train, test = {}, {}
    for category in categories:
        entries = parse_fortunes((folder / category).read_text(encoding="utf-8", errors="replace"))
        if len(entries) < 10:
            raise ZooError(f"the fortunes category {category} has {len(entries)} usable entries; choose categories "
                           f"with at least 10")
        order = rng.permutation(len(entries))
        n_test = max(2, int(round(len(entries) * TEST_FRACTION)))
        test[category] = [entries[i] for i in sorted(order[:n_test])]
        train[category] = [entries[i] for i in sorted(order[n_test:])]
    return TextSplit(train, test)


def class_examples(categories: tuple[str, ...], n: int = 8, seed: int = 0) -> dict[str, list[str]]:
    """`n` texts of each category drawn from its test split (never a text a zoo child trained on), the same ones for a
    given seed: what a text tree's expert ships to name a classifier's head rows by running it (`head_naming`)."""
    split = load_fortunes(tuple(categories))
    rng = np.random.default_rng(seed)
    return {c: [split.test[c][i] for i in sorted(rng.choice(len(split.test[c]), min(n, len(split.test[c])), replace=False))]
            for c in categories}
