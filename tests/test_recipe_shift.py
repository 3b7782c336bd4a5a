"""Models made by strangers' recipes go through infer_card: another class count or order, half precision,
shards, later generations, a declared base that is wrong or unknown, a model of another tree.

The expert is the small zoo's, trained as the demo trains it (train and val splits; layers chosen and
calibrated leave-one-recipe-family-out). Each stranger is made from a test-split model with transformers
and safetensors, as a user would make it, and stripped of its card; its documented result is asserted.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hf_probex import infer_card

pytestmark = pytest.mark.slow
ROOT = "probex-zoo-resnet/resnet-root"


@pytest.fixture(scope="module")
def original(small_zoo):
    """A first-generation test-split model saved in float32, unsharded: what the strangers are made from."""
    return next(s for s in small_zoo.specs("resnet") if s.split == "test" and s.generation == 1
                and s.hparams["dtype"] == "float32" and not s.hparams["sharded"])


def _load(small_zoo, spec):
    from transformers import ResNetForImageClassification

    return ResNetForImageClassification.from_pretrained(small_zoo.model_dir("resnet", spec.name), dtype=torch.float32)


def _undocumented(small_zoo, spec, folder):
    from hf_probex.demo import undocumented_copy

    return undocumented_copy(small_zoo, spec, folder)


def _expert_answer(result):
    field = result.fields.get("trained_on")
    return None if field is None else (field.value, round(field.confidence, 4))


def test_other_class_counts_and_orders_change_nothing_the_expert_reads(small_zoo, small_experts, original, tmp_path):
    """The expert reads hidden layers as Grams: a head with 5 or 15 classes, or its rows in another order with
    id2label in that order (the same function), leaves every field from the weights as it was."""
    baseline = infer_card(_undocumented(small_zoo, original, tmp_path / "original"), experts=small_experts)
    assert baseline.tree == ROOT and baseline.fields["base_model"].value == ROOT
    for classes in (5, 15):
        model = _load(small_zoo, original)
        model.classifier[1] = torch.nn.Linear(model.classifier[1].in_features, classes)
        model.config.num_labels = classes  # a fresh head, LABEL_i names: nothing in the files names a class
        model.save_pretrained(tmp_path / f"classes-{classes}")
        result = infer_card(tmp_path / f"classes-{classes}", experts=small_experts)
        assert result.tree == ROOT and result.fields["base_model"].value == ROOT
        assert _expert_answer(result) == _expert_answer(baseline)
    model = _load(small_zoo, original)
    order = torch.randperm(model.config.num_labels, generator=torch.Generator().manual_seed(0))
    head = model.classifier[1]
    head.weight.data, head.bias.data = head.weight.data[order], head.bias.data[order]
    model.config.id2label = {i: f"LABEL_{i}" for i in range(len(order))}
    model.save_pretrained(tmp_path / "permuted")
    permuted = infer_card(tmp_path / "permuted", experts=small_experts)
    assert permuted.tree == ROOT and _expert_answer(permuted) == _expert_answer(baseline)


def test_half_precision_and_shards_route_and_read_as_the_original(small_zoo, small_experts, original, tmp_path):
    baseline = infer_card(_undocumented(small_zoo, original, tmp_path / "original"), experts=small_experts)
    expert = next(iter(small_experts.entries))
    for dtype in (torch.float16, torch.bfloat16):
        model = _load(small_zoo, original).to(dtype)
        model.save_pretrained(tmp_path / str(dtype))
        result = infer_card(tmp_path / str(dtype), experts=small_experts)
        assert result.tree == ROOT and result.fields["base_model"].value == ROOT
        assert result.fields["base_model"].confidence >= 0.9
        original_field, field = baseline.fields.get("trained_on"), result.fields.get("trained_on")
        if original_field is not None and field is not None:  # rounding may move a class across the threshold
            assert set(field.value) & set(original_field.value)
    _load(small_zoo, original).save_pretrained(tmp_path / "sharded", max_shard_size="40KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    sharded = infer_card(tmp_path / "sharded", experts=small_experts)
    assert sharded.tree == ROOT and _expert_answer(sharded) == _expert_answer(baseline)
    assert expert.inputs  # read from the shards that hold them


def test_later_generations_are_in_the_tree_and_their_declared_parent_stands(small_zoo, small_experts, tmp_path):
    """A fine-tune of a fine-tune routes to the tree by its weights; weights alone name the tree's root (the
    parent is not knowable from weights), and a declared parent hf_probex cannot follow to the root offline
    stays the base_model, with a finding saying so and a lowered confidence."""
    for spec in [s for s in small_zoo.specs("resnet") if s.generation > 1][:3]:
        bare = infer_card(_undocumented(small_zoo, spec, tmp_path / spec.name), experts=small_experts)
        assert bare.tree == ROOT and bare.fields["base_model"].value == ROOT
        parent = small_zoo.spec("resnet", spec.parent).repo_id
        (tmp_path / spec.name / "README.md").write_text(f"---\nbase_model: {parent}\n---\n# a fine-tune\n")
        declared = infer_card(tmp_path / spec.name, experts=small_experts)
        assert declared.tree == ROOT and declared.fields["base_model"].value == parent
        assert declared.fields["base_model"].confidence < 1.0 and not declared.fields["base_model"].missing
        assert parent in declared.fields["lineage"].value and ROOT in declared.fields["lineage"].value


def test_a_declared_base_the_weights_cannot_place_is_a_finding_not_a_silent_certainty(small_zoo, small_experts,
                                                                                        original, tmp_path):
    folder = _undocumented(small_zoo, original, tmp_path / "wrong-base")
    (folder / "README.md").write_text("---\nbase_model: microsoft/resnet-50\n---\n# my model\n")
    result = infer_card(folder, experts=small_experts)
    base = result.fields["base_model"]
    assert base.value == "microsoft/resnet-50" and base.confidence < 1.0 and "cannot follow" in base.evidence
    assert result.tree == ROOT and "microsoft/resnet-50" in result.fields["lineage"].value


def test_a_model_of_another_tree_with_the_same_architecture_is_not_claimed(small_zoo, small_experts, original, tmp_path):
    """A ResNet of the same configuration started from another initialisation (another tree's root): beyond the
    reach of the small tree, so no tree, no base_model, no trained_on, and each abstention says why."""
    from transformers import ResNetForImageClassification

    torch.manual_seed(1234)
    ResNetForImageClassification(_load(small_zoo, original).config).save_pretrained(tmp_path / "stranger")
    result = infer_card(tmp_path / "stranger", experts=small_experts)
    assert result.tree is None and "beyond its tree's reach" in result.abstained["base_model"]
    assert "trained_on" in result.abstained and "base_model" not in result.fields


def test_weights_the_expert_cannot_read_abstain_that_field_only(small_zoo, small_experts, original, tmp_path):
    """All-NaN weights in a layer the expert reads: trained_on abstains, naming the problem; the rest answers.
    (The small tree's expert reads the last convolution, which routing does not compare.)"""
    from safetensors.torch import load_file, save_file

    folder = _undocumented(small_zoo, original, tmp_path / "nan")
    tensors = load_file(str(folder / "model.safetensors"))
    entry = next(iter(small_experts.entries))
    name = next(n for n, _ in entry.inputs if n not in {r for r, _ in entry.routing_layers})
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    result = infer_card(folder, experts=small_experts)
    assert result.tree == ROOT and "NaN" in result.abstained["trained_on"]
    assert result.fields["library_name"].value == "transformers" and np.isfinite(result.fields["base_model"].confidence)
    assert json.loads(result.to_json())["abstained"]["trained_on"]
