"""The text trees: the real all-MiniLM-L6-v2 as root, byte for byte, and children in every layout users save."""

from __future__ import annotations

import ast
import hashlib
import json

import pytest
import torch
from safetensors import safe_open

from hf_probex.zoo import ZooError
from hf_probex.zoo.fortunes import FORTUNES_ENV, fortunes_dir, load_fortunes, parse_fortunes
from hf_probex.zoo.plan import make_plan
from hf_probex.zoo.presets import MINILM, get_preset
from hf_probex.zoo.recipes import LAYOUTS
from hf_probex.zoo.trees.text import root_folder


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_root_is_the_shipped_minilm_byte_for_byte_under_its_real_id(text_small_zoo):
    root = text_small_zoo.spec("text", "root")
    assert root.repo_id == MINILM == text_small_zoo.trees["text"]["root_repo_id"]
    shipped = root_folder()
    for path in shipped.rglob("*"):
        if path.is_file():
            copy = text_small_zoo.model_dir("text", "root") / path.relative_to(shipped)
            assert _sha256(copy) == _sha256(path), path.name


def test_every_recipe_family_and_layout_is_built(text_small_zoo):
    children = [s for s in text_small_zoo.specs("text") if s.role == "child"]
    assert {s.recipe for s in children} == {r.name for r in get_preset("text-small").trees["text"].recipes}
    assert {s.hparams["layout"] for s in children} == set(LAYOUTS)
    assert any(s.generation == 2 for s in children), "second generation"
    vocabulary, preset = set(text_small_zoo.trees["text"]["vocabulary"]), get_preset("text-small").trees["text"]
    unseen = [s for s in children if s.split.endswith("_holdout")]  # trained on categories outside the vocabulary
    assert len(unseen) == preset.n_unseen and all(set(s.labels) <= set(preset.unseen_categories) for s in unseen)
    assert all(set(spec.labels) <= vocabulary and 2 <= len(spec.labels) <= 3 for spec in children if spec not in unseen)
    accuracies = [text_small_zoo.record("text", spec.name)["test_accuracy"] for spec in children]
    assert sum(accuracies) / len(accuracies) > 0.7  # the children learnt their categories (chance: 0.3 to 0.5)


def _weights_metadata(folder):
    path = next(p for p in sorted(folder.glob("*.safetensors")) if p.name != "model_head.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata(), list(handle.keys())


def test_each_layout_is_saved_as_its_tool_saves_it(text_small_zoo):
    from transformers import AutoModelForSequenceClassification

    seen = set()
    for spec in text_small_zoo.specs("text"):
        layout = spec.hparams.get("layout")
        if spec.role != "child" or layout in seen:
            continue
        seen.add(layout)
        folder = text_small_zoo.model_dir("text", spec.name)
        metadata, keys = _weights_metadata(folder)
        assert ast.literal_eval(metadata["dataset_chosen_targets"]) == spec.labels
        names = spec.labels if spec.named_labels else [f"LABEL_{i}" for i in range(len(spec.labels))]
        if layout == "peft-adapter":
            config = json.loads((folder / "adapter_config.json").read_text())
            assert config["peft_type"] == "LORA" and config["task_type"] == "SEQ_CLS"
            assert config["base_model_name_or_path"] == text_small_zoo.spec("text", spec.parent).repo_id
            assert any(k.endswith("lora_A.weight") for k in keys) and any("classifier" in k for k in keys)
            assert not (folder / "config.json").exists()
        elif layout in ("sentence-transformers", "setfit"):
            assert json.loads((folder / "modules.json").read_text())[1]["type"].endswith("Pooling")
            assert any(k.startswith("encoder.layer.") for k in keys)
            if layout == "setfit":
                setfit = json.loads((folder / "config_setfit.json").read_text())
                assert setfit["labels"] == (names if spec.named_labels else None)
                with safe_open(str(folder / "model_head.safetensors"), framework="pt") as head:
                    assert list(head.get_tensor("weight").shape) == [len(spec.labels), 384]
        else:
            model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32)
            assert [model.config.id2label[i] for i in range(len(names))] == names
        assert (folder / "README.md").exists() == (spec.card != "none")
    assert seen == set(LAYOUTS)


def test_a_child_moves_little_from_the_root(text_small_zoo):
    """The regime of pretrained roots: a fine-tune changes a hidden layer by well under a percent of its norm."""
    name = "encoder.layer.3.attention.self.query.weight"
    with safe_open(str(text_small_zoo.model_dir("text", "root") / "model.safetensors"), framework="pt") as handle:
        root = handle.get_tensor(name).float()
    spec = next(s for s in text_small_zoo.specs("text") if s.hparams.get("layout") == "sentence-transformers")
    with safe_open(str(text_small_zoo.model_dir("text", spec.name) / "model.safetensors"), framework="pt") as handle:
        child = handle.get_tensor(name).float()
    change = float((child - root).norm() / root.norm())
    assert 0 < change < 0.05


def test_fortunes_entries_are_split_at_percent_lines():
    text = "A short one.\n%\nA fortune that\n   spans two lines.\n%\nx\n%\nA short one.\n"
    assert parse_fortunes(text) == ["A fortune that spans two lines."]


def test_a_missing_category_names_those_there_are(tmp_path, monkeypatch):
    (tmp_path / "science").write_text("\n%\n".join(f"Science entry number {i}." for i in range(12)))
    monkeypatch.setenv(FORTUNES_ENV, str(tmp_path))
    load_fortunes.cache_clear()
    with pytest.raises(ZooError, match="no fortunes category poetry in .*categories there: science"):
        load_fortunes(("science", "poetry"))
    split = load_fortunes(("science",))
    assert (len(split.train["science"]), len(split.test["science"])) == (10, 2)


def test_without_apt_the_error_says_where_to_put_the_files(tmp_path, monkeypatch):
    monkeypatch.delenv(FORTUNES_ENV, raising=False)
    monkeypatch.setenv("HF_PROBEX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get, no dpkg
    with pytest.raises(ZooError) as caught:
        fortunes_dir()
    message = str(caught.value)
    assert "\n" not in message and FORTUNES_ENV in message and "apt-get" in message
    assert not (tmp_path / "cache" / "data" / "fortunes").exists()


def test_text_bench_holds_children_of_unseen_categories_out_of_training():
    plan = make_plan(get_preset("text-bench"), 0)
    children = [m for m in plan["models"] if m["role"] == "child"]
    unseen = set(get_preset("text-bench").trees["text"].unseen_categories)
    held = [m for m in children if m["split"] == "test_holdout"]
    assert held and all(unseen & set(m["labels"]) for m in held)
    assert not any(unseen & set(m["labels"]) for m in children if m["split"] != "test_holdout")
