"""The zoo: structure, ground truth, real loadable files, lineage and card variety."""

from __future__ import annotations

import ast
import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from hf_probex.zoo import PRESETS, Zoo
from hf_probex.zoo.plan import make_plan
from hf_probex.zoo.report import summarize


def _metadata(path):
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata()


def test_tiny_zoo_has_every_tree_and_split(tiny_zoo):
    summary = summarize(tiny_zoo)
    preset = PRESETS["tiny"]
    assert set(summary["trees"]) == {"vit", "vit-twin", "resnet", "sd"}
    for name, tree in summary["trees"].items():
        assert tree["children_built"] == tree["children_planned"] == preset.trees[name].n_children
        assert (tiny_zoo.model_dir(name, "root")).is_dir()
    sd_splits = {s.split for s in tiny_zoo.specs("sd") if s.role == "child"}
    assert sd_splits & {"val_holdout", "test_holdout"}, "LoRA tree needs zero-shot splits"
    assert len(tiny_zoo.trees["sd"]["vocabulary"]) >= 40
    assert len(tiny_zoo.trees["sd"]["holdout_concepts"]) >= 6
    assert not (tiny_zoo.root / ".tmp").exists() or not any((tiny_zoo.root / ".tmp").iterdir())


def test_classifier_metadata_holds_model_j_ground_truth(tiny_zoo):
    for tree in ("vit", "vit-twin", "resnet"):
        for spec in tiny_zoo.specs(tree):
            meta = _metadata(tiny_zoo.model_dir(tree, spec.name) / "model.safetensors")
            assert ast.literal_eval(meta["dataset_chosen_targets"]) == spec.labels
            assert meta["format"] == "pt"
            if spec.role == "child":
                low, high = PRESETS["tiny"].trees[tree].subset_size
                assert low <= len(spec.labels) <= high
                assert float(meta["learning_rate"]) == spec.hparams["learning_rate"]


def test_lora_metadata_names_its_concept(tiny_zoo):
    for spec in tiny_zoo.specs("sd"):
        if spec.role == "child":
            meta = _metadata(tiny_zoo.model_dir("sd", spec.name) / "pytorch_lora_weights.safetensors")
            assert meta["concept_id"] == spec.concept["id"]
            assert meta["concept_name"] == spec.concept["name"]


def test_classifiers_load_with_transformers_and_classify(tiny_zoo):
    from transformers import ResNetForImageClassification, ViTForImageClassification

    for tree, cls in (("vit", ViTForImageClassification), ("resnet", ResNetForImageClassification)):
        spec = tiny_zoo.specs(tree)[1]
        model = cls.from_pretrained(tiny_zoo.model_dir(tree, spec.name))
        assert model.config.num_labels == len(spec.labels)
        if spec.named_labels:
            assert list(model.config.id2label.values()) == spec.labels
        logits = model(pixel_values=torch.zeros(2, 1, 28, 28)).logits
        assert logits.shape == (2, len(spec.labels))


def test_lora_loads_into_the_root_unet_and_changes_it(tiny_zoo):
    from diffusers import UNet2DConditionModel

    root = tiny_zoo.model_dir("sd", "root")
    lora = next(s for s in tiny_zoo.specs("sd") if s.role == "child")
    unet = UNet2DConditionModel.from_pretrained(root, subfolder="unet").eval()
    sample, t, context = torch.randn(1, 1, 16, 16), torch.tensor([10]), torch.randn(1, 16, 384)
    with torch.no_grad():
        before = unet(sample, t, encoder_hidden_states=context).sample
        unet.load_lora_adapter(str(tiny_zoo.model_dir("sd", lora.name)), prefix="unet",
                               weight_name="pytorch_lora_weights.safetensors")
        after = unet(sample, t, encoder_hidden_states=context).sample
    assert not torch.allclose(before, after)
    model_index = json.loads((root / "model_index.json").read_text())
    assert model_index["unet"] == ["diffusers", "UNet2DConditionModel"]


def test_every_lora_target_learns_including_cross_attention_queries(tiny_zoo):
    """The root is conditioned on a token sequence, so cross-attention's to_q / to_k get a gradient:
    over one pooled vector the softmax is constant and those LoRA updates would stay exactly zero."""
    from safetensors.numpy import load_file

    from hf_probex.shaping import lora_pairs

    lora = next(s for s in tiny_zoo.specs("sd") if s.role == "child")
    tensors = load_file(tiny_zoo.model_dir("sd", lora.name) / "pytorch_lora_weights.safetensors")
    pairs = lora_pairs(list(tensors))
    assert any(module.endswith("attn2.to_q") for module in pairs)
    for module, (down, up) in pairs.items():
        assert np.abs(tensors[up] @ tensors[down]).max() > 0, f"{module} did not learn"


def test_children_have_lineage_in_cards_and_second_generation_exists(tiny_zoo):
    from huggingface_hub import ModelCard

    specs = {s.name: s for s in tiny_zoo.specs("vit")}
    grandchildren = [s for s in specs.values() if s.generation == 2]
    assert grandchildren, "tiny vit tree should hold a second-generation child"
    styles = set()
    for spec in tiny_zoo.specs():
        readme = tiny_zoo.model_dir(spec.tree, spec.name) / "README.md"
        styles.add(spec.card)
        if spec.card == "none":
            assert not readme.exists()
            continue
        card = ModelCard.load(readme)
        expected_base = None if spec.parent is None else tiny_zoo.spec(spec.tree, spec.parent).repo_id
        if spec.card == "no_base_model" or spec.role == "root":
            assert card.data.base_model is None
        else:
            assert card.data.base_model == expected_base
        if spec.card == "no_data" and spec.labels and spec.role == "child":
            assert spec.labels[-1] not in card.text
    assert {"complete", "none"} <= styles


def test_plan_is_deterministic_and_prefix_stable():
    preset = PRESETS["bench"]
    first, again = make_plan(preset, 7), make_plan(preset, 7)
    assert first == again
    assert make_plan(preset, 8)["models"] != first["models"]
    from dataclasses import replace

    bigger = replace(preset, trees={**preset.trees, "vit": replace(preset.trees["vit"], n_children=600)})
    grown = {m["name"]: m for m in make_plan(bigger, 7)["models"] if m["tree"] == "vit"}
    for model in first["models"]:
        if model["tree"] == "vit":
            assert grown[model["name"]] == model


@pytest.mark.parametrize("preset", ["small", "text-bench", "text-lineage"])
def test_a_fine_tune_of_a_child_is_planned_into_its_parents_split(preset):
    """Lineage calibrates on the training splits' edges: every later generation in them has its parent there too,
    and a held-out one was never seen through its parent (models of classes outside the vocabulary, parents or
    children, excepted: they are held out whatever their lineage)."""
    models = {m["name"]: m for m in make_plan(PRESETS[preset], 0)["models"]}
    later = [m for m in models.values() if m["generation"] > 1 and "holdout" not in m["split"] + models[m["parent"]]["split"]]
    assert later and all(m["split"] == models[m["parent"]]["split"] for m in later)
    if preset == "text-lineage":  # enough edges to calibrate a member's precision above 0.95 (Laplace: 18 right)
        assert sum(m["split"] in ("train", "val") for m in later) >= 36


def test_zoo_open_rejects_a_folder_without_zoo(tmp_path):
    from hf_probex.zoo import ZooError

    with pytest.raises(ZooError, match="not a zoo"):
        Zoo.open(tmp_path)
