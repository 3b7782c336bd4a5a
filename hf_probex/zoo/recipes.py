"""Recipe families: the documented distribution from which each child's training recipe is drawn.

A real tree is fine-tuned by strangers with their own tools, so a zoo whose children share one recipe
teaches experts that recipe's artefacts (issue 12). A `Recipe` is one family of recipes as a tool or a
habit produces them (the Trainer's AdamW, SGD with momentum, Adam with label smoothing, a partial
fine-tune with frozen blocks, a peft LoRA merged into the weights; for LoRA trees the diffusers
script, peft and kohya-ss, each with its own file format), given as ranges; `draw` turns one family
into the concrete hyper-parameters of one child. Every draw is recorded in zoo.json (`hparams`, and
the family in `recipe`), so benchmarks can hold a family out and ask how experts fare on it.

Storage varies independently of the recipe (`StorageMix`: float32 / float16 / bfloat16, sharded or not),
as do the class count, label order, head and generation (see `TreePreset`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The optimisers a classifier recipe may name (hf_probex.zoo.training.make_optimizer builds them).
OPTIMIZERS = ("adamw", "adam", "sgd")
#: LoRA file formats: diffusers' `save_lora_weights`, raw peft (`adapter_model.safetensors`), kohya-ss.
KEY_FORMATS = ("diffusers", "peft", "kohya")
#: How a text tree's child is saved, as the tools people use save it (hf_probex.zoo.trees.text): a transformers
#: sequence classifier, a peft adapter folder or the adapter merged into a classifier, a sentence-transformers
#: folder, a SetFit model (a sentence-transformers body and its head, the head as safetensors).
LAYOUTS = ("transformers", "peft-adapter", "peft-merged", "sentence-transformers", "setfit")


@dataclass(frozen=True)
class Recipe:
    """One recipe family: what a child's training draws from (one value per tuple, uniformly)."""

    name: str
    share: float  # of the tree's children
    optimizers: tuple[str, ...] = ("adamw",)
    learning_rate: tuple[float, float] = (1e-3, 1e-3)  # log-uniform [low, high]
    weight_decays: tuple[float, ...] = (0.0,)
    label_smoothings: tuple[float, ...] = (0.0,)
    schedulers: tuple[str, ...] = ("constant",)
    epochs: tuple[int, ...] = (3,)
    batch_sizes: tuple[int, ...] = (32,)
    augment: tuple[bool, ...] = (False,)
    frozen: tuple[float, ...] = (0.0,)  # share of the backbone's weight tensors frozen, from the input side
    lora_ranks: tuple[int, ...] = ()  # a peft LoRA (classifiers: merged into the weights after training)
    lora_alphas: tuple[float, ...] = (1.0,)  # lora_alpha as a multiple of the rank
    lora_targets: tuple[tuple[str, ...], ...] = ()  # LoRA trees: the module sets adapted
    steps: tuple[int, ...] = ()  # LoRA trees train by steps
    key_formats: tuple[str, ...] = ()  # LoRA trees: how the adapter is saved (KEY_FORMATS)
    layouts: tuple[str, ...] = ()  # text trees: how the child is saved (LAYOUTS)

    def __post_init__(self):
        unknown = (set(self.optimizers) - set(OPTIMIZERS) or set(self.key_formats) - set(KEY_FORMATS)
                   or set(self.layouts) - set(LAYOUTS))
        if unknown:
            raise ValueError(f"recipe {self.name!r} names unknown options {sorted(unknown)}")


@dataclass(frozen=True)
class StorageMix:
    """How children are saved: dtype shares and the share of sharded checkpoints."""

    dtypes: tuple[tuple[str, float], ...] = (("float32", 1.0),)
    sharded: float = 0.0


def pick(rng: np.random.Generator, options: tuple):
    """One of `options`, uniformly."""
    return options[int(rng.integers(len(options)))]


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    value = math.exp(rng.uniform(math.log(low), math.log(high))) if high > low else low
    return float(f"{value:.3g}")  # readable in cards and tables; the draw stays deterministic


def pick_recipe(rng: np.random.Generator, recipes: tuple[Recipe, ...]) -> Recipe:
    """One family, drawn by share."""
    shares = np.array([r.share for r in recipes], dtype=float)
    return recipes[int(rng.choice(len(recipes), p=shares / shares.sum()))]


def draw(recipe: Recipe, rng: np.random.Generator) -> dict:
    """The concrete hyper-parameters of one child of `recipe` (JSON-able; zoo.json and cards show them)."""
    hparams: dict = {
        "optimizer": str(pick(rng, recipe.optimizers)),
        "learning_rate": _log_uniform(rng, *recipe.learning_rate),
        "weight_decay": float(pick(rng, recipe.weight_decays)),
        "batch_size": int(pick(rng, recipe.batch_sizes)),
        "lr_scheduler_type": str(pick(rng, recipe.schedulers)),
    }
    if recipe.steps:
        hparams["max_train_steps"] = int(pick(rng, recipe.steps))
    else:
        hparams["num_epochs"] = int(pick(rng, recipe.epochs))
        hparams["random_crop"] = bool(pick(rng, recipe.augment))
        hparams["label_smoothing"] = float(pick(rng, recipe.label_smoothings))
        hparams["frozen"] = float(pick(rng, recipe.frozen))
    if recipe.lora_ranks:
        rank = int(pick(rng, recipe.lora_ranks))
        hparams["lora_rank"] = rank
        hparams["lora_alpha"] = float(rank * pick(rng, recipe.lora_alphas))
    if recipe.lora_targets:
        hparams["lora_targets"] = list(pick(rng, recipe.lora_targets))
    if recipe.key_formats:
        hparams["key_format"] = str(pick(rng, recipe.key_formats))
    if recipe.layouts:
        hparams["layout"] = str(pick(rng, recipe.layouts))
    return hparams


def draw_storage(storage: StorageMix, rng: np.random.Generator) -> dict:
    """{"dtype": ..., "sharded": ...} of one child."""
    names = [name for name, _ in storage.dtypes]
    shares = np.array([share for _, share in storage.dtypes], dtype=float)
    return {"dtype": names[int(rng.choice(len(names), p=shares / shares.sum()))],
            "sharded": bool(rng.random() < storage.sharded)}


def classifier_recipes(epochs: tuple[int, ...], long_epochs: tuple[int, ...], lr_scale: float = 1.0) -> tuple[Recipe, ...]:
    """The five families of the discriminative trees (`epochs` for the Adam families, `long_epochs` for those
    that move the weights less per epoch: SGD, frozen blocks, LoRA). `lr_scale` multiplies every learning rate
    range: transformers fine-tune at rates a convolutional network would barely notice, and at a ResNet's
    rates a ViT's layers grow tenfold (retrained, not fine-tuned)."""
    def lr(low: float, high: float) -> tuple[float, float]:
        return low * lr_scale, high * lr_scale

    return (
        # transformers' Trainer defaults and what most Hub fine-tunes run: AdamW with a decaying schedule
        Recipe("trainer-adamw", 0.3, ("adamw",), lr(5e-4, 5e-3), (0.0, 0.01, 0.05), (0.0,),
               ("linear", "cosine", "constant"), epochs, (16, 32, 64), (False, True)),
        # the torchvision / timm habit: SGD with momentum, higher rates, some label smoothing
        Recipe("sgd-momentum", 0.2, ("sgd",), lr(1e-2, 1e-1), (0.0, 5e-4), (0.0, 0.1), ("cosine", "constant"),
               long_epochs, (32, 64), (False, True)),
        # Adam without decoupled decay, label smoothing, gentle rates
        Recipe("adam-smoothing", 0.15, ("adam",), lr(1e-3, 5e-3), (0.0,), (0.1, 0.2), ("constant", "linear"),
               long_epochs, (16, 32)),
        # a partial fine-tune: the input-side quarter or half of the backbone frozen
        Recipe("partial-freeze", 0.15, ("adamw",), lr(2e-3, 1e-2), (0.0, 0.01), (0.0,), ("linear", "constant"),
               long_epochs, (32, 64), (False, True), frozen=(0.25, 0.5)),
        # a peft LoRA on every linear and convolution of the backbone (new head trained fully), merged
        Recipe("lora-merged", 0.2, ("adamw",), lr(3e-3, 2e-2), (0.0,), (0.0,), ("linear", "constant"),
               long_epochs, (32,), lora_ranks=(2, 4, 8), lora_alphas=(1.0, 2.0)),
    )


def lora_recipes(steps: tuple[int, ...], long_steps: tuple[int, ...]) -> tuple[Recipe, ...]:
    """The three families of the LoRA trees, each with the file format its tool writes."""
    qkvo, qkv = ("to_q", "to_k", "to_v", "to_out.0"), ("to_q", "to_k", "to_v")
    return (
        # diffusers' train_dreambooth_lora / train_text_to_image_lora: AdamW, constant rate, rank = alpha
        Recipe("diffusers-script", 0.4, ("adamw",), (5e-4, 2e-3), (1e-4,), schedulers=("constant",),
               batch_sizes=(4,), lora_ranks=(4,), lora_alphas=(1.0,), lora_targets=(qkvo,), steps=steps,
               key_formats=("diffusers",)),
        # a peft script: other ranks, alpha = 2 x rank, cosine decay, sometimes without the output projection
        Recipe("peft-script", 0.3, ("adamw",), (2e-4, 1e-3), (0.0, 1e-2), schedulers=("cosine", "linear"),
               batch_sizes=(2, 4), lora_ranks=(2, 8), lora_alphas=(2.0,), lora_targets=(qkvo, qkv), steps=long_steps,
               key_formats=("peft",)),
        # kohya-ss: alpha below the rank (often 1), Adam, more steps, its own key names and `.alpha` tensors
        Recipe("kohya", 0.3, ("adam",), (1e-3, 5e-3), (0.0,), schedulers=("constant", "cosine"), batch_sizes=(4, 8),
               lora_ranks=(4, 8), lora_alphas=(0.125, 0.5), lora_targets=(qkvo, qkv), steps=long_steps,
               key_formats=("kohya",)),
    )


def text_recipes(epochs: tuple[int, ...], long_epochs: tuple[int, ...]) -> tuple[Recipe, ...]:
    """The five families of the text trees, as users of a sentence encoder such as all-MiniLM-L6-v2 fine-tune it
    (`epochs` for full fine-tunes, `long_epochs` for those that move the weights less per epoch), each saved the
    way its tool saves (`LAYOUTS`)."""
    return (
        # the Trainer on a sequence-classification head: AdamW at transformers' usual rates, a decaying schedule
        Recipe("trainer-full", 0.3, ("adamw",), (3e-5, 1.5e-4), (0.0, 0.01), (0.0,), ("linear", "cosine", "constant"),
               epochs, (8, 16), layouts=("transformers",)),
        # the embeddings and bottom layers frozen, a higher rate on the rest
        Recipe("frozen-bottom", 0.15, ("adamw",), (1e-4, 3e-4), (0.0, 0.01), (0.0, 0.1), ("linear", "constant"),
               long_epochs, (8, 16), frozen=(0.25, 0.5), layouts=("transformers",)),
        # a peft LoRA on the attention (or every linear) module and a fresh head, kept as an adapter or merged
        Recipe("peft-lora", 0.2, ("adamw",), (5e-4, 2e-3), (0.0,), (0.0,), ("linear", "constant"), long_epochs, (8, 16),
               lora_ranks=(4, 8, 16), lora_alphas=(1.0, 2.0),
               lora_targets=(("query", "value"), ("query", "key", "value", "dense")),
               layouts=("peft-adapter", "peft-merged")),
        # sentence-transformers: a contrastive fine-tune on pairs of texts of one category, no head
        Recipe("sentence-transformers", 0.2, ("adamw",), (2e-5, 1e-4), (0.01,), schedulers=("linear", "constant"),
               epochs=long_epochs, batch_sizes=(8, 16), layouts=("sentence-transformers",)),
        # SetFit: the same contrastive body, then a logistic-regression head on its embeddings
        Recipe("setfit", 0.15, ("adamw",), (2e-5, 1e-4), (0.01,), schedulers=("linear",), epochs=epochs,
               batch_sizes=(8, 16), layouts=("setfit",)),
    )
