"""The signal check finds a planted signal, reports chance on noise, and runs on a real zoo."""

from __future__ import annotations

import numpy as np
from safetensors.numpy import save_file

from hf_probex.experts.training.signal import format_signal_report, signal_check

LABELS = [f"class_{i}" for i in range(10)]


def _write_model_j_like(root, n_models: int, planted: bool):
    """A Model-J-layout weight set where (if planted) one layer's weights encode the chosen classes."""
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(len(LABELS), 64)).astype(np.float32)
    for idx in range(n_models):
        chosen = sorted(rng.choice(len(LABELS), size=5, replace=False))
        noise = rng.normal(size=64).astype(np.float32)
        signal = basis[chosen].sum(0) if planted else 0
        repo = root / f"models--ProbeX--Model-J__Toy__model_idx_{idx:04d}"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text("a" * 40)
        (repo / "snapshots" / ("a" * 40)).mkdir(parents=True)
        save_file(
            {"informative.weight": (signal + noise).reshape(8, 8), "noise.weight": rng.normal(size=(8, 8)).astype(np.float32)},
            str(repo / "snapshots" / ("a" * 40) / "model.safetensors"),
            metadata={"dataset_chosen_targets": repr([LABELS[i] for i in chosen])},
        )


def test_planted_signal_passes_with_references(tmp_path):
    _write_model_j_like(tmp_path, 60, planted=True)
    report = signal_check(tmp_path, folds=5, progress=False)
    tree = report["trees"][0]
    assert tree["best_layer"] == "informative.weight"
    assert tree["margin_over_shuffled"] >= 10 and report["passed"]
    assert set(tree["references"]) == {"constant", "label_frequency"}
    assert tree["learning_curve"][-1]["train_models"] == 48
    assert "PASS" in format_signal_report(report)


def test_noise_fails_the_check(tmp_path):
    _write_model_j_like(tmp_path, 60, planted=False)
    report = signal_check(tmp_path, folds=5, progress=False)
    assert not report["passed"]
    assert abs(report["trees"][0]["margin_over_shuffled"]) < 10


def test_signal_check_runs_on_a_real_zoo(tiny_zoo):
    report = signal_check(tiny_zoo, trees=["vit", "sd"], folds=2, progress=False)
    vit, sd = report["trees"]
    assert vit["task"] == "multilabel" and sd["task"] == "multiclass"
    assert any(row["is_head"] for row in vit["layers"])
    assert all(row["layer"].endswith(("to_q", "to_k", "to_v", "to_out.0")) for row in sd["layers"])


def test_a_lora_tree_alone_is_reported_not_failed(tiny_zoo):
    report = signal_check(tiny_zoo, trees=["sd"], folds=2, progress=False)
    assert report["trees"][0]["passed"] is None and report["passed"]
