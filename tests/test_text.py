"""Pluggable text encoders: CLIP's text tower (the paper's) and sentence encoders, recorded in zero-shot experts.

The CLIP checkpoints here are real transformers models (a text tower alone, and a whole CLIP) with a tiny
random configuration and a byte-level CLIP tokenizer, written offline: the same loading path as
openai/clip-vit-large-patch14.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hf_probex.text import encode_texts
from test_experts_zeroshot import write_planted_loras

TEXT = dict(vocab_size=514, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1)


def _clip_tokenizer():
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):  # every byte, alone and ending a word; no merges
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[])


@pytest.fixture(scope="module")
def clip_dirs(tmp_path_factory):
    """(a CLIP text tower with projection, a whole CLIP model): folders with config, weights and tokenizer."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModelWithProjection

    torch.manual_seed(0)
    tower, whole = tmp_path_factory.mktemp("clip-text"), tmp_path_factory.mktemp("clip")
    CLIPTextModelWithProjection(CLIPTextConfig(projection_dim=16, **TEXT)).save_pretrained(tower)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=30,
                  patch_size=10)
    CLIPModel(CLIPConfig(text_config=TEXT, vision_config=vision, projection_dim=24)).save_pretrained(whole)
    for folder in (tower, whole):
        _clip_tokenizer().save_pretrained(folder)
    return tower, whole


def test_clip_embeddings_are_clips_own_text_features(clip_dirs):
    from transformers import AutoTokenizer, CLIPModel

    _, whole = clip_dirs
    texts = ["a dog", "a purple giraffe", "x"]
    model, tokenizer = CLIPModel.from_pretrained(whole).eval(), AutoTokenizer.from_pretrained(whole)
    with torch.no_grad():
        features = model.get_text_features(**tokenizer(texts, padding=True, return_tensors="pt"))
    features = features if torch.is_tensor(features) else features.pooler_output
    expected = torch.nn.functional.normalize(features, dim=-1).numpy()
    np.testing.assert_allclose(encode_texts(texts, str(whole)), expected, atol=1e-5)
    assert expected.shape == (3, 24)  # the joint space's size, not the text tower's default


def test_a_text_tower_alone_and_the_default_encoder_give_unit_vectors(clip_dirs):
    tower, _ = clip_dirs
    clip = encode_texts(["a dog", "a cat"], str(tower))
    minilm = encode_texts(["a dog", "a cat"])
    assert clip.shape == (2, 16) and minilm.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(clip, axis=1), 1, atol=1e-5)
    assert not np.allclose(clip[0], clip[1])


def test_loading_an_encoder_prints_nothing(capfd):
    """Search, LoRA infer and train load an encoder: no transformers loading bar or report on the user's console."""
    from hf_probex.text import _load

    _load.cache_clear()
    assert encode_texts(["a corgi in the snow"]).shape == (1, 384)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_an_encoder_that_cannot_be_loaded_is_one_clear_line(tmp_path):
    with pytest.raises(ValueError, match=r"text encoder .* cannot be loaded .*packaged") as err:
        encode_texts(["a dog"], str(tmp_path / "no-such-encoder"))
    assert "\n" not in str(err.value)


def test_zero_shot_expert_trained_with_clip_records_and_reuses_it(clip_dirs, tmp_path, capsys):
    from hf_probex.cli import main
    from hf_probex.experts.hub import Expert

    tower, _ = clip_dirs
    root = tmp_path / "SD_toy"
    write_planted_loras(root)
    argv = ["train", "--zoo", str(root), "--tree", "SD_toy", "--layer", "blk.to_q", "--method", "ridge", "--folds", "2",
            "--text-encoder", str(tower), "--prompt", "a photo of a {}", "--out", str(tmp_path / "expert")]
    assert main(argv) == 0
    config = json.loads((tmp_path / "expert" / "config.json").read_text())
    assert config["text_encoder"] == str(tower) and config["text_dim"] == 16 and config["prompt"] == "a photo of a {}"
    expert = Expert.from_pretrained(tmp_path / "expert")
    unseen = encode_texts([config["prompt"].format(c) for c in ("bicycle", "violin")], config["text_encoder"])
    scores = expert.predict_files([next(root.rglob("*.safetensors"))], unseen)
    assert scores.shape == (1, 2)  # concepts no expert saw, scored with the expert's own encoder

    assert main([*argv[:-2], "--prompt", "no placeholder", "--out", str(tmp_path / "e2")]) == 2
    assert "--prompt must hold {} once" in capsys.readouterr().err
    assert main([*argv[:-6], "--text-encoder", str(tmp_path / "missing"), "--out", str(tmp_path / "e3")]) == 2
    assert "cannot be loaded" in capsys.readouterr().err
