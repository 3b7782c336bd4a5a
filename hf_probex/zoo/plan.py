"""The zoo plan: every model's ground truth and hyper-parameters, drawn deterministically from a seed.

The plan is written to `zoo.json` before any training, so a resumed build trains exactly the models
a fresh build would. Each child's draw depends only on (seed, tree, index): growing `n_children`
keeps every existing child as it was.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field

import numpy as np

from .data import DigitClass, vocabulary
from .presets import TreePreset, ZooPreset

ORG_PREFIX = "probex-zoo"
SPLITS = ("train", "val", "test")
HOLDOUT_SPLITS = ("val_holdout", "test_holdout")
CARD_STYLES = ("complete", "no_base_model", "no_data", "none")
_CARD_WEIGHTS = (0.5, 0.2, 0.15, 0.15)
_SPLIT_WEIGHTS = (0.7, 0.1, 0.2)


@dataclass
class ModelSpec:
    """One model of the zoo as planned: identity, lineage, ground truth, hyper-parameters, card style."""

    tree: str
    name: str
    repo_id: str
    role: str  # "root" | "child"
    parent: str | None  # name of the parent model within the tree
    generation: int
    split: str | None
    seed: int
    labels: list[str] = field(default_factory=list)  # discriminative: the classes it was trained on
    concept: dict | None = None  # LoRA: {"id", "name", "prompt"}
    hparams: dict = field(default_factory=dict)
    card: str = "complete"
    named_labels: bool = True  # config.json id2label carries class names (else LABEL_i)

    def to_dict(self) -> dict:
        return asdict(self)


def tree_org(tree: str) -> str:
    return f"{ORG_PREFIX}-{tree}"


def _rng(seed: int, tree: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(tree.encode()), index])


def _pick(rng: np.random.Generator, options: tuple):
    return options[int(rng.integers(len(options)))]


def _child_hparams(rng: np.random.Generator, tree: TreePreset) -> dict:
    recipe = tree.child
    hparams = {
        "learning_rate": float(_pick(rng, recipe.learning_rates)),
        "batch_size": int(_pick(rng, recipe.batch_sizes)),
        "lr_scheduler_type": str(_pick(rng, recipe.schedulers)),
    }
    if recipe.steps:
        hparams["max_train_steps"] = int(_pick(rng, recipe.steps))
        hparams["n_training_samples"] = int(_pick(rng, tree.images_per_concept))
    else:
        hparams["num_epochs"] = int(_pick(rng, recipe.epochs))
        hparams["random_crop"] = bool(_pick(rng, recipe.augment))
        hparams["images_per_class"] = recipe.images_per_class
    return hparams


def sd_concepts(tree: TreePreset) -> list[DigitClass]:
    """The concepts a LoRA tree draws from (digit x style classes the root never drew)."""
    return vocabulary(tree.styles)


def concept_record(cls: DigitClass) -> dict:
    return {"id": f"{cls.style}-{cls.digit}", "name": cls.name, "prompt": cls.prompt}


def _plan_tree(tree_name: str, tree: TreePreset, seed: int) -> tuple[list[ModelSpec], dict]:
    org = tree_org(tree_name)
    root = ModelSpec(
        tree=tree_name,
        name="root",
        repo_id=f"{org}/{tree_name}-root",
        role="root",
        parent=None,
        generation=0,
        split=None,
        seed=tree.root_seed,
        labels=[c.name for c in vocabulary(tree.root_styles)],
        hparams={
            "learning_rate": tree.root.learning_rates[0],
            "batch_size": tree.root.batch_sizes[0],
            "lr_scheduler_type": tree.root.schedulers[0],
            **({"max_train_steps": tree.root.steps[0]} if tree.root.steps else {"num_epochs": tree.root.epochs[0]}),
        },
    )
    specs = [root]
    is_lora = tree.family == "sd-lora"
    classes = sd_concepts(tree) if is_lora else vocabulary(tree.styles)
    holdout: set[int] = set()
    if is_lora:
        order = np.random.default_rng([seed, zlib.crc32(tree_name.encode()), 10**6]).permutation(len(classes))
        holdout = {int(i) for i in order[: tree.holdout_concepts]}
    holdout_sorted = sorted(holdout)
    prefix = "lora" if is_lora else "ft"
    for index in range(1, tree.n_children + 1):
        rng = _rng(seed, tree_name, index)
        spec = ModelSpec(
            tree=tree_name,
            name=f"{prefix}-{index:04d}",
            repo_id=f"{org}/{tree_name}-{prefix}-{index:04d}",
            role="child",
            parent="root",
            generation=1,
            split=None,
            seed=int(rng.integers(2**31 - 1)),
            hparams=_child_hparams(rng, tree),
            card=str(rng.choice(CARD_STYLES, p=_CARD_WEIGHTS)),
            named_labels=bool(rng.random() < 0.6),
        )
        if is_lora:
            # Each concept gets LoRAs in turn, so every concept has several models.
            concept_index = int(rng.integers(len(classes)))
            spec.concept = concept_record(classes[concept_index])
            if concept_index in holdout:
                half = holdout_sorted.index(concept_index) % 2
                spec.split = HOLDOUT_SPLITS[half]
            else:
                spec.split = str(rng.choice(SPLITS, p=_SPLIT_WEIGHTS))
        else:
            chosen = np.sort(rng.choice(len(classes), size=tree.subset_size, replace=False))
            spec.labels = [classes[i].name for i in chosen]
            spec.split = str(rng.choice(SPLITS, p=_SPLIT_WEIGHTS))
            # Second-generation children (every k-th) fine-tune an earlier child, as chains do on the Hub.
            if tree.second_generation > 0 and index % round(1 / tree.second_generation) == 0:
                parent = specs[int(rng.integers(1, index))]
                if parent.generation == 1:
                    spec.parent, spec.generation = parent.name, 2
        specs.append(spec)
    info = {
        "family": tree.family,
        "org": org,
        "root_repo_id": root.repo_id,
        "architecture": tree.architecture,
        "vocabulary": [c.name for c in classes],
        "holdout_concepts": [classes[i].name for i in holdout_sorted],
        "n_children": tree.n_children,
    }
    return specs, info


def make_plan(preset: ZooPreset, seed: int) -> dict:
    """The full plan of a zoo as a JSON-able dict: {"preset", "seed", "trees": {...}, "models": [...]}."""
    trees, models = {}, []
    for tree_name, tree in preset.trees.items():
        specs, info = _plan_tree(tree_name, tree, seed)
        trees[tree_name] = info
        models.extend(s.to_dict() for s in specs)
    return {"format": "hf-probex-zoo/1", "preset": preset.name, "seed": seed, "trees": trees, "models": models}
