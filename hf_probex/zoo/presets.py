"""Zoo presets: which trees a zoo holds, how big their models are, and how hard children train.

`tiny` builds in seconds for tests (no strong signal needed); `small` is the smallest zoo whose
children carry a measurable signal (one ResNet tree, about 20 s; for the expert tests); `bench` is
the benchmark zoo, sized by the measured signal study in docs/zoo.md. A preset is plain data; the
tree families in `hf_probex.zoo.trees` know how to turn it into models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ZooError


@dataclass(frozen=True)
class TrainingRecipe:
    """How a root is trained, or the ranges from which each child's nuisance hyper-parameters are drawn."""

    epochs: tuple[int, ...]
    learning_rates: tuple[float, ...]
    batch_sizes: tuple[int, ...] = (64,)
    schedulers: tuple[str, ...] = ("constant",)
    augment: tuple[bool, ...] = (False,)
    images_per_class: int | None = None  # None: every training image of the class
    steps: tuple[int, ...] = ()  # LoRA trees train by steps, not epochs


@dataclass(frozen=True)
class TreePreset:
    """One model tree: a root and its children, all of one family."""

    family: str  # key of hf_probex.zoo.trees.FAMILIES
    n_children: int
    architecture: dict
    root: TrainingRecipe
    child: TrainingRecipe
    root_styles: tuple[str, ...] = ("original",)
    styles: tuple[str, ...] = ("original", "rotated", "inverted", "thick")
    subset_size: int = 20  # classes per child (discriminative trees)
    second_generation: float = 0.05  # share of children fine-tuned from another child
    holdout_concepts: int = 0  # LoRA trees: concepts kept out of expert training (zero-shot splits)
    images_per_concept: tuple[int, ...] = (8,)
    root_seed: int = 0


@dataclass(frozen=True)
class ZooPreset:
    name: str
    trees: dict[str, TreePreset] = field(default_factory=dict)
    description: str = ""


_VIT_BENCH = dict(image_size=28, patch_size=7, hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256)
_VIT_TINY = dict(image_size=28, patch_size=7, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
_RESNET_BENCH = dict(embedding_size=32, hidden_sizes=[32, 64, 128], depths=[1, 1, 1], layer_type="basic")
_RESNET_TINY = dict(embedding_size=8, hidden_sizes=[8, 16, 32], depths=[1, 1, 1], layer_type="basic")
_UNET_BENCH = dict(sample_size=16, block_out_channels=[32, 64], layers_per_block=1, attention_head_dim=8, norm_num_groups=8, lora_rank=4)
_UNET_TINY = dict(sample_size=16, block_out_channels=[16, 32], layers_per_block=1, attention_head_dim=8, norm_num_groups=8, lora_rank=4)
_SD_STYLES = ("rotated", "inverted", "mirrored", "thick", "thin")

_CHILD_BENCH = TrainingRecipe(
    epochs=(5, 6, 7),
    learning_rates=(1e-3, 2e-3),
    batch_sizes=(32, 64),
    schedulers=("constant", "linear", "cosine"),
    augment=(False, True),
    images_per_class=100,
)
# `small`: many more, harder-trained children than tiny (30 images per class, 3 epochs at a high learning
# rate move the weights; a narrower nuisance than bench), on a vocabulary half new to the root.
_CHILD_SMALL = TrainingRecipe(
    epochs=(3,), learning_rates=(2e-3, 3e-3), batch_sizes=(32,), schedulers=("constant", "linear"), images_per_class=30
)
_CHILD_TINY = TrainingRecipe(epochs=(1,), learning_rates=(1e-3, 2e-3), batch_sizes=(32,), schedulers=("constant", "linear"),
                             augment=(False, True), images_per_class=8)


def _classifier(family: str, n: int, arch: dict, root_epochs: int, child: TrainingRecipe, root_seed: int = 0, **kw) -> TreePreset:
    return TreePreset(
        family=family,
        n_children=n,
        architecture=arch,
        root=TrainingRecipe(epochs=(root_epochs,), learning_rates=(1e-3,), batch_sizes=(64,), schedulers=("cosine",)),
        child=child,
        root_seed=root_seed,
        **kw,
    )


PRESETS: dict[str, ZooPreset] = {
    "tiny": ZooPreset(
        name="tiny",
        description="a few small models per tree, built in seconds; for tests, no strong signal",
        trees={
            "vit": _classifier("vit", 6, _VIT_TINY, 1, _CHILD_TINY, second_generation=0.2),
            "vit-twin": _classifier("vit", 3, _VIT_TINY, 1, _CHILD_TINY, root_seed=1),
            "resnet": _classifier("resnet", 4, _RESNET_TINY, 1, _CHILD_TINY),
            "sd": TreePreset(
                family="sd-lora",
                n_children=8,
                architecture=_UNET_TINY,
                root=TrainingRecipe(epochs=(1,), learning_rates=(1e-3,), batch_sizes=(16,), steps=(20,)),
                child=TrainingRecipe(epochs=(1,), learning_rates=(1e-3,), batch_sizes=(4,), steps=(3,)),
                styles=_SD_STYLES,
                second_generation=0.0,
                holdout_concepts=10,
                images_per_concept=(4,),
            ),
        },
    ),
    "small": ZooPreset(
        name="small",
        description="the smallest zoo whose children carry a measurable signal (one ResNet tree, ~20 s); for the expert tests",
        trees={
            # 20 classes (plain and rotated digits; the root knows only the plain ones), 10 per child, so
            # each label is in about half the children. A vocabulary of the plain digits alone (every class
            # known to the root) gave almost no signal, even with well-trained children (docs/zoo.md).
            "resnet": _classifier(
                "resnet", 64, _RESNET_TINY, 3, _CHILD_SMALL, styles=("original", "rotated"), subset_size=10
            ),
        },
    ),
    "bench": ZooPreset(
        name="bench",
        description="the benchmark zoo: many strongly fine-tuned children per tree (about an hour on 2 cores)",
        trees={
            "vit": _classifier("vit", 500, _VIT_BENCH, 20, _CHILD_BENCH),
            "vit-twin": _classifier("vit", 200, _VIT_BENCH, 20, _CHILD_BENCH, root_seed=1),
            "resnet": _classifier("resnet", 500, _RESNET_BENCH, 12, _CHILD_BENCH),
            "sd": TreePreset(
                family="sd-lora",
                n_children=500,
                architecture=_UNET_BENCH,
                root=TrainingRecipe(epochs=(1,), learning_rates=(1e-3,), batch_sizes=(32,), steps=(800,)),
                child=TrainingRecipe(epochs=(1,), learning_rates=(1e-3, 2e-3), batch_sizes=(4,), steps=(30, 45, 60)),
                styles=_SD_STYLES,
                second_generation=0.0,
                holdout_concepts=12,
                images_per_concept=(5, 10),
            ),
        },
    ),
}


def get_preset(name: str) -> ZooPreset:
    """Look up a preset by name; the error lists the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ZooError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
