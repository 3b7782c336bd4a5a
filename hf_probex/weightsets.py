"""Weight sets: (weights, labels, split, tree) records from a zoo or the official Model-J layout.

One interface serves both, so benchmarks and experts run unchanged on our zoos and on Model-J:

- an hf_probex zoo folder (has `zoo.json`);
- Model-J's discriminative subsets in the Hugging Face cache layout:
  `models--ProbeX--Model-J__SupViT__model_idx_0001/refs/main` naming a snapshot
  `snapshots/<sha>/model.safetensors` whose metadata key `dataset_chosen_targets` lists the classes;
  splits come from an optional CSV beside them (columns `model_idx`, `split`), as the dataset ships;
- Model-J's SD LoRA subsets: `<split>/model_idx_XXXX/pytorch_lora_weights.safetensors` with the
  class in the metadata key `imagenet_class_id`.
"""

from __future__ import annotations

import ast
import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from safetensors import safe_open

LORA_FILE = "pytorch_lora_weights.safetensors"
_HF_CACHE_REPO = re.compile(r"^models--(?P<org>[^/]+?)--(?P<name>.+)$")
_MODEL_J_NAME = re.compile(r"^Model-J__(?P<subset>.+?)__model_idx_(?P<idx>\d+)$")
_SD_MODEL_DIR = re.compile(r"^model_idx_(?P<idx>\d+)$")


@dataclass(frozen=True)
class WeightRecord:
    """One model of a weight set: where its weights are and what it was trained on."""

    tree: str
    model_id: str
    split: str | None
    labels: tuple[str, ...]  # classes (discriminative) or the one concept (LoRA)
    path: Path  # the model's folder or its .safetensors file (read through hf_probex.reading: any dtype, shards)
    kind: str  # "classifier" | "lora"
    group: str | None = None  # the recipe family it was trained with, where known (zoos; hf_probex.zoo.recipes)
    head_order: bool = False  # `labels` are in the order of the classification head's rows (zoos; experts.calibration.head_rows)
    base: Path | None = None  # a peft adapter's base, where the weight set holds it (zoos: the parent's folder)
    parent: str | None = None  # the Hub id of the model it was fine-tuned from, where known (zoos; tables: its card's)


@dataclass
class WeightSet:
    """Records of one or more trees, with each tree's label vocabulary and root weights (if known)."""

    source: str
    records: list[WeightRecord]
    vocabularies: dict[str, list[str]] = field(default_factory=dict)
    roots: dict[str, Path | None] = field(default_factory=dict)
    root_ids: dict[str, str] = field(default_factory=dict)  # each tree's root Hub repo id, where known without a zoo plan
    families: dict[str, str] = field(default_factory=dict)  # each zoo tree's family (hf_probex.zoo.trees.FAMILIES)

    def class_examples(self, tree: str, classes: list[str]) -> dict[str, list[str]]:
        """Example inputs of `classes` that an expert of `tree` can ship (`Expert.examples`: a zoo text tree's
        held-out texts); empty for other trees, or where the texts are no longer there."""
        from .zoo import ZooError
        from .zoo.trees import FAMILIES

        family = FAMILIES.get(self.families.get(tree, ""))
        try:
            return family.class_examples(classes) if family else {}
        except ZooError:
            return {}

    @property
    def trees(self) -> list[str]:
        return sorted({r.tree for r in self.records})

    def for_tree(self, tree: str, splits: tuple[str, ...] | None = None) -> list[WeightRecord]:
        """Records of one tree, optionally only those in `splits`."""
        return [r for r in self.records if r.tree == tree and (splits is None or r.split in splits)]


def read_metadata(path: Path) -> dict[str, str]:
    """The safetensors header metadata of a file (reads the header only)."""
    with safe_open(str(path), framework="np") as handle:
        return handle.metadata() or {}


def _from_zoo(root: Path) -> WeightSet:
    from .zoo import Zoo

    zoo = Zoo.open(root)
    records, roots = [], {}
    for tree, info in zoo.trees.items():
        for spec in zoo.specs(tree):
            weights = zoo.model_dir(tree, spec.name)
            if spec.role == "root":
                roots[tree] = weights if zoo.is_finished(spec) else None
                continue
            if not zoo.is_finished(spec):
                continue
            is_lora = spec.concept is not None
            labels = (spec.concept["name"],) if is_lora else tuple(spec.labels)
            # an adapter folder names its parent by Hub id, as published: here the parent's folder stands in for it
            base = zoo.model_dir(tree, spec.parent) if spec.hparams.get("layout") == "peft-adapter" else None
            records.append(
                WeightRecord(tree, spec.repo_id, spec.split, labels, weights, "lora" if is_lora else "classifier",
                             spec.recipe or None, head_order=not is_lora, base=base,
                             parent=zoo.spec(tree, spec.parent).repo_id)
            )
    vocabularies = {tree: list(info["vocabulary"]) for tree, info in zoo.trees.items()}
    families = {tree: info["family"] for tree, info in zoo.trees.items()}
    return WeightSet(str(root), records, vocabularies, roots, families=families)


def _read_split_csvs(root: Path) -> dict[tuple[str, int], str]:
    """(subset or "", model_idx) -> split from any CSV in `root` that has model_idx and split columns."""
    splits = {}
    for path in sorted(root.glob("*.csv")):
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                if "model_idx" in row and "split" in row:
                    splits[(row.get("subset", ""), int(row["model_idx"]))] = row["split"]
    return splits


def _snapshot_file(repo_dir: Path, filename: str) -> Path | None:
    ref = repo_dir / "refs" / "main"
    if not ref.is_file():
        return None
    path = repo_dir / "snapshots" / ref.read_text().strip() / filename
    return path if path.is_file() else None


def _from_model_j_cache(root: Path) -> WeightSet:
    splits = _read_split_csvs(root)
    records = []
    for repo_dir in sorted(root.glob("models--*")):
        match = _HF_CACHE_REPO.match(repo_dir.name)
        name_match = _MODEL_J_NAME.match(match["name"]) if match else None
        if not name_match:
            continue
        path = _snapshot_file(repo_dir, "model.safetensors")
        if path is None:
            continue
        subset, idx = name_match["subset"], int(name_match["idx"])
        targets = read_metadata(path).get("dataset_chosen_targets")
        labels = tuple(ast.literal_eval(targets)) if targets else ()
        split = splits.get((subset, idx), splits.get(("", idx)))
        records.append(WeightRecord(subset, f"{match['org']}/{match['name']}", split, labels, path, "classifier"))
    vocabularies = {
        tree: sorted({label for r in records if r.tree == tree for label in r.labels}) for tree in {r.tree for r in records}
    }
    return WeightSet(str(root), records, vocabularies, {tree: None for tree in vocabularies})


def _from_model_j_sd(root: Path) -> WeightSet:
    records = []
    for path in sorted(root.glob(f"*/model_idx_*/{LORA_FILE}")):
        match = _SD_MODEL_DIR.match(path.parent.name)
        if not match:
            continue
        split = path.parent.parent.name
        concept = read_metadata(path).get("imagenet_class_id", "")
        records.append(WeightRecord(root.name, f"{split}/{path.parent.name}", split, (concept,), path, "lora"))
    vocabulary = sorted({r.labels[0] for r in records})
    return WeightSet(str(root), records, {root.name: vocabulary}, {root.name: None})


def open_weight_set(path: str | Path) -> WeightSet:
    """Open a zoo folder or a Model-J folder (either layout) as a `WeightSet`.

    Raises:
        ValueError: `path` holds none of the known layouts.
    """
    root = Path(path)
    if (root / "zoo.json").is_file():
        return _from_zoo(root)
    if any(root.glob("models--*")):
        return _from_model_j_cache(root)
    if any(root.glob(f"*/model_idx_*/{LORA_FILE}")):
        return _from_model_j_sd(root)
    raise ValueError(
        f"{root} holds neither an hf_probex zoo (zoo.json) nor a Model-J layout "
        f"(models--ProbeX--Model-J__*/ or <split>/model_idx_*/{LORA_FILE})"
    )
