"""One reader for our zoos and the official Model-J layouts (fixtures written in exactly that layout)."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

from hf_probex.weightsets import open_weight_set

CIFAR_SOME = ["apple", "bear", "cloud", "maple_tree", "rocket", "whale"]


def _write_model_j_cache(root, n=4):
    """The HF-cache layout of Model-J's discriminative subsets, with the split CSV beside it."""
    rows = ["model_idx,split"]
    for idx in range(n):
        repo = root / f"models--ProbeX--Model-J__SupViT__model_idx_{idx:04d}"
        sha = f"{idx:040x}"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(sha)
        snapshot = repo / "snapshots" / sha
        snapshot.mkdir(parents=True)
        labels = CIFAR_SOME[idx % 3 : idx % 3 + 3]
        tensors = {"vit.encoder.layer.7.attention.output.dense.weight": np.full((4, 4), idx, dtype=np.float32)}
        save_file(tensors, str(snapshot / "model.safetensors"), metadata={"format": "pt", "dataset_chosen_targets": repr(labels)})
        rows.append(f"{idx},{'train' if idx < n - 1 else 'test'}")
    (root / "SupViT.csv").write_text("\n".join(rows) + "\n")


def _write_model_j_sd(root):
    for split, idx, wnid in (("train", 1, "n02111277"), ("train", 2, "n01440764"), ("val_holdout", 3, "n02099601")):
        folder = root / split / f"model_idx_{idx:04d}"
        folder.mkdir(parents=True)
        key = "unet.down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_q"
        tensors = {f"{key}.lora.down.weight": np.ones((2, 8), np.float32), f"{key}.lora.up.weight": np.ones((8, 2), np.float32)}
        save_file(tensors, str(folder / "pytorch_lora_weights.safetensors"), metadata={"imagenet_class_id": wnid})


def test_model_j_hf_cache_layout(tmp_path):
    _write_model_j_cache(tmp_path)
    weights = open_weight_set(tmp_path)
    assert weights.trees == ["SupViT"]
    records = weights.for_tree("SupViT")
    assert [r.model_id for r in records] == [f"ProbeX/Model-J__SupViT__model_idx_{i:04d}" for i in range(4)]
    assert records[1].labels == ("bear", "cloud", "maple_tree")
    assert [r.split for r in records] == ["train", "train", "train", "test"]
    assert weights.vocabularies["SupViT"] == sorted({label for r in records for label in r.labels})
    assert all(r.path.name == "model.safetensors" and r.kind == "classifier" for r in records)


def test_model_j_sd_layout(tmp_path):
    root = tmp_path / "SD_200"
    _write_model_j_sd(root)
    weights = open_weight_set(root)
    records = weights.for_tree("SD_200")
    assert [(r.split, r.labels) for r in records] == [
        ("train", ("n02111277",)), ("train", ("n01440764",)), ("val_holdout", ("n02099601",))
    ]
    assert len(weights.for_tree("SD_200", splits=("val_holdout",))) == 1


def test_zoo_through_the_same_interface(tiny_zoo):
    weights = open_weight_set(tiny_zoo.root)
    assert weights.trees == ["resnet", "sd", "vit", "vit-twin"]
    vit = weights.for_tree("vit")
    assert len(vit) == len(tiny_zoo.specs("vit")) - 1
    spec = tiny_zoo.spec("vit", "ft-0001")
    record = next(r for r in vit if r.model_id == spec.repo_id)
    assert record.labels == tuple(spec.labels) and record.split == spec.split
    assert {r.kind for r in weights.for_tree("sd")} == {"lora"}
    assert (weights.roots["vit"] / "model.safetensors").is_file()


def test_unknown_layout_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="neither an hf_probex zoo"):
        open_weight_set(tmp_path)
