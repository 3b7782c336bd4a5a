"""Open-vocabulary naming: a LoRA's concept is chosen among candidates, not only the expert's training concepts, with a
confidence calibrated on held-out concepts; `infer_card(..., candidates=)` and `hf-probex infer --candidates FILE`."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from test_experts_zeroshot import HELD, SEEN, write_planted_loras

from hf_probex.cli import main
from hf_probex.experts.calibration.confidence import withheld_concepts
from hf_probex.experts.registry import load_expert
from hf_probex.experts.training.harness import (CONCEPTS_OUT, HELD_OUT_CONCEPTS, LIST_SIZES, candidate_lists, load_layer_data,
                                               train_expert)
from hf_probex.experts.vocabulary import query_fit
from hf_probex.head_naming import read_candidates
from hf_probex.infer import infer_card
from hf_probex.text import encode_texts
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


#: 40 concepts to train on: enough for ridge's map from weights to text to reach concepts it never trained on
MANY = SEEN + ("horse train boat flower tree house bird fish clock lamp shoe hat cake bread cheese piano drum trumpet "
               "lion tiger bear rabbit snake frog moon sun cloud bridge tower church").split()
NEW = ["bicycle", "castle", "violin", "banana", "wolf", "rose"]


@pytest.fixture(scope="module")
def learnable(tmp_path_factory):
    """Planted LoRAs of 40 concepts and of 6 held-out ones whose weights the seen concepts' map reaches (`learnable`),
    and their expert, trained as `hf-probex train` trains it."""
    root = tmp_path_factory.mktemp("sd-many") / "SD_toy"
    write_planted_loras(root, MODULE, seen=MANY, held=NEW, learnable=True)
    data = replace(load_layer_data(root, "SD_toy", MODULE), root_id=ROOT)
    expert, _ = train_expert(data, "ridge", folds=3)
    folder = tmp_path_factory.mktemp("expert-many")
    expert.save_pretrained(folder)
    return {"folder": folder, "seen": sorted((root / "train").iterdir())[::6], "held": sorted((root / "val_holdout").iterdir())}


def _truth(folder) -> str:
    return read_metadata(folder / "pytorch_lora_weights.safetensors")["imagenet_class_id"]


def test_the_expert_ships_an_open_vocabulary_calibrated_on_held_out_concepts(planted):
    expert = planted["expert"]
    assert expert.open_vocabulary == sorted(SEEN) + sorted(HELD) and expert.open_text.shape == (14, 384)
    calibration = expert.open_calibration
    assert calibration["groups"] == 3  # in vocabulary, held-out concepts (HELD_OUT_CONCEPTS) and the concept-out reads
    # every fold's expert on the 12 held-out LoRAs (no families known), and the 60 training LoRAs read by experts that
    # never trained on their concept (10 concepts in 3 groups: every training LoRA once)
    assert calibration["decisions"] == 60 + 3 * 12 + 60
    # the held-out and concept-out LoRAs again with their concept withheld: a LoRA of a concept the tree names nowhere
    assert calibration["unseen_models"] == 3 * 12 + 60 and calibration["fit"] > 0
    assert 0 <= calibration["known_margin"] <= 0.5  # what a trained concept must lead the untrained ones by
    assert 0 < calibration["untrained_threshold"] <= 1.01  # what a top concept it never trained on needs
    assert 0 <= calibration["least_margin"] <= 0.2 and 0 <= calibration["lists"]["least_margin"] <= 0.2  # near ties
    # a candidate list's own calibration: the same LoRAs among short lists, every one also with its concept withheld
    assert calibration["lists"]["decisions"] == 156 and calibration["lists"]["unseen_models"] == 156
    assert HELD_OUT_CONCEPTS == "held-out concepts" and CONCEPTS_OUT == "concepts the reading expert never trained on"


def test_a_lora_whose_concept_is_not_among_the_candidates_gets_no_candidate_fits(learnable):
    abstained = []
    for folder in learnable["seen"]:  # LoRAs of concepts the expert trained on; the candidates are others
        result = infer_card(folder, experts=[learnable["folder"]], candidates=NEW)
        assert "trained_on" not in result.fields, (_truth(folder), result.fields["trained_on"])
        abstained.append(result.abstained["trained_on"])
        named = infer_card(folder, experts=[learnable["folder"]])  # its own concept listed (the default vocabulary)
        assert named.fields["trained_on"].value == _truth(folder)
    assert len(abstained) == 40 and all(why.startswith("no candidate fits: the best of the candidates vocabulary (6 "
                                                       "concepts") for why in abstained), abstained[0]


def test_a_held_out_concept_among_the_candidates_is_still_named(learnable):
    named = {}
    for folder in learnable["held"]:  # 18 LoRAs of 6 concepts the expert never trained on
        result = infer_card(folder, experts=[learnable["folder"]], candidates=NEW)
        if "trained_on" in result.fields:
            named[folder.name] = (result.fields["trained_on"].value, _truth(folder))
    assert len(named) >= 4 and all(value == truth for value, truth in named.values()), named


def test_a_held_out_concept_is_named_when_it_is_among_the_candidates(planted):
    named = {}
    for folder in planted["held"]:
        result = infer_card(folder, experts=[planted["folder"]], candidates=HELD + ["a concept nobody trained"],
                            min_confidence=0.0)
        named[folder.name] = (result.fields["trained_on"].value, _truth(folder))
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


def test_a_trained_concept_leading_the_untrained_ones_by_less_than_the_calibrated_margin_is_held_back(planted, tmp_path):
    """The open calibration asks a concept the expert trained on to lead the best one it never trained on by
    `known_margin` (a LoRA of an unknown concept reads as its trained neighbour, but not that far ahead)."""
    expert = load_expert(str(planted["folder"]))
    lora = sorted((planted["held"][0].parent.parent / "train").iterdir())[0]  # of a concept the expert trained on
    lead = infer_card(lora, experts=[planted["folder"]], min_confidence=0.0).details["trained_on"]["untrained_lead"]
    results = {}
    for margin in (lead - 0.01, lead + 0.01):  # every confidence high enough: only the margin decides
        expert.set_open_vocabulary(expert.open_vocabulary, expert.open_text.numpy(),
                                   {**expert.open_calibration, "threshold": 0.0, "known_margin": margin})
        expert.save_pretrained(tmp_path / f"{margin:.3f}")
        results[margin] = infer_card(lora, experts=[tmp_path / f"{margin:.3f}"])
    assert results[lead - 0.01].fields["trained_on"].value == _truth(lora)
    held_back = results[lead + 0.01]
    assert "trained_on" not in held_back.fields and held_back.details["trained_on"]["known_margin"] == lead + 0.01
    why = held_back.abstained["trained_on"]
    assert f"{_truth(lora)!r}" in why and "is one the expert trained on and leads" in why
    assert any(f"{concept!r}, the best it never trained on, by {lead:.3f}" in why for concept in HELD), why
    # a minimum confidence the caller asks for is the caller's cut: the margin is the calibrated threshold's
    assert "trained_on" in infer_card(lora, experts=[tmp_path / f"{lead + 0.01:.3f}"], min_confidence=0.0).fields
    # a candidate that says what a training concept says counts as one the expert trained on (the details tell its lead)
    listed = infer_card(lora, experts=[planted["folder"]], candidates=[f"  {_truth(lora)}", *HELD], min_confidence=0.0)
    assert listed.details["trained_on"]["untrained_lead"] > 0


def test_a_near_tie_with_the_runner_up_among_candidates_is_held_back(planted, tmp_path):
    """A caller's list is read with a least margin over the runner-up (`least_margin`, the lists' calibration: every
    top concept alike): a LoRA whose best candidate leads the next by less abstains and says so."""
    expert = load_expert(str(planted["folder"]))
    lora, candidates = planted["held"][0], HELD + ["a concept nobody trained"]
    margin = infer_card(lora, experts=[planted["folder"]], candidates=candidates, min_confidence=0.0).details[
        "trained_on"]["margin"]
    results = {}
    for least in (margin - 0.01, margin + 0.01):  # every confidence high enough: only the margin decides
        lists = {**expert.open_calibration["lists"], "threshold": 0.0, "least_margin": least}
        expert.set_open_vocabulary(expert.open_vocabulary, expert.open_text.numpy(),
                                   {**expert.open_calibration, "lists": lists})
        expert.save_pretrained(tmp_path / f"{least:.3f}")
        results[least] = infer_card(lora, experts=[tmp_path / f"{least:.3f}"], candidates=candidates)
    named = results[margin - 0.01]
    assert "trained_on" in named.fields and named.details["trained_on"]["least_margin"] == margin - 0.01
    held_back = results[margin + 0.01]
    assert "trained_on" not in held_back.fields
    why = held_back.abstained["trained_on"]
    assert why.startswith("no candidate fits: the best of the candidates vocabulary (5 concepts")
    assert f"leads the runner-up {held_back.details['trained_on']['runner_up']!r} by {margin:.3f}: it asks" in why, why
    # a minimum confidence the caller asks for is the caller's cut: the least margin is the calibrated threshold's
    assert "trained_on" in infer_card(lora, experts=[tmp_path / f"{margin + 0.01:.3f}"], candidates=candidates,
                                      min_confidence=0.0).fields


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


def test_withheld_concepts_drop_each_decisions_true_concept():
    cosines = np.array([[0.1, 0.9, 0.3], [0.5, 0.2, 0.8]])
    assert np.array_equal(withheld_concepts(cosines, np.array([1, 2])), [[0.1, 0.3], [0.5, 0.2]])


def test_candidate_lists_keep_the_true_concept_among_a_short_list():
    cosines = np.random.default_rng(0).random((200, 50))
    truth = np.arange(200) % 50
    listed = candidate_lists(cosines, truth)
    sizes = np.isfinite(listed).sum(axis=1)
    assert np.array_equal(listed[np.arange(200), truth], cosines[np.arange(200), truth])  # the truth always listed
    assert sizes.min() == LIST_SIZES[0] and sizes.max() == LIST_SIZES[1]
    kept = np.isfinite(listed)
    assert np.array_equal(listed[kept], cosines[kept])  # listed concepts keep their cosines, the rest are never ranked


def test_search_ranks_a_lora_of_a_concept_the_expert_never_trained_on_first(learnable):
    expert = load_expert(str(learnable["folder"]))
    folders = learnable["seen"] + learnable["held"]
    vectors = expert.search_vectors(expert.read_files([f / "pytorch_lora_weights.safetensors" for f in folders]))
    truths = [_truth(f) for f in folders]
    firsts = 0
    for concept, query in zip(NEW, encode_texts(NEW)):
        firsts += truths[int(np.argmax(query_fit(expert, vectors, query)))] == concept
    assert firsts >= 5, firsts  # 6 concepts never trained on, 58 LoRAs (40 of trained concepts)
