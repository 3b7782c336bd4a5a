"""Expert features: the Gram of a layer's change keeps what a recipe does not decide and drops what it does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_probex.experts.methods.features import feature_shape, gram

CONV, LINEAR = ("conv", (16, 8, 3, 3)), ("linear", (12, 20))


def _change(shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(2, int(np.prod(shape)))).astype(np.float32))


def test_gram_ignores_output_order_rotation_and_scale():
    """Another class order or count moves a layer's outputs; a stronger fine-tune scales its change: same Gram."""
    for name, shape in (CONV, LINEAR):
        delta = _change(shape)
        rows = delta.reshape(2, shape[0], -1)
        rotation, _ = torch.linalg.qr(torch.randn(shape[0], shape[0], generator=torch.Generator().manual_seed(1)))
        permuted = rows[:, torch.randperm(shape[0])]
        for other in (permuted, rotation @ rows, 7.5 * rows):
            torch.testing.assert_close(gram(other.reshape(2, -1), [(name, shape)]), gram(delta, [(name, shape)]),
                                       rtol=1e-4, atol=1e-5)
        assert not torch.allclose(gram(_change(shape, seed=2), [(name, shape)]), gram(delta, [(name, shape)]))


def test_one_layer_is_a_matrix_and_stacked_layers_one_vector():
    g = gram(_change(CONV[1]), [CONV])
    assert g.shape == (2, 72, 72) and feature_shape("gram", (72, 16), [CONV]) == (72, 72)
    assert torch.allclose(g, g.transpose(1, 2)) and torch.allclose(g.flatten(1).norm(dim=1), torch.ones(2))
    both = torch.cat([_change(CONV[1]), _change(LINEAR[1])], dim=1)[:, None, :]
    stacked = gram(both, [CONV, LINEAR])
    width = 72 * 73 // 2 + 20 * 21 // 2
    assert stacked.shape == (2, 1, width) and feature_shape("gram", tuple(both.shape[1:]), [CONV, LINEAR]) == (1, width)
    assert feature_shape("delta", (72, 16), [CONV]) == (72, 16)
    with pytest.raises(ValueError, match="unknown features"):
        feature_shape("other", (72, 16), [CONV])


def test_wide_layers_are_projected_to_a_bounded_gram_the_same_in_every_process():
    from hf_probex.experts.methods.features import GRAM_MAX_WIDTH, projection

    wide = ("wide", (4, 128, 3, 3))  # 1,152 inputs
    delta = _change(wide[1])
    g = gram(delta, [wide])
    assert g.shape == (2, GRAM_MAX_WIDTH, GRAM_MAX_WIDTH) == (2, *feature_shape("gram", (1152, 4), [wide]))
    projection.cache_clear()
    torch.testing.assert_close(gram(delta, [wide]), g)  # regenerated from its seed, not kept from the first call
    rows = delta.reshape(2, 4, -1)
    torch.testing.assert_close(gram((rows[:, [2, 0, 3, 1]] * 3).reshape(2, -1), [wide]), g, rtol=1e-4, atol=1e-5)
