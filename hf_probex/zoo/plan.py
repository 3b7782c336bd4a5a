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
from .recipes import draw, draw_storage, pick, pick_recipe

#: zoo.json format: 2 added recipe families, storage, class counts and orders, third generations.
PLAN_FORMAT = "hf-probex-zoo/2"
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
    hparams: dict = field(default_factory=dict)  # the recipe's draws, storage, head and label order
    recipe: str = ""  # the recipe family (hf_probex.zoo.recipes) its hyper-parameters were drawn from
    card: str = "complete"
    named_labels: bool = True  # config.json id2label carries class names (else LABEL_i)

    def to_dict(self) -> dict:
        return asdict(self)


def tree_org(tree: str) -> str:
    return f"{ORG_PREFIX}-{tree}"


def _rng(seed: int, tree: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(tree.encode()), index])


def _pick_parent(rng: np.random.Generator, tree: TreePreset, earlier: list[ModelSpec]) -> ModelSpec:
    """The root, or (second and third generations, as chains are on the Hub) an earlier child one generation up
    that holds whole weights (people fine-tune a model, not a peft adapter folder)."""
    draw_generation = rng.random()
    for generation, share in ((3, tree.third_generation), (2, tree.second_generation + tree.third_generation)):
        parents = [s for s in earlier if s.generation == generation - 1 and s.role == "child"
                   and s.hparams.get("layout") != "peft-adapter"]
        if draw_generation < share and parents:
            return parents[int(rng.integers(len(parents)))]
    return earlier[0]


def _pick_labels(rng: np.random.Generator, tree: TreePreset, classes: list[str], parent: ModelSpec,
                 hparams: dict) -> list[str]:
    """A child's classes in its training order (id2label's): as many as its parent's when it keeps the parent's
    head, else a count from the preset's range; vocabulary order or shuffled. Records `head` and `label_order`."""
    low, high = tree.subset_size
    inherited = rng.random() < tree.inherited_head and low <= len(parent.labels) <= high
    counts = [n for n in range(low, high + 1) if n != len(parent.labels)] or [low]
    count = len(parent.labels) if inherited else int(pick(rng, counts))
    chosen = np.sort(rng.choice(len(classes), size=count, replace=False))
    shuffled = rng.random() < tree.shuffled_labels
    if shuffled:
        chosen = rng.permutation(chosen)
    hparams.update(head="inherited" if inherited else "fresh", label_order="shuffled" if shuffled else "sorted")
    return [classes[i] for i in chosen]


def _swap_in_unseen(rng: np.random.Generator, tree: TreePreset, spec: ModelSpec) -> None:
    """Make `spec` a model of classes outside the tree's vocabulary too: one or two of its classes replaced by unseen
    categories, kept out of every expert's training (split test_holdout)."""
    count = min(len(spec.labels) - 1, 1 + int(rng.random() < 0.5)) or 1
    positions = rng.choice(len(spec.labels), size=count, replace=False)
    unseen = rng.choice(len(tree.unseen_categories), size=count, replace=False)
    for position, category in zip(positions, unseen):
        spec.labels[int(position)] = tree.unseen_categories[int(category)]
    spec.split = HOLDOUT_SPLITS[1]


def sd_concepts(tree: TreePreset) -> list[DigitClass]:
    """The concepts a LoRA tree draws from (digit x style classes the root never drew)."""
    return vocabulary(tree.styles)


def concept_record(cls: DigitClass) -> dict:
    return {"id": f"{cls.style}-{cls.digit}", "name": cls.name, "prompt": cls.prompt}


def _plan_tree(tree_name: str, tree: TreePreset, seed: int) -> tuple[list[ModelSpec], dict]:
    org = tree_org(tree_name)
    is_lora, is_text = tree.family == "sd-lora", bool(tree.categories)
    root = ModelSpec(
        tree=tree_name,
        name="root",
        repo_id=tree.root_repo_id or f"{org}/{tree_name}-root",
        role="root",
        parent=None,
        generation=0,
        split=None,
        seed=tree.root_seed,
        labels=[] if is_text else [c.name for c in vocabulary(tree.root_styles)],
        hparams={**draw(tree.root, _rng(seed, tree_name, 0)), "dtype": "float32", "sharded": False},
        recipe=tree.root.name,
        card="original" if tree.root_repo_id else "complete",
    )
    specs = [root]
    classes = sd_concepts(tree) if is_lora else None
    names = list(tree.categories) if is_text else [c.name for c in classes or vocabulary(tree.styles)]
    holdout: set[int] = set()
    if is_lora:
        order = np.random.default_rng([seed, zlib.crc32(tree_name.encode()), 10**6]).permutation(len(classes))
        holdout = {int(i) for i in order[: tree.holdout_concepts]}
    holdout_sorted = sorted(holdout)
    prefix = "lora" if is_lora else "ft"
    unseen_names = list(tree.unseen_categories) if is_text else [c.name for c in vocabulary(tree.unseen_styles)]
    for index in range(1, tree.n_children + tree.n_unseen + 1):
        rng = _rng(seed, tree_name, index)
        recipe = pick_recipe(rng, tree.recipes)
        spec = ModelSpec(
            tree=tree_name,
            name=f"{prefix}-{index:04d}",
            repo_id=f"{org}/{tree_name}-{prefix}-{index:04d}",
            role="child",
            parent="root",
            generation=1,
            split=None,
            seed=int(rng.integers(2**31 - 1)),
            hparams={**draw(recipe, rng), **draw_storage(tree.storage, rng)},
            recipe=recipe.name,
            card=str(rng.choice(CARD_STYLES, p=_CARD_WEIGHTS)),
            named_labels=bool(rng.random() < 0.6),
        )
        if is_lora:
            # Each concept gets LoRAs in turn, so every concept has several models.
            concept_index = int(rng.integers(len(classes)))
            spec.concept = concept_record(classes[concept_index])
            spec.hparams["n_training_samples"] = int(pick(rng, tree.images_per_concept))
            if concept_index in holdout:
                half = holdout_sorted.index(concept_index) % 2
                spec.split = HOLDOUT_SPLITS[half]
            else:
                spec.split = str(rng.choice(SPLITS, p=_SPLIT_WEIGHTS))
        else:
            unseen = index > tree.n_children  # trained only on classes outside the vocabulary
            parent = _pick_parent(rng, tree, specs)
            spec.parent, spec.generation = parent.name, parent.generation + 1
            spec.labels = _pick_labels(rng, tree, unseen_names if unseen else names, parent, spec.hparams)
            if is_text:
                spec.hparams["texts_per_class"] = pick(rng, tree.texts_per_class)
            else:
                spec.hparams["images_per_class"] = pick(rng, tree.images_per_class)
            spec.split = str(rng.choice(SPLITS, p=_SPLIT_WEIGHTS))
            if parent.split in SPLITS:  # the root has none
                # a fine-tune of a child goes where its parent went: a held-out grandchild is not half-seen through
                # its parent, and a training one's edge calibrates lineage (its parent is among the candidates)
                spec.split = parent.split
            if unseen:
                spec.split = HOLDOUT_SPLITS[(index - tree.n_children - 1) % 2]
            elif is_text and tree.unseen_categories and rng.random() < tree.unseen_share:
                _swap_in_unseen(rng, tree, spec)
        specs.append(spec)
    info = {
        "family": tree.family,
        "org": org,
        "root_repo_id": root.repo_id,
        "architecture": tree.architecture,
        "vocabulary": names,
        "holdout_concepts": [names[i] for i in holdout_sorted] + unseen_names,
        "n_children": tree.n_children + tree.n_unseen,
        "recipes": {r.name: r.share for r in tree.recipes},
    }
    return specs, info


def make_plan(preset: ZooPreset, seed: int) -> dict:
    """The full plan of a zoo as a JSON-able dict: {"preset", "seed", "trees": {...}, "models": [...]}."""
    trees, models = {}, []
    for tree_name, tree in preset.trees.items():
        specs, info = _plan_tree(tree_name, tree, seed)
        trees[tree_name] = info
        models.extend(s.to_dict() for s in specs)
    return {"format": PLAN_FORMAT, "preset": preset.name, "seed": seed, "trees": trees, "models": models}
