"""Input shaping: matrices from linear, conv and LoRA layers, root centring, bad weights."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

from hf_probex.experts.methods.shaping import centring, layer_shape, load_matrices, root_matrix, to_matrices
from hf_probex.weightsets import WeightRecord


def test_linear_squeeze_vector_and_conv_layouts():
    flat = np.arange(2 * 6, dtype=np.float32).reshape(2, 6)
    assert to_matrices(flat, (2, 3)).shape == (2, 2, 3)  # linear [out, in] stays
    assert to_matrices(flat, (1, 2, 3)).shape == (2, 2, 3)  # singleton dims squeezed
    assert to_matrices(flat, (6,)).shape == (2, 6, 1)  # 1-D becomes a column
    conv = np.arange(2 * 4 * 3 * 3, dtype=np.float32).reshape(1, -1)  # [out 2, in 4, 3, 3]
    probex = to_matrices(conv, (2, 4, 3, 3))
    rows = to_matrices(conv, (2, 4, 3, 3), conv_layout="rows")
    assert probex.shape == (1, 36, 2) and rows.shape == (1, 2, 36)
    # ProbeX's layout is a plain memory reshape, not a transpose: row 0 holds the first two weights
    assert probex[0, 0].tolist() == [0, 1] and rows[0, 1, 0] == 36
    assert to_matrices(flat[:, :4], (4, 1, 1, 1)).shape == (2, 4, 1)  # a squeezed 1x1 conv
    patch = np.zeros((1, 32 * 49), dtype=np.float32)  # a ViT patch embedding: one input channel, 7x7
    assert to_matrices(patch, (32, 1, 7, 7)).shape == (1, 49, 32)
    assert to_matrices(patch, (32, 1, 7, 7), conv_layout="rows").shape == (1, 32, 49)
    assert to_matrices(np.zeros((1, 24)), (2, 3, 4)).shape == (1, 2, 12)  # other tensors: first axis = rows
    with pytest.raises(ValueError, match="unknown conv layout"):
        to_matrices(conv, (2, 4, 3, 3), conv_layout="other")


def _record(path, kind="classifier", name="m"):
    return WeightRecord("t", name, "train", ("a",), path, kind)


def test_lora_pair_becomes_dense_update_without_scaling(tmp_path):
    rng = np.random.default_rng(0)
    down, up = rng.normal(size=(2, 5)).astype(np.float32), rng.normal(size=(3, 2)).astype(np.float32)
    path = tmp_path / "lora.safetensors"
    save_file({"blk.to_q.lora.down.weight": down, "blk.to_q.lora.up.weight": up}, str(path))
    assert layer_shape(path, "blk.to_q", "lora") == (3, 5)
    x, shape = load_matrices([_record(path, "lora")], "blk.to_q")
    np.testing.assert_allclose(x[0], up @ down, rtol=1e-6)
    assert root_matrix(path, "blk.to_q", "lora") is None  # an update is already a difference: no centring
    with pytest.raises(ValueError, match="has no layer .blk.to_k."):
        layer_shape(path, "blk.to_k", "lora")


def test_root_centring_and_bad_weights(tmp_path):
    root = np.ones((3, 4), dtype=np.float32)
    save_file({"w": root, "head": np.ones((2, 4), dtype=np.float32)}, str(tmp_path / "root.safetensors"))
    x_train = root + np.array([-1.0, 1.0], dtype=np.float32)[:, None, None]  # differences -1 and +1
    offset, scale = centring(x_train, root_matrix(tmp_path / "root.safetensors", "w", "classifier"))
    np.testing.assert_array_equal(offset, root)
    assert scale == pytest.approx(1.0)
    offset, scale = centring(x_train, np.ones((2, 4), dtype=np.float32))  # root shaped differently (a new head)
    assert not offset.any() and scale == 1.0
    bad = tmp_path / "bad.safetensors"
    save_file({"w": np.full((3, 4), np.nan, dtype=np.float32)}, str(bad))
    with pytest.raises(ValueError, match="layer 'w' of m holds NaN or inf"):
        load_matrices([_record(bad)], "w")
    with pytest.raises(ValueError, match="has no layer .v."):
        load_matrices([_record(bad)], "v")


def test_every_candidate_layer_of_a_real_zoo_becomes_matrices(tiny_zoo):
    from hf_probex.experts.training.harness import candidate_layers
    from hf_probex.weightsets import open_weight_set

    weights = open_weight_set(tiny_zoo.root)
    for tree in ("vit", "resnet", "sd"):
        records = weights.for_tree(tree)[:2]
        layers = candidate_layers(weights, tree)
        assert layers
        for layer, shape in layers.items():
            x, stored = load_matrices(records, layer)
            assert x.ndim == 3 and x.shape[0] == 2 and x[0].size == np.prod(stored), (tree, layer)
