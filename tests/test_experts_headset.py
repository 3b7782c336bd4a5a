"""The head-as-set expert: reads a classification head's rows order-free, alone and next to a hidden layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from hf_probex.experts.training.harness import cross_validate, cross_validate_combined, load_layer_data
from hf_probex.experts.training.fit import TrainConfig

LABELS = [f"class_{i}" for i in range(10)]
FAST = TrainConfig(epochs=60, eval_every=5, batch_size=32)


def write_heads(root, n_models: int = 80) -> None:
    """Model-J layout: each child's head holds one noisy prototype row per chosen class, in the child's own order."""
    rng = np.random.default_rng(0)
    prototypes = rng.normal(size=(len(LABELS), 16)).astype(np.float32)
    for idx in range(n_models):
        chosen = rng.choice(len(LABELS), size=5, replace=False)
        head = prototypes[chosen] + 0.5 * rng.normal(size=(5, 16)).astype(np.float32)
        repo = root / f"models--ProbeX--Model-J__Toy__model_idx_{idx:04d}"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text("a" * 40)
        (repo / "snapshots" / ("a" * 40)).mkdir(parents=True)
        save_file({"classifier.weight": head, "hidden.weight": rng.normal(size=(8, 8)).astype(np.float32)},
                  str(repo / "snapshots" / ("a" * 40) / "model.safetensors"),
                  metadata={"dataset_chosen_targets": repr([LABELS[i] for i in sorted(chosen)])})


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    root = tmp_path_factory.mktemp("heads")
    write_heads(root)
    return load_layer_data(root, "Toy", "classifier.weight"), load_layer_data(root, "Toy", "hidden.weight")


def test_headset_reads_shuffled_prototype_rows_that_flat_methods_miss(heads):
    torch.set_num_threads(1)
    head, _ = heads
    # the head's rows as they are (`delta` features): the set reader against a reader of positions
    headset = cross_validate(head, "headset", folds=4, config=FAST, features="delta")["metrics"]["per_label_acc"]
    ridge = cross_validate(head, "ridge", folds=4, shuffled=False, features="delta")["metrics"]["per_label_acc"]
    assert headset["mean"] > 88, headset  # measured 94.5 +- 0.4
    assert headset["mean"] > ridge["mean"] + 10  # ridge sees positions, not the set: measured 72.2


def test_head_combined_with_a_hidden_layer(heads):
    head, hidden = heads
    report = cross_validate_combined([(head, "headset", None), (hidden, "probex", {"n_probes": 8})], folds=4, config=FAST,
                                     features="delta")
    assert report["method"] == "headset + probex" and report["layer"] == "classifier.weight + hidden.weight"
    assert report["metrics"]["per_label_acc"]["mean"] > 80  # a noise hidden layer dilutes but does not drown the head
    assert report["shuffled"]["per_label_acc"]["mean"] < 62 and report["hparams"][1] == {"n_probes": 8}


def test_combined_members_must_be_the_same_models(heads, tiny_zoo):
    head, _ = heads
    other = load_layer_data(tiny_zoo.root, "vit", "classifier.weight")
    with pytest.raises(ValueError, match="same models"):
        cross_validate_combined([(head, "headset", None), (other, "probex", None)], folds=2)


def test_headset_with_a_hidden_layer_on_a_real_tree(tiny_zoo):
    head = load_layer_data(tiny_zoo.root, "vit", "classifier.weight")
    hidden = load_layer_data(tiny_zoo.root, "vit", "vit.encoder.layer.0.attention.attention.value.weight")
    report = cross_validate_combined([(head, "headset", None), (hidden, "probex", None)], folds=2, shuffled=False,
                                     config=TrainConfig(epochs=3))
    assert report["centred"] == [False, True] and report["models"] == 6
