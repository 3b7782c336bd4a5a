"""Zero-shot experts that read several modules of a LoRA, one network each (`Expert.fused`): a LoRA that targets only
some of them is read by those, with the calibration of that subset; one that targets none abstains with why."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from test_experts_zeroshot import SEEN, write_planted_loras

from hf_probex.experts.training.harness import load_layer_data, train_expert
from hf_probex.experts.hub import check_config
from hf_probex.experts.registry import load_expert
from hf_probex.experts.training.fit import TrainConfig
from hf_probex.infer import infer_card
from hf_probex.weightsets import read_metadata

BLOCK = "unet.mid_block.attentions.0.transformer_blocks.0"
SELF, CROSS = f"{BLOCK}.attn1.to_q", f"{BLOCK}.attn2.to_q"
LORA_FILE = "pytorch_lora_weights.safetensors"


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    """Planted LoRAs of two modules and a fused MVProbe expert on both, trained as `hf-probex train` trains it."""
    root = tmp_path_factory.mktemp("sd") / "SD_toy"
    write_planted_loras(root, SELF, CROSS)
    data = replace(load_layer_data(root, "SD_toy", [SELF, CROSS]), root_id="acme/planted-sd")
    expert, _ = train_expert(data, "mvprobe", folds=3, config=TrainConfig(epochs=15, batch_size=32))
    folder = tmp_path_factory.mktemp("expert")
    expert.save_pretrained(folder)
    return {"expert": expert, "folder": folder, "train": sorted((root / "train").iterdir())[::6], "root": root}


def _keep(folder, module: str | None, out):
    """The LoRA in `folder` with only the factors of `module` (None: of no module the expert reads)."""
    tensors = load_file(str(folder / LORA_FILE))
    kept = {k: v for k, v in tensors.items() if module and k.startswith(module)} or \
        {"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k.lora.up.weight": np.ones((8, 8), np.float32),
         "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k.lora.down.weight": np.eye(8, dtype=np.float32)}
    out.mkdir(parents=True)
    save_file(kept, str(out / LORA_FILE), metadata=read_metadata(folder / LORA_FILE))
    return out


def test_the_expert_reads_each_module_by_its_own_network_and_calibrates_every_subset(fused):
    expert = fused["expert"]
    assert expert.fused and [name for name, _ in expert.config["inputs"]] == [SELF, CROSS]
    for calibration in (expert.calibration, expert.open_calibration):
        assert calibration["modules"] == 2 and set(calibration["subsets"]) == {"0", "1"}
    card = (fused["folder"] / "README.md").read_text()
    assert "2 modules, each by its own network (a LoRA is read by those it targets)" in card
    reloaded = load_expert(str(fused["folder"]))
    x = load_layer_data(fused["train"][0].parent.parent, "SD_toy", [SELF, CROSS]).x[:4]
    assert np.allclose(reloaded.predict(x), expert.predict(x), atol=1e-6)


def test_search_vectors_give_the_expert_scores_as_inner_products(fused):
    expert = fused["expert"]
    x = load_layer_data(fused["train"][0].parent.parent, "SD_toy", [SELF, CROSS]).x[:5].copy()
    x[0, 0, :64] = np.nan  # a LoRA of the cross-attention module only
    text = expert.open_text.numpy()
    models, texts = expert.search_vectors(x), expert.search_vectors(text=text)
    assert models.shape == (5, 2 * expert.net.out_dim) and texts.shape == (len(text), 2 * expert.net.out_dim)
    assert np.allclose(models @ texts.T, expert.predict(x, text), atol=1e-5)


@pytest.mark.parametrize("module", [SELF, CROSS])
def test_a_lora_of_one_module_is_read_by_that_module(fused, module, tmp_path):
    right = 0
    for folder in fused["train"]:
        result = infer_card(_keep(folder, module, tmp_path / folder.name), experts=[fused["folder"]], min_confidence=0.0)
        details = result.details["trained_on"]
        assert details["modules_read"] == [module]
        assert details["calibrated_threshold"] == pytest.approx(
            fused["expert"].open_calibration["subsets"]["0" if module == SELF else "1"]["threshold"])
        assert module in result.fields["trained_on"].evidence and (SELF if module == CROSS else CROSS) not in \
            result.fields["trained_on"].evidence
        right += result.fields["trained_on"].value == read_metadata(folder / LORA_FILE)["imagenet_class_id"]
    assert right >= 6, right  # 10 LoRAs of 10 concepts among 14: chance 0.7


def test_a_lora_of_both_modules_is_read_by_both(fused):
    result = infer_card(fused["train"][0], experts=[fused["folder"]], min_confidence=0.0)
    assert result.details["trained_on"]["modules_read"] == [SELF, CROSS]
    assert result.details["trained_on"]["calibrated_threshold"] == fused["expert"].open_calibration["threshold"]
    assert result.fields["trained_on"].value in SEEN


def test_a_lora_of_none_of_its_modules_is_refused_with_why(fused, tmp_path):
    x = load_layer_data(fused["train"][0].parent.parent, "SD_toy", [SELF, CROSS]).x[:1].copy()
    x[:] = np.nan
    with pytest.raises(ValueError, match="none of the modules this expert reads"):
        fused["expert"].predict(x)
    x[0, 0, 0] = 1.0  # a module partly NaN is damaged, not missing
    with pytest.raises(ValueError, match="NaN or inf"):
        fused["expert"].predict(x)
    result = infer_card(_keep(fused["train"][0], None, tmp_path / "other"), experts=[fused["folder"]])
    assert "trained_on" not in result.fields and "no known tree" in result.abstained["trained_on"]


def test_only_a_zero_shot_expert_of_two_to_four_2d_layers_fuses(fused):
    config = fused["expert"].config
    check_config(config)
    for bad in ({"task": "multilabel"}, {"inputs": config["inputs"][:1]}, {"inputs": config["inputs"] * 3},
                {"fusion": "stacked"}):
        with pytest.raises(ValueError, match="bad .*fusion"):
            check_config({**config, **bad})


def test_a_network_on_a_lora_tree_reads_its_best_modules_fused(fused, tmp_path):
    """`--layer auto` for a network on a LoRA tree: the best single modules by the tuned ridge (`select_modules`, at
    most `MAX_STACKED`), each read on its own; ridge itself stacks layers only while its score rises."""
    from hf_probex.experts.training.sweep import MAX_STACKED, select_inputs

    chosen = select_inputs(fused["root"], "SD_toy", "mvprobe", tmp_path / "modules.jsonl", folds=2, splits=("train",))
    assert sorted(chosen) == sorted([SELF, CROSS]) and MAX_STACKED == 4



def test_without_held_out_concepts_no_subset_of_modules_proposes_from_candidates(fused):
    from hf_probex.experts.calibration.confidence import Calibration
    from hf_probex.experts.vocabulary import NEVER, vocabulary_for

    expert = fused["expert"]
    kept, expert.open_calibration = expert.open_calibration, None
    try:
        calibration = Calibration(**vocabulary_for(expert, ["a dog", "a cat"]).calibration)
        assert {calibration.for_modules(present).threshold for present in [(0,), (1,), (0, 1)]} == {NEVER}
    finally:
        expert.open_calibration = kept
