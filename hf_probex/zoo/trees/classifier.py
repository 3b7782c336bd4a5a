"""Discriminative trees: a transformers image classifier root and fully fine-tuned children.

The root learns the plain digits; each child is a copy fine-tuned (all weights, fresh head) on a
random subset of the tree's digit x style vocabulary with sampled nuisance hyper-parameters, as in
Model-J. The child's classes are written to `dataset_chosen_targets` in the safetensors metadata.
"""

from __future__ import annotations

import warnings
import json
from pathlib import Path

import numpy as np
import torch

from ..data import DigitClass, labelled_set, load_digits, vocabulary
from ..plan import ModelSpec
from ..presets import TreePreset
from ..training import accuracy, fit_classifier
from .base import TreeFamily, write_safetensors_metadata

WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _classes_by_name(tree: TreePreset) -> dict[str, DigitClass]:
    styles = tree.styles + tuple(s for s in tree.root_styles + tree.unseen_styles if s not in tree.styles)
    return {c.name: c for c in vocabulary(tuple(dict.fromkeys(styles)))}


class ImageClassifierFamily(TreeFamily):
    """Shared training and saving for transformers `*ForImageClassification` trees."""

    library_name = "transformers"
    pipeline_tag = "image-classification"

    #: transformers class names of the family's config and model.
    config_class_name: str
    model_class_name: str

    @property
    def model_class(self) -> type:
        """The transformers class that loads this family's saved models."""
        import transformers

        return getattr(transformers, self.model_class_name)

    def new_model(self, architecture: dict, labels: list[str]) -> torch.nn.Module:
        """A randomly initialised classifier of this family for `labels`."""
        import transformers

        config = getattr(transformers, self.config_class_name)(num_channels=1, **architecture, **label_maps(labels))
        return self.model_class(config)

    def weight_files(self, spec: ModelSpec) -> list[str]:
        return [INDEX_NAME if spec.hparams.get("sharded") else WEIGHTS_NAME]

    def _train_and_save(self, model, spec: ModelSpec, tree: TreePreset, out: Path) -> dict:
        data = load_digits()
        classes = [_classes_by_name(tree)[name] for name in spec.labels]
        rng = np.random.default_rng(spec.seed)
        hp = spec.hparams
        train_x, train_y = labelled_set(data, classes, "train", hp.get("images_per_class"), rng)
        test_x, test_y = labelled_set(data, classes, "test", None, rng)
        trained = apply_recipe(model, hp)
        options = dict(
            epochs=hp["num_epochs"], learning_rate=hp["learning_rate"], batch_size=hp["batch_size"],
            scheduler=hp["lr_scheduler_type"], augment=hp.get("random_crop", False), optimizer=hp.get("optimizer", "adamw"),
            weight_decay=hp.get("weight_decay", 0.01), label_smoothing=hp.get("label_smoothing", 0.0),
        )
        for attempt in range(3):  # a child under the floor trains its recipe again: nobody publishes a 10 % model
            fit_classifier(trained, train_x, train_y, seed=spec.seed + attempt, **options)
            test_accuracy = accuracy(trained, test_x, test_y)
            if test_accuracy >= tree.min_accuracy:
                break
        if trained is not model:  # a peft LoRA: merged into the weights, saved as a plain transformers model
            model = trained.merge_and_unload()
        for param in model.parameters():
            param.requires_grad_(True)
        save_classifier(model, out, hp, {
            # Model-J's key: the Python repr of the class list (in the model's own label order)
            "dataset_chosen_targets": repr(list(spec.labels)),
            "tree": spec.tree,
            "base_model": spec.parent or "",
            "seed": str(spec.seed),
            "recipe": spec.recipe,
            **{k: str(v) for k, v in hp.items()},
        })
        return {"test_accuracy": test_accuracy, "train_images": int(len(train_x)), "test_images": int(len(test_x)),
                "epochs_trained": hp["num_epochs"] * (attempt + 1)}

    def build_root(self, spec: ModelSpec, tree: TreePreset, out: Path) -> dict:
        torch.manual_seed(spec.seed)
        model = self.new_model(tree.architecture, spec.labels)
        # The root's data order depends on its seed too: vit-twin differs from vit in both.
        return self._train_and_save(model, spec, tree, out)

    def build_child(self, spec: ModelSpec, tree: TreePreset, parent_dir: Path, out: Path, parent_repo_id: str) -> dict:
        # Many Hub fine-tunes keep the generic LABEL_i names; the zoo has both kinds.
        names = spec.labels if spec.named_labels else [f"LABEL_{i}" for i in range(len(spec.labels))]
        torch.manual_seed(spec.seed)
        # float32 whatever the parent was saved in; a head of another size is re-initialised by transformers
        model = self.model_class.from_pretrained(parent_dir, dtype=torch.float32, ignore_mismatched_sizes=True,
                                                 **label_maps(names))
        parent_labels = len(json.loads((parent_dir / "config.json").read_text())["id2label"])
        if spec.hparams.get("head") == "fresh" and parent_labels == len(names):
            for module in head_of(model).modules():  # same size as the parent's, but this recipe starts afresh
                model._init_weights(module)
        return self._train_and_save(model, spec, tree, out)

    def card_facts(self, spec: ModelSpec) -> dict:
        return {"tags": ["image-classification", "digits", "hf-probex-zoo"]}


def label_maps(names: list[str]) -> dict:
    """The config keys of a classifier of `names`, in head-row order (transformers' num_labels, id2label, label2id)."""
    return {"num_labels": len(names), "id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}


def head_of(model: torch.nn.Module) -> torch.nn.Module:
    """The classification head of a transformers `*For*Classification` (ViT, BERT: a Linear; ResNet: Flatten + Linear)."""
    return model.classifier


def apply_recipe(model: torch.nn.Module, hparams: dict, task_type: str | None = None) -> torch.nn.Module:
    """Freeze the input-side share `frozen` of the backbone's tensors, or wrap the model in a peft LoRA on the
    modules the recipe names (`lora_targets`), else on every linear and convolution of the backbone (the head
    trained fully; `task_type` as peft names the task, where its users name it); returns the module to train."""
    head = {id(p) for p in head_of(model).parameters()}
    backbone = [(name, p) for name, p in model.named_parameters() if id(p) not in head]
    for _, param in backbone[: round(hparams.get("frozen", 0.0) * len(backbone))]:
        param.requires_grad_(False)
    if not hparams.get("lora_rank"):
        return model
    from peft import LoraConfig, get_peft_model

    head_modules = {id(m) for m in head_of(model).modules()}
    targets = hparams.get("lora_targets") or [
        name for name, module in model.named_modules()
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) and id(module) not in head_modules]
    config = LoraConfig(r=hparams["lora_rank"], lora_alpha=hparams["lora_alpha"], target_modules=targets,
                        modules_to_save=["classifier"], task_type=task_type)
    with warnings.catch_warnings():  # peft asks transformers a deprecated property: nothing the user can act on
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return get_peft_model(model, config)


def save_classifier(model: torch.nn.Module, out: Path, hparams: dict, metadata: dict[str, str]) -> None:
    """Save in the recipe's dtype, sharded (about three shards) or not, every file carrying `metadata`."""
    model.to(DTYPES[hparams.get("dtype", "float32")])
    options = {}
    if hparams.get("sharded"):
        total = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        largest = max(t.numel() * t.element_size() for t in model.state_dict().values())
        options["max_shard_size"] = max(total // 3, largest) + 1
    model.save_pretrained(out, **options)
    for path in sorted(out.glob("*.safetensors")) if metadata else ():
        write_safetensors_metadata(path, metadata)


class ViTFamily(ImageClassifierFamily):
    """transformers `ViTForImageClassification` on 28x28 one-channel digits."""

    config_class_name = "ViTConfig"
    model_class_name = "ViTForImageClassification"


class ResNetFamily(ImageClassifierFamily):
    """transformers `ResNetForImageClassification` on 28x28 one-channel digits."""

    config_class_name = "ResNetConfig"
    model_class_name = "ResNetForImageClassification"
