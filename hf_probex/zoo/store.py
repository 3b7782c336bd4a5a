"""The on-disk layout of a zoo, and what counts as a finished (or corrupt) model.

    DIR/zoo.json                      the plan: preset, seed, trees, every model's truth
    DIR/models/<tree>/<name>/         one Hub-format repo folder per model
    DIR/records/<tree>/<name>.json    measurements of a finished model, written last
    DIR/.tmp/                         work in progress; never read, cleared on start

A model is finished when its record exists; the repo folder is moved into place before the record,
both by atomic renames, so a killed build never leaves a half-written model that looks finished.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import ZooError
from .plan import ModelSpec

PLAN_FILE = "zoo.json"


def write_json_atomic(path: Path, payload: object) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False))
    os.replace(tmp, path)


@dataclass(frozen=True)
class Zoo:
    """A zoo folder: its plan, its models and their records."""

    root: Path

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Zoo":
        """Open an existing zoo; raises ZooError if `path` holds none."""
        root = Path(path)
        if not (root / PLAN_FILE).is_file():
            raise ZooError(f"{root} is not a zoo (no {PLAN_FILE}); build one with `hf-probex zoo build --out {root}`")
        return cls(root)

    @functools.cached_property
    def plan(self) -> dict:
        try:
            return json.loads((self.root / PLAN_FILE).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ZooError(f"{self.root / PLAN_FILE} is unreadable ({err}); rebuild the zoo into a new folder") from None

    @property
    def trees(self) -> dict[str, dict]:
        return self.plan["trees"]

    def specs(self, tree: str | None = None) -> list[ModelSpec]:
        return [ModelSpec(**m) for m in self.plan["models"] if tree is None or m["tree"] == tree]

    def spec(self, tree: str, name: str) -> ModelSpec:
        for spec in self.specs(tree):
            if spec.name == name:
                return spec
        raise KeyError(f"{tree}/{name}")

    def model_dir(self, tree: str, name: str) -> Path:
        return self.root / "models" / tree / name

    def record_path(self, tree: str, name: str) -> Path:
        return self.root / "records" / tree / f"{name}.json"

    def record(self, tree: str, name: str) -> dict | None:
        path = self.record_path(tree, name)
        return json.loads(path.read_text()) if path.is_file() else None

    def tmp_dir(self) -> Path:
        return self.root / ".tmp"

    def is_finished(self, spec: ModelSpec) -> bool:
        return self.record_path(spec.tree, spec.name).is_file() and self.model_dir(spec.tree, spec.name).is_dir()

    def problem(self, spec: ModelSpec, weight_files: list[str]) -> str | None:
        """Why a finished model is unusable (missing or unreadable weights, or an index naming a missing or
        unreadable shard), or None if it is sound."""
        from ..errors import ProbexError
        from ..reading import open_source

        folder = self.model_dir(spec.tree, spec.name)
        for rel in weight_files:
            path = folder / rel
            if not path.is_file():
                return f"{path} is missing"
            try:
                checkpoint = open_source(folder).open_checkpoint(rel)
                for shard in checkpoint.shards:
                    checkpoint.source.header(shard)
            except ProbexError as err:
                return f"{path} is corrupt ({str(err).splitlines()[0]})"
        return None

    def discard(self, spec: ModelSpec) -> None:
        """Remove a model and its record so that the next build trains it again."""
        self.record_path(spec.tree, spec.name).unlink(missing_ok=True)
        shutil.rmtree(self.model_dir(spec.tree, spec.name), ignore_errors=True)
