"""Models made by strangers' recipes go through infer_card: another class count or order, half precision,
shards, later generations, a declared base that is wrong or unknown, a model of another tree.

The expert is the small zoo's, trained as the demo trains it (train and val splits; layers chosen and
calibrated leave-one-recipe-family-out). Each stranger is made from a test-split model with transformers
and safetensors, as a user would make it, and stripped of its card; its documented result is asserted.
"""

from __future__ import annotations

import json

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


def _base_answer(result):
    """base_model as proposed (value), or that it abstained: weights alone name the root only where the tree's models
    that near it are mostly its direct children."""
    field = result.fields.get("base_model")
    if field is None:
        assert f"a descendant of {ROOT}" in result.abstained["base_model"]
    return None if field is None else field.value


def _expert_answer(result):
    field = result.fields.get("trained_on")
    return None if field is None else (field.value, round(field.confidence, 4))


def test_other_class_counts_and_orders_change_nothing_the_expert_reads(small_zoo, small_experts, original, tmp_path):
    """The expert reads hidden layers as Grams: a head with 5 or 15 classes, or its rows in another order with
    id2label in that order (the same function), leaves every field from the weights as it was, read by the
    hidden layers alone (`Expert.set_head(None)`; an expert that reads heads too: see the next test)."""
    from hf_probex.experts.hub import Expert
    from hf_probex.experts.registry import ExpertRegistry

    expert = Expert.from_pretrained(next(iter(small_experts.entries)).location)
    expert.set_head(None)
    expert.save_pretrained(tmp_path / "expert")
    layers_only = ExpertRegistry.from_locations([tmp_path / "expert"])
    assert Expert.from_pretrained(tmp_path / "expert").row_reader is None
    baseline = infer_card(_undocumented(small_zoo, original, tmp_path / "original"), experts=layers_only)
    assert baseline.tree == ROOT and _base_answer(baseline) in (ROOT, None)
    for classes in (5, 15):
        result = infer_card(_fresh_head(small_zoo, original, classes, tmp_path), experts=layers_only)
        assert result.tree == ROOT and _base_answer(result) == _base_answer(baseline)
        assert _expert_answer(result) == _expert_answer(baseline)
    permuted = infer_card(_permuted_head(small_zoo, original, tmp_path), experts=layers_only)
    assert permuted.tree == ROOT and _expert_answer(permuted) == _expert_answer(baseline)


def _fresh_head(small_zoo, spec, classes: int, tmp_path):
    model = _load(small_zoo, spec)
    model.classifier[1] = torch.nn.Linear(model.classifier[1].in_features, classes)
    model.config.num_labels = classes  # a fresh head, LABEL_i names: nothing in the files names a class
    model.save_pretrained(tmp_path / f"classes-{classes}")
    return tmp_path / f"classes-{classes}"


def _permuted_head(small_zoo, spec, tmp_path):
    model = _load(small_zoo, spec)
    order = torch.randperm(model.config.num_labels, generator=torch.Generator().manual_seed(0))
    head = model.classifier[1]
    head.weight.data, head.bias.data = head.weight.data[order], head.bias.data[order]
    model.config.id2label = {i: f"LABEL_{i}" for i in range(len(order))}
    model.save_pretrained(tmp_path / "permuted")
    return tmp_path / "permuted"


def test_an_expert_that_reads_heads_reads_them_in_any_order_and_count(small_zoo, small_experts, original, tmp_path):
    """An expert that reads the head as a set of rows too (taught here on the small tree's training heads, its
    joint calibration the layers' plus the row score): infer_card reads the head whatever its row order (same
    confidences) and class count, and says so in the evidence; a head of one class is not a set, so the
    layers answer alone, at their own threshold."""
    import shutil

    from hf_probex.experts.calibration.head_rows import RowReader, read_heads
    from hf_probex.experts.hub import Expert
    from hf_probex.experts.registry import ExpertRegistry
    from hf_probex.weightsets import open_weight_set

    folder = tmp_path / "expert"
    shutil.copytree(next(iter(small_experts.entries)).location, folder)
    expert = Expert.from_pretrained(folder)
    records = open_weight_set(small_zoo.root).for_tree("resnet", ("train", "val"))
    reader = RowReader.fit("classifier.1.weight", read_heads(records, "classifier.1.weight"),
                           [r.labels for r in records], expert.vocabulary)
    expert.set_head(reader, {**expert.calibration, "head": 1.0, "threshold": 0.5})
    expert.save_pretrained(folder)
    registry = ExpertRegistry.from_locations([folder])

    baseline = infer_card(_undocumented(small_zoo, original, tmp_path / "original"), experts=registry)
    read = baseline.details["trained_on"]
    assert read["calibrated_threshold"] == 0.5 and baseline.fields["trained_on"].confidence >= 0.5
    assert "classifier.1.weight (its rows, as a set)" in baseline.fields["trained_on"].evidence
    permuted = infer_card(_permuted_head(small_zoo, original, tmp_path), experts=registry)
    assert permuted.details["trained_on"]["confidence_by_class"] == pytest.approx(read["confidence_by_class"])
    for classes in (5, 15):
        result = infer_card(_fresh_head(small_zoo, original, classes, tmp_path), experts=registry)
        assert result.tree == ROOT and result.details["trained_on"]["calibrated_threshold"] == 0.5
    single = infer_card(_fresh_head(small_zoo, original, 1, tmp_path), experts=registry)
    assert single.details["trained_on"]["calibrated_threshold"] == expert.calibration["threshold"]


def test_half_precision_and_shards_route_and_read_as_the_original(small_zoo, small_experts, original, tmp_path):
    baseline = infer_card(_undocumented(small_zoo, original, tmp_path / "original"), experts=small_experts)
    expert = next(iter(small_experts.entries))
    for dtype in (torch.float16, torch.bfloat16):
        model = _load(small_zoo, original).to(dtype)
        model.save_pretrained(tmp_path / str(dtype))
        result = infer_card(tmp_path / str(dtype), experts=small_experts)
        assert result.tree == ROOT and _base_answer(result) in (ROOT, None)
        original_field, field = baseline.fields.get("trained_on"), result.fields.get("trained_on")
        if original_field is not None and field is not None:  # rounding may move a class across the threshold
            assert set(field.value) & set(original_field.value)
    _load(small_zoo, original).save_pretrained(tmp_path / "sharded", max_shard_size="40KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    sharded = infer_card(tmp_path / "sharded", experts=small_experts)
    assert sharded.tree == ROOT and _expert_answer(sharded) == _expert_answer(baseline)
    assert expert.inputs  # read from the shards that hold them


def test_later_generations_are_in_the_tree_and_never_get_the_root_as_parent(small_zoo, small_experts, tmp_path):
    """A cardless fine-tune of a fine-tune routes to the tree by its weights, but weights alone name the root as its
    base_model only where the tree's training models that near the root are surely its direct children: none of the
    held-out later generations gets it, while a third or more of the held-out first generations do. A declared
    parent that is one of the expert's training models is followed to the root and checked against the weights; one
    hf_probex cannot follow offline stays the base_model, with a finding saying so and a lowered confidence."""
    held_out = [s for s in small_zoo.specs("resnet") if s.role == "child" and s.split in ("test", "test_holdout")]
    named = {}
    for spec in held_out:
        result = infer_card(_undocumented(small_zoo, spec, tmp_path / spec.name), experts=small_experts)
        assert result.tree == ROOT
        named[spec.name] = _base_answer(result) == ROOT
    assert sum(s.generation > 1 for s in held_out) >= 3 and not any(named[s.name] for s in held_out if s.generation > 1)
    first = [named[s.name] for s in held_out if s.generation == 1]
    assert sum(first) >= len(first) / 3
    from hf_probex.experts.registry import load_expert

    members = load_expert(next(iter(small_experts.entries)).location).routing["members"]
    later = [s for s in small_zoo.specs("resnet") if s.generation > 1]
    for spec in [s for s in later if small_zoo.spec("resnet", s.parent).repo_id in members][:2]:
        parent = small_zoo.spec("resnet", spec.parent).repo_id
        (tmp_path / spec.name).mkdir(exist_ok=True)
        folder = _undocumented(small_zoo, spec, tmp_path / spec.name / "declared")
        (folder / "README.md").write_text(f"---\nbase_model: {parent}\n---\n# a fine-tune\n")
        declared = infer_card(folder, experts=small_experts)
        base = declared.fields["base_model"]
        assert declared.tree == ROOT and (base.value, base.confidence) == (parent, 1.0) and "lineage" not in declared.fields
    for spec in [s for s in later if small_zoo.spec("resnet", s.parent).repo_id not in members][:1]:
        parent = small_zoo.spec("resnet", spec.parent).repo_id
        folder = _undocumented(small_zoo, spec, tmp_path / spec.name / "unknown-parent")
        (folder / "README.md").write_text(f"---\nbase_model: {parent}\n---\n# a fine-tune\n")
        declared = infer_card(folder, experts=small_experts)
        assert declared.tree == ROOT and declared.fields["base_model"].value == parent
        assert declared.fields["base_model"].confidence < 1.0 and "cannot follow" in declared.fields["lineage"].value


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
    assert result.fields["library_name"].value == "transformers" and _base_answer(result) in (ROOT, None)
    assert json.loads(result.to_json())["abstained"]["trained_on"]
