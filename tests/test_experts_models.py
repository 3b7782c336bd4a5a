"""Expert networks: shapes, invariances, and a planted signal every learning method must find under CV."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from hf_probex.experts.training.harness import cross_validate, load_layer_data
from hf_probex.experts.methods.models import METHODS, PAPER, build_net, count_parameters
from hf_probex.experts.methods.ridge import fit_ridge
from hf_probex.experts.training.fit import TrainConfig

LABELS = [f"class_{i}" for i in range(10)]


def write_planted(root, n_models: int = 80, noise: float = 1.0) -> None:
    """A Model-J-layout weight set whose `informative.weight` [8, 8] is a sum of the chosen classes' patterns."""
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(len(LABELS), 64)).astype(np.float32)
    for idx in range(n_models):
        chosen = sorted(rng.choice(len(LABELS), size=5, replace=False))
        weights = basis[chosen].sum(0) + noise * rng.normal(size=64).astype(np.float32)
        repo = root / f"models--ProbeX--Model-J__Toy__model_idx_{idx:04d}"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text("a" * 40)
        (repo / "snapshots" / ("a" * 40)).mkdir(parents=True)
        save_file(
            {"informative.weight": weights.reshape(8, 8), "noise.weight": rng.normal(size=(8, 8)).astype(np.float32)},
            str(repo / "snapshots" / ("a" * 40) / "model.safetensors"),
            metadata={"dataset_chosen_targets": repr([LABELS[i] for i in chosen])},
        )


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_maps_a_batch_of_matrices_to_its_outputs(method):
    x = torch.randn(3, 12, 7)
    assert build_net(method, (12, 7), 5)(x).shape == (3, 5)
    zero_shot = build_net(method, (12, 7), 16 if METHODS[method].closed_form else None)
    assert zero_shot(x).shape == (3, zero_shot.out_dim)


def test_unknown_method_and_paper_sizes():
    with pytest.raises(ValueError, match="unknown method 'nope'; choose one of: probex"):
        build_net("nope", (4, 4), 2)
    # the fact sheet's count for a 768x768 ViT layer, rep_dim 128, 100 outputs
    assert count_parameters(build_net("probex", (768, 768), 100, **PAPER["probex"])) == 2_306_788


def test_headset_reads_rows_as_a_set_and_mvprobe_ignores_input_scale():
    torch.manual_seed(0)
    x = torch.randn(2, 9, 6)
    headset = build_net("headset", (9, 6), 4)
    torch.testing.assert_close(headset(x), headset(x[:, torch.randperm(9)]))  # row order carries nothing
    assert not torch.allclose(headset(x), headset(x[:, :, torch.randperm(6)]))  # but columns are features
    mvprobe = build_net("mvprobe", (9, 6), 4)
    # every view is standardised per sample, so a positive rescaling of the layer changes nothing
    torch.testing.assert_close(mvprobe(x), mvprobe(3.0 * x), rtol=1e-4, atol=1e-4)
    probex = build_net("probex", (9, 6), 4)
    assert not torch.allclose(probex(x), probex(3.0 * x))


def test_ridge_expert_equals_the_tuned_ridge():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4, 5)).astype(np.float32)
    y = (rng.random((30, 3)) > 0.5).astype(np.float32)
    net = build_net("ridge", (4, 5), 3)
    net.fit_closed_form(torch.from_numpy(x), torch.from_numpy(y), decision_offset=0.5)
    expected = fit_ridge(x.reshape(30, -1), y).predict(x.reshape(30, -1)) - 0.5
    np.testing.assert_allclose(net(torch.from_numpy(x)).detach().numpy(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", ["probex", "mvprobe", "dense", "ridge"])
def test_cross_validation_finds_a_planted_signal(tmp_path, method):
    torch.set_num_threads(1)
    write_planted(tmp_path)
    data = load_layer_data(tmp_path, "Toy", "informative.weight")
    assert data.x.shape == (80, 8, 8) and data.task == "multilabel" and data.root is None
    # the signal is planted in the raw weights: the networks read the change itself (`delta`), as in the papers
    report = cross_validate(data, method, folds=4, config=TrainConfig(epochs=60, eval_every=5, batch_size=32),
                            features="delta")
    acc = report["metrics"]["per_label_acc"]
    assert acc["mean"] > 90 and acc["se"] < 5, report["metrics"]  # ProbeX, MVProbe, ridge ~99-100; dense ~95
    assert report["shuffled"]["per_label_acc"]["mean"] < 62  # the same method on shuffled labels is near chance
    assert set(report["references"]) == {"constant", "label_frequency"}
    assert report["references"]["constant"]["per_label_acc"]["mean"] == 50.0
    assert report["metrics"]["mAP"]["mean"] > report["references"]["label_frequency"]["mAP"]["mean"] + 20
    assert report["parameters"] > 0 and report["train_seconds"]["mean"] > 0 and not report["centred"]


def test_noise_layer_stays_near_chance(tmp_path):
    write_planted(tmp_path, n_models=60)
    data = load_layer_data(tmp_path, "Toy", "noise.weight")
    report = cross_validate(data, "probex", folds=3, shuffled=False, config=TrainConfig(epochs=30, batch_size=32))
    assert report["metrics"]["per_label_acc"]["mean"] < 62


@pytest.mark.parametrize("tree, layer, centred", [
    ("vit", "vit.encoder.layer.0.attention.attention.value.weight", True),
    ("resnet", "resnet.encoder.stages.1.layers.0.layer.0.convolution.weight", True),
    ("vit", "classifier.weight", False),  # each child has a fresh head: nothing to centre by
])
def test_every_method_runs_on_a_real_zoo(tiny_zoo, tree, layer, centred):
    torch.set_num_threads(1)
    data = load_layer_data(tiny_zoo.root, tree, layer)
    for method in METHODS:
        report = cross_validate(data, method, folds=2, shuffled=False, config=TrainConfig(epochs=5))
        assert report["centred"] is centred and report["models"] == len(data.y)
        assert 0 <= report["metrics"]["per_label_acc"]["mean"] <= 100


@pytest.mark.parametrize("method", ["probex", "mvprobe"])  # Adam-trained: their networks start from random weights
def test_the_seed_fixes_initialisation_and_training(tiny_zoo, method):
    from hf_probex.experts.training.harness import fit_expert

    data = load_layer_data(tiny_zoo.root, "vit", "vit.encoder.layer.0.attention.attention.value.weight")
    config = TrainConfig(epochs=3)
    runs = []
    for _ in range(2):
        torch.rand(7)  # whatever ran before (another fold, another method) must not matter
        report = cross_validate(data, method, folds=2, seed=0, config=config)
        expert, _ = fit_expert(data, method, np.arange(len(data.y)), config=config)
        runs.append((report["metrics"], report["shuffled"], expert.state_dict()))
    (metrics, shuffled, state), (metrics_again, shuffled_again, state_again) = runs
    assert metrics == metrics_again and shuffled == shuffled_again
    assert state.keys() == state_again.keys() and all(torch.equal(state[k], state_again[k]) for k in state)
    torch.rand(7)
    other, _ = fit_expert(data, method, np.arange(len(data.y)), config=TrainConfig(epochs=3, seed=1))
    assert not all(torch.equal(state[k], v) for k, v in other.state_dict().items())  # the seed is what fixes them


def test_weight_statistics_match_numpy():
    from hf_probex.experts.methods.models import weight_statistics

    x = torch.randn(3, 5, 7, dtype=torch.float64)
    stats = weight_statistics(x).numpy()
    flat = x.flatten(1).numpy()
    np.testing.assert_allclose(stats[:, 2:7], np.quantile(flat, [0, 0.25, 0.5, 0.75, 1], axis=1).T)
    np.testing.assert_allclose(stats[:, 0], flat.mean(1))
    rows = np.linalg.norm(x.numpy(), axis=2)
    np.testing.assert_allclose(stats[:, 9:14], np.quantile(rows, [0, 0.25, 0.5, 0.75, 1], axis=1).T)


def test_training_device_follows_the_environment(monkeypatch):
    from hf_probex.experts.training import launch

    monkeypatch.setenv("HF_PROBEX_DEVICE", "cpu")
    assert launch.device() == torch.device("cpu")
    monkeypatch.delenv("HF_PROBEX_DEVICE")
    assert launch.device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert not launch.is_distributed() and launch.is_main_process()
    assert launch.share([1, 2, 3]) == [1, 2, 3]
