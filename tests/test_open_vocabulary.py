"""Open-vocabulary naming: a LoRA's concept is chosen among candidates, not only the expert's training concepts, with a
confidence calibrated on held-out concepts; `infer_card(..., candidates=)` and `hf-probex infer --candidates FILE`."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from test_experts_zeroshot import HELD, SEEN, write_planted_loras

from hf_probex.cli import main
from hf_probex.experts.training.harness import HELD_OUT_CONCEPTS, load_layer_data, train_expert
from hf_probex.head_naming import read_candidates
from hf_probex.infer import infer_card
from hf_probex.weightsets import read_metadata

MODULE = "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q"  # sd-lora naming: infer_card reads it
ROOT = "acme/planted-sd"


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Planted LoRAs (seen concepts in train, held-out ones in val_holdout) and their expert: ridge, 3 folds, as
    `hf-probex train` trains it (open vocabulary and its calibration included)."""
    root = tmp_path_factory.mktemp("sd") / "SD_toy"
    write_planted_loras(root, MODULE)
    data = replace(load_layer_data(root, "SD_toy", MODULE), root_id=ROOT)
    expert, _ = train_expert(data, "ridge", folds=3)
    folder = tmp_path_factory.mktemp("expert")
    expert.save_pretrained(folder)
    return {"expert": expert, "folder": folder, "held": sorted((root / "val_holdout").iterdir())}


def test_the_expert_ships_an_open_vocabulary_calibrated_on_held_out_concepts(planted):
    expert = planted["expert"]
    assert expert.open_vocabulary == sorted(SEEN) + sorted(HELD) and expert.open_text.shape == (14, 384)
    assert expert.open_calibration["groups"] == 2  # in vocabulary, and held-out concepts (HELD_OUT_CONCEPTS)
    assert expert.open_calibration["decisions"] == 60 + 3 * 12  # every fold's expert on the 12 held-out LoRAs
    assert HELD_OUT_CONCEPTS == "held-out concepts"


def test_a_held_out_concept_is_named_when_it_is_among_the_candidates(planted):
    named = {}
    for folder in planted["held"]:
        result = infer_card(folder, experts=[planted["folder"]], candidates=HELD + ["a concept nobody trained"],
                            min_confidence=0.0)
        truth = read_metadata(folder / "pytorch_lora_weights.safetensors")["imagenet_class_id"]
        named[folder.name] = (result.fields["trained_on"].value, truth)
        details = result.details["trained_on"]
        assert details["vocabulary"].startswith("the candidates vocabulary (5 concepts")
        assert details["runner_up"] != result.fields["trained_on"].value and details["margin"] >= 0
        assert "runner-up" in result.fields["trained_on"].evidence
    right = sum(value == truth for value, truth in named.values())
    assert right >= 7, named  # 12 LoRAs of 4 concepts the expert never trained on, 5 candidates: chance 2.4 (8 here)


def test_the_default_vocabulary_holds_training_and_held_out_concepts(planted):
    result = infer_card(planted["held"][0], experts=[planted["folder"]], min_confidence=0.0)
    details = result.details["trained_on"]
    assert details["vocabulary"].startswith("the default vocabulary (14 concepts")
    assert result.fields["trained_on"].value in SEEN + HELD
    assert details["calibrated_threshold"] == planted["expert"].open_calibration["threshold"]


def test_infer_candidates_option(planted, tmp_path, capsys):
    candidates = tmp_path / "concepts.txt"
    candidates.write_text("\n".join(HELD) + "\n\n  banana  \n")
    assert [c.name for c in read_candidates(candidates)] == HELD
    assert main(["infer", str(planted["held"][0]), "--expert", str(planted["folder"]), "--candidates", str(candidates),
                 "--min-confidence", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["details"]["trained_on"]["vocabulary"].startswith("the candidates vocabulary (4 concepts")
    assert out["fields"]["trained_on"]["value"] in HELD


@pytest.mark.parametrize("content, message", [(None, "cannot read the candidates file"), (b"\n \n", "is empty"),
                                              (b"\xff\xfe\x00bad", "UTF-8")])
def test_infer_candidates_bad_file_is_one_line(planted, tmp_path, capsys, content, message):
    path = tmp_path / "concepts.txt"
    if content is not None:
        path.write_bytes(content)
    assert main(["infer", str(planted["held"][0]), "--expert", str(planted["folder"]), "--candidates", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_search_vectors_of_an_expert_of_one_layer_give_its_scores(planted):
    expert = planted["expert"]
    x = load_layer_data(planted["held"][0].parent.parent, "SD_toy", MODULE).x[:4]
    text = expert.open_text.numpy()
    assert np.allclose(expert.search_vectors(x) @ expert.search_vectors(text=text).T, expert.predict(x, text), atol=1e-5)
    with pytest.raises(ValueError, match="one of them"):
        expert.search_vectors()
