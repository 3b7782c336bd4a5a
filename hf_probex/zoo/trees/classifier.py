"""Discriminative trees: a transformers image classifier root and fully fine-tuned children.

The root learns the plain digits; each child is a copy fine-tuned (all weights, fresh head) on a
random subset of the tree's digit x style vocabulary with sampled nuisance hyper-parameters, as in
Model-J. The child's classes are written to `dataset_chosen_targets` in the safetensors metadata.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data import DigitClass, labelled_set, load_digits, vocabulary
from ..plan import ModelSpec
from ..presets import TreePreset
from ..training import accuracy, fit_classifier
from .base import TreeFamily, write_safetensors_metadata

WEIGHTS_NAME = "model.safetensors"


def _classes_by_name(tree: TreePreset) -> dict[str, DigitClass]:
    return {c.name: c for c in vocabulary(tree.styles + tuple(s for s in tree.root_styles if s not in tree.styles))}


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

        config = getattr(transformers, self.config_class_name)(num_channels=1, **architecture, **self._label_maps(labels))
        return self.model_class(config)

    def weight_files(self, spec: ModelSpec) -> list[str]:
        return [WEIGHTS_NAME]

    @staticmethod
    def _label_maps(names: list[str]) -> dict:
        return {"num_labels": len(names), "id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}

    def _train_and_save(self, model, spec: ModelSpec, tree: TreePreset, out: Path, per_class: int | None) -> dict:
        data = load_digits()
        classes = [_classes_by_name(tree)[name] for name in spec.labels]
        rng = np.random.default_rng(spec.seed)
        train_x, train_y = labelled_set(data, classes, "train", per_class, rng)
        test_x, test_y = labelled_set(data, classes, "test", None, rng)
        hp = spec.hparams
        fit_classifier(
            model,
            train_x,
            train_y,
            epochs=hp["num_epochs"],
            learning_rate=hp["learning_rate"],
            batch_size=hp["batch_size"],
            scheduler=hp["lr_scheduler_type"],
            augment=hp.get("random_crop", False),
            seed=spec.seed,
        )
        test_accuracy = accuracy(model, test_x, test_y)
        model.save_pretrained(out)
        write_safetensors_metadata(
            out / WEIGHTS_NAME,
            {
                # Model-J's key: the Python repr of the class list.
                "dataset_chosen_targets": repr(list(spec.labels)),
                "tree": spec.tree,
                "base_model": spec.parent or "",
                "seed": str(spec.seed),
                **{k: str(v) for k, v in hp.items()},
            },
        )
        return {"test_accuracy": test_accuracy, "train_images": int(len(train_x)), "test_images": int(len(test_x))}

    def build_root(self, spec: ModelSpec, tree: TreePreset, out: Path) -> dict:
        torch.manual_seed(spec.seed)
        model = self.new_model(tree.architecture, spec.labels)
        # The root's data order depends on its seed too: vit-twin differs from vit in both.
        return self._train_and_save(model, spec, tree, out, per_class=None)

    def build_child(self, spec: ModelSpec, tree: TreePreset, parent_dir: Path, out: Path) -> dict:
        # Many Hub fine-tunes keep the generic LABEL_i names; the zoo has both kinds.
        names = spec.labels if spec.named_labels else [f"LABEL_{i}" for i in range(len(spec.labels))]
        torch.manual_seed(spec.seed)
        model = self.model_class.from_pretrained(
            parent_dir, ignore_mismatched_sizes=True, **self._label_maps(names)
        )
        return self._train_and_save(model, spec, tree, out, per_class=spec.hparams.get("images_per_class"))

    def card_facts(self, spec: ModelSpec) -> dict:
        return {"tags": ["image-classification", "digits", "hf-probex-zoo"]}


class ViTFamily(ImageClassifierFamily):
    """transformers `ViTForImageClassification` on 28x28 one-channel digits."""

    config_class_name = "ViTConfig"
    model_class_name = "ViTForImageClassification"


class ResNetFamily(ImageClassifierFamily):
    """transformers `ResNetForImageClassification` on 28x28 one-channel digits."""

    config_class_name = "ResNetConfig"
    model_class_name = "ResNetForImageClassification"
