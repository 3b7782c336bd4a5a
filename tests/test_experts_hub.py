"""Experts as Hub models: save_pretrained / from_pretrained round trips, config.json, bad input, push."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard

from hf_probex.experts.training.harness import fit_expert, load_layer_data
from hf_probex.experts.hub import FORMAT_VERSION, Expert
from hf_probex.experts.training.fit import TrainConfig
from hf_probex.weightsets import open_weight_set

VIT_LAYER = "vit.encoder.layer.0.attention.attention.value.weight"
SD_LAYER = "unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_q"


@pytest.fixture(scope="module")
def vit(tiny_zoo):
    return load_layer_data(tiny_zoo.root, "vit", VIT_LAYER)


@pytest.mark.parametrize("method", ["probex", "ridge", "statnn", "mvprobe"])
def test_round_trip_gives_identical_predictions(vit, tiny_zoo, tmp_path, method):
    torch.set_num_threads(1)
    expert, _ = fit_expert(vit, method, np.arange(len(vit.y)), config=TrainConfig(epochs=3))
    expert.metrics = {"per_label_acc": {"mean": 61.0, "se": 1.5}}
    expert.save_pretrained(tmp_path / "expert")
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in (tmp_path / "expert").iterdir()}
    loaded = Expert.from_pretrained(tmp_path / "expert")
    np.testing.assert_array_equal(loaded.predict(vit.x), expert.predict(vit.x))
    config = json.loads((tmp_path / "expert" / "config.json").read_text())
    assert config["tree"] == "vit" and config["layer"] == VIT_LAYER and config["layer_shape"] == [32, 32]
    assert config["task"] == "multilabel" and config["vocabulary"] == vit.vocabulary and config["method"] == method
    assert config["centred"] and config["root"] == "probex-zoo-vit/vit-root" and config["adapter"] is None
    assert config["metrics"]["per_label_acc"]["mean"] == 61.0 and config["format_version"] == FORMAT_VERSION
    assert "package_version" in config and loaded.metrics == expert.metrics
    assert torch.equal(loaded.offset, expert.offset) and loaded.offset.abs().sum() > 0  # the root travels with it
    paths = [r.path for r in open_weight_set(tiny_zoo.root).for_tree("vit")]
    np.testing.assert_array_equal(loaded.predict_files(paths), expert.predict(vit.x))  # straight from weight files
    card = ModelCard.load(tmp_path / "expert" / "README.md")  # rendered from templates/EXPERT_CARD_TEMPLATE.md
    assert card.data.base_model == "probex-zoo-vit/vit-root" and card.data.library_name == "hf_probex"
    assert {"probex-expert", "hf-probex-tree-vit", f"hf-probex-method-{method}"} <= set(card.data.tags)
    assert "| per_label_acc | 61.0 +- 1.5 |" in card.text and "## Intended use and limitations" in card.text


def test_zero_shot_round_trip_keeps_text_side(tiny_zoo, tmp_path):
    data = load_layer_data(tiny_zoo.root, "sd", SD_LAYER)
    expert, _ = fit_expert(data, "probex", np.arange(len(data.y)), config=TrainConfig(epochs=3))
    expert.save_pretrained(tmp_path / "zs")
    loaded = Expert.from_pretrained(tmp_path / "zs")
    np.testing.assert_array_equal(loaded.predict(data.x), expert.predict(data.x))
    np.testing.assert_array_equal(loaded.predict(data.holdout_x, data.holdout_text),
                                  expert.predict(data.holdout_x, data.holdout_text))
    assert loaded.config["text_encoder"] == data.text_encoder and loaded.config["adapter"] == "lora"
    assert loaded.config["text_dim"] == 384 and not loaded.config["centred"]
    lora_files = [r.path for r in open_weight_set(tiny_zoo.root).for_tree("sd") if not r.split.endswith("_holdout")]
    np.testing.assert_array_equal(loaded.predict_files(lora_files), expert.predict(data.x))


def test_bad_input_is_named(vit, tmp_path):
    expert, _ = fit_expert(vit, "dense", np.arange(len(vit.y)), config=TrainConfig(epochs=1))
    with pytest.raises(ValueError, match=r"does not match this expert's layer .*value.weight of shape \[32, 32\]"):
        expert.predict(np.zeros((1, 64, 32), dtype=np.float32))
    with pytest.raises(ValueError, match="NaN or inf"):
        expert.predict(np.full((1, 32, 32), np.inf, dtype=np.float32))
    expert.save_pretrained(tmp_path / "e")
    config = json.loads((tmp_path / "e" / "config.json").read_text())
    (tmp_path / "e" / "config.json").write_text(json.dumps({**config, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(ValueError, match=f"format version {FORMAT_VERSION + 1}; .* upgrade hf_probex"):
        Expert.from_pretrained(tmp_path / "e")
    with pytest.raises(ValueError, match="single value"):
        fit_expert(vit, "probex", np.arange(len(vit.y)), y=np.zeros_like(vit.y))


def test_push_to_the_local_hub_and_load_back(vit, hub):
    expert, _ = fit_expert(vit, "ridge", np.arange(len(vit.y)))
    repo_id = hub.repo_id()
    expert.push_to_hub(repo_id, token=hub.alice)
    loaded = Expert.from_pretrained(repo_id, token=hub.alice)
    np.testing.assert_array_equal(loaded.predict(vit.x), expert.predict(vit.x))
