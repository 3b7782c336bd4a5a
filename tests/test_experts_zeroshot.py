"""Zero-shot experts for LoRA trees: weights and text meet in one space, held-out concepts included."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from hf_probex.experts.training.harness import cross_validate, fit_expert, load_layer_data
from hf_probex.experts.training.fit import TrainConfig
from hf_probex.text import DEFAULT_TEXT_ENCODER, encode_texts

SEEN = ["dog", "cat", "car", "airplane", "apple", "guitar", "mountain", "river", "chair", "pizza"]
HELD = ["bicycle", "castle", "violin", "banana"]


def write_planted_loras(root, module: str = "blk.to_q", *others: str, noise: float = 0.3, seen: list[str] = SEEN,
                        held: list[str] = HELD, learnable: bool = False) -> None:
    """Model-J SD layout: each LoRA's update B @ A of `module` (and of each of `others`) is a fixed linear image of
    its concept's text embedding (one image per module), plus noise (`noise` times a standard normal).

    A linear map from weights back to text then exists for every concept, so an expert that learns it on
    the seen concepts also ranks held-out concepts it never trained on.
    """
    rng = np.random.default_rng(0)
    images = {name: rng.normal(size=(64, 384)).astype(np.float32) for name in (module, *others)}
    embeddings = dict(zip(seen + held, encode_texts(seen + held)))
    if learnable:  # a held-out concept's image is that of its text's part in the span of the seen concepts' texts
        basis = np.linalg.qr(np.stack([embeddings[c] for c in seen]).T)[0]
        embeddings |= {c: basis @ (basis.T @ embeddings[c]) for c in held}
    idx = 0
    for split, concepts, per_concept in (("train", seen, 6), ("val_holdout", held, 3)):
        for concept in concepts:
            for _ in range(per_concept):
                folder = root / split / f"model_idx_{idx:04d}"
                folder.mkdir(parents=True)
                idx += 1
                tensors = {}
                for name, image in images.items():
                    update = (image @ embeddings[concept]).reshape(8, 8) + noise * rng.normal(size=(8, 8))
                    tensors |= {f"{name}.lora.down.weight": np.eye(8, dtype=np.float32),
                                f"{name}.lora.up.weight": update.astype(np.float32)}
                save_file(tensors, str(folder / "pytorch_lora_weights.safetensors"),
                          metadata={"imagenet_class_id": concept})


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd") / "SD_toy"
    write_planted_loras(root)
    return load_layer_data(root, "SD_toy", "blk.to_q")


def test_layer_data_separates_seen_and_held_out_concepts(planted):
    assert planted.task == "zeroshot" and planted.x.shape == (60, 8, 8) and planted.holdout_x.shape == (12, 8, 8)
    assert planted.vocabulary == sorted(SEEN) and planted.holdout_vocabulary == sorted(HELD)
    assert planted.text.shape == (10, 384) and planted.text_encoder == DEFAULT_TEXT_ENCODER


@pytest.mark.parametrize("method, temperature", [("probex", 0.1), ("ridge", 1.0)])
def test_zero_shot_ranks_seen_and_held_out_concepts(planted, method, temperature):
    torch.set_num_threads(1)
    report = cross_validate(planted, method, folds=3, temperature=temperature,
                            config=TrainConfig(epochs=100, eval_every=5, batch_size=32))
    metrics = report["metrics"]
    assert set(metrics) == {"top1", "top5", "retrieval_mAP", "holdout_top1", "holdout_top5", "holdout_retrieval_mAP"}
    assert metrics["holdout_retrieval_mAP"]["mean"] > report["references"]["constant"]["retrieval_mAP"]["mean"] + 20
    assert metrics["top1"]["mean"] > 90  # chance 10
    assert metrics["holdout_top1"]["mean"] > 50, metrics  # 4 concepts never trained on: chance 25
    assert report["chance"]["holdout_top1"] == 25.0 and report["references"]["constant"]["top1"]["mean"] < 20
    assert report["shuffled"]["holdout_top1"]["mean"] < metrics["holdout_top1"]["mean"]


def test_zero_shot_expert_scores_any_text(planted):
    expert, _ = fit_expert(planted, "probex", np.arange(60), temperature=0.1, config=TrainConfig(epochs=40))
    scores = expert.predict(planted.holdout_x, planted.holdout_text)
    assert scores.shape == (12, 4) and np.all(np.abs(scores) <= 1 + 1e-5)  # cosine similarities
    assert expert.predict(planted.x[:3]).shape == (3, 10)  # default: the training vocabulary, no encoder needed


def test_zero_shot_runs_on_a_real_lora_tree(tiny_zoo):
    data = load_layer_data(tiny_zoo.root, "sd", "unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_q")
    assert data.adapter == "lora" and data.root is None and data.holdout_x is not None
    report = cross_validate(data, "probex", folds=2, shuffled=False, config=TrainConfig(epochs=5))
    assert 0 <= report["metrics"]["holdout_top1"]["mean"] <= 100 and not report["centred"]
