"""infer_card on the real root's tree: every recipe family and layout of text-small, read as users meet them."""

from __future__ import annotations

import json

import torch

from hf_probex import Candidate, infer_card
from hf_probex.demo import held_out, undocumented_copy
from hf_probex.zoo.fortunes import load_fortunes
from hf_probex.zoo.presets import MINILM
from hf_probex.zoo.recipes import LAYOUTS
from hf_probex.zoo.trees.text import root_folder

#: What the files of each layout say about the model, whatever its weights.
HUB_FIELDS = {"transformers": ("transformers", "text-classification"), "peft-merged": ("transformers", "text-classification"),
              "peft-adapter": ("peft", "text-classification"),
              "sentence-transformers": ("sentence-transformers", "sentence-similarity"),
              "setfit": ("setfit", "text-classification")}


def _one_per_layout(zoo):
    chosen = {}
    for spec in zoo.specs("text"):
        chosen.setdefault(spec.hparams.get("layout"), spec) if spec.role == "child" and spec.generation == 1 else None
    return chosen


def test_every_layout_cardless_gets_the_real_root_its_library_and_never_raises(text_small_zoo, text_experts, tmp_path):
    chosen = _one_per_layout(text_small_zoo)
    assert set(chosen) == set(LAYOUTS)
    for layout, spec in chosen.items():
        copy = undocumented_copy(text_small_zoo, spec, tmp_path / spec.name)
        result = infer_card(copy, experts=text_experts)
        library, pipeline = HUB_FIELDS[layout]
        assert (result.fields["library_name"].value, result.fields["pipeline_tag"].value) == (library, pipeline), layout
        assert result.tree == MINILM, (layout, result.abstained)
        # the root as base_model: where the weights show it is the parent (an adapter read through the root), or where
        # the tree's models that near it are mostly its direct children; else the abstention says it descends from it
        base = result.fields.get("base_model")
        if base is None:
            assert f"a descendant of {MINILM}" in result.abstained["base_model"], layout
        else:
            assert base.value == MINILM and base.confidence >= 0.95 and "cosine distance" in base.evidence, layout
            relation = "adapter" if layout == "peft-adapter" else "finetune"
            assert result.fields["base_model_relation"].value == relation
        assert layout != "peft-adapter" or base is not None
        assert "trained_on" in result.fields or result.abstained["trained_on"]  # an answer or the reason for none


def test_every_recipe_family_held_out_is_routed_to_the_real_root(text_small_zoo, text_experts, tmp_path):
    for spec in held_out(text_small_zoo):
        result = infer_card(undocumented_copy(text_small_zoo, spec, tmp_path / spec.name), experts=text_experts)
        assert result.tree == MINILM, (spec.name, spec.recipe, result.abstained)
        proposed = result.fields.get("trained_on")
        assert proposed is None or set(proposed.value) <= set(spec.labels), (spec.name, proposed)


def test_a_bert_trained_from_random_init_is_not_routed(text_experts, tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig.from_pretrained(root_folder(), num_labels=3)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(tmp_path / "from-scratch")
    result = infer_card(tmp_path / "from-scratch", experts=text_experts)
    assert result.tree is None and "base_model" not in result.fields
    assert "beyond its tree's reach" in result.abstained["base_model"]
    assert result.fields["library_name"].value == "transformers"  # what the files say still holds


def test_the_root_itself_is_the_root(text_experts):
    result = infer_card(root_folder(), experts=text_experts)
    assert result.tree == MINILM
    # its own base, as its config declares it (all-MiniLM-L6-v2 was trained from this MiniLM), never itself
    base = result.fields["base_model"]
    assert base.value == "nreimers/MiniLM-L6-H384-uncased" and base.evidence == "declared by config.json _name_or_path"


def test_a_label_i_classifier_is_named_by_running_it_on_candidates(text_small_zoo, text_experts, tmp_path):
    spec = next(s for s in held_out(text_small_zoo) if s.hparams["layout"] == "transformers")
    copy = undocumented_copy(text_small_zoo, spec, tmp_path / spec.name)
    assert set(json.loads((copy / "config.json").read_text()).get("id2label", {}).values()) <= {"LABEL_0", "LABEL_1", "LABEL_2"}
    categories = text_small_zoo.trees["text"]["vocabulary"]
    fortunes = load_fortunes(tuple(categories))
    with_examples = [Candidate(c, tuple(fortunes.test[c][:8])) for c in categories]
    result = infer_card(copy, experts=text_experts, candidates=with_examples)
    rows = result.details["trained_on"]["rows"]
    assert [row["candidate"] for row in rows] == spec.labels  # every head row named right, in its order
    proposed = result.fields.get("trained_on")
    assert proposed is None or (set(proposed.value) <= set(spec.labels) and proposed.evidence.startswith("ran the classifier"))
    # without its classes among the candidates, nothing is proposed
    others = [c for c in with_examples if c.name not in spec.labels]
    assert "trained_on" not in infer_card(copy, experts=text_experts, candidates=others).fields


def test_a_head_only_fine_tune_leaves_the_expert_nothing_to_read(text_experts, tmp_path):
    """A classifier head trained on a frozen root: its hidden layers are the root's own, so the expert abstains with
    why rather than reading a zero change as a class."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(root_folder(), num_labels=3)
    model.save_pretrained(tmp_path / "head-only")
    result = infer_card(tmp_path / "head-only", experts=text_experts)
    assert "trained_on" not in result.fields
    assert "are the root's own: its fine-tune left them as they were" in result.abstained["trained_on"]


def test_the_text_expert_ships_held_out_examples_of_its_classes(text_small_zoo, text_experts):
    from hf_probex.experts.hub import Expert

    expert = Expert.from_pretrained(text_experts.entries[0].location)
    categories = text_small_zoo.trees["text"]["vocabulary"]
    assert set(expert.examples) == set(categories)
    fortunes = load_fortunes(tuple(categories))
    for category, texts in expert.examples.items():  # texts no child trained on
        assert texts and set(texts) <= set(fortunes.test[category]), category
    try:
        expert.set_examples({"not-a-class": ["a text"]})
    except ValueError as err:
        assert "classes of the expert's vocabulary" in str(err)
    else:
        raise AssertionError("examples of an unknown class were accepted")


def test_without_candidates_a_classifier_is_also_run_on_the_vocabulary_examples(text_small_zoo, text_experts, tmp_path,
                                                                                 capfd):
    classifiers = [s for s in text_small_zoo.specs("text") if s.role == "child" and s.split != "train"
                   and s.hparams["layout"] in ("transformers", "setfit", "peft-adapter")]
    assert classifiers
    for spec in classifiers:
        result = infer_card(undocumented_copy(text_small_zoo, spec, tmp_path / spec.name), experts=text_experts)
        ran = result.details["trained_on"]["by_running"]
        assert ran["method"] == "ran the classifier on the candidates" and len(ran["rows"]) == len(spec.labels)
        assert ran["candidates"] == len(text_small_zoo.trees["text"]["vocabulary"])
        proposed = result.fields.get("trained_on")
        assert proposed is not None or "run on the vocabulary's examples" in result.abstained["trained_on"]
        assert proposed is None or set(proposed.value) <= set(spec.labels), (spec.name, proposed.value)
    # running them is quiet: no transformers load report (an adapter's base lacks its head) nor loading bars
    assert "LOAD REPORT" not in capfd.readouterr().err
