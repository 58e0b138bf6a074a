"""SPEC §5: an untied layer whose locations all hold one filter is that conv layer.

Forward output and input error are the same, and summing the per-location weight
increments gives the conv increment (the tied increment is the untied one summed
over space).
"""
import numpy as np
import pytest
from hypothesis import given, settings

import hebbref
from hebbref.layers import (
    conv_forward, conv_input_error, conv_weight_increment,
    locally_connected_forward, locally_connected_input_error, locally_connected_weight_increment,
)

from comparisons import assert_close
from strategies import SEEDS, conv_shapes, random_batch


@settings(max_examples=40, deadline=None)
@given(conv_shapes(max_size=6), SEEDS)
def test_untied_layer_with_one_filter_everywhere_is_the_conv_layer(shape, seed):
    n, c_in, c_out, h, w, k = shape
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c_in, h, w))
    W, R = rng.normal(size=(c_out, c_in, k, k)), rng.normal(size=(c_out, c_in, k, k))
    W_untied = np.ascontiguousarray(np.broadcast_to(W, (h, w) + W.shape))
    R_untied = np.ascontiguousarray(np.broadcast_to(R, (h, w) + R.shape))
    h_conv, conv_cache = conv_forward(x, W)
    h_untied, untied_cache = locally_connected_forward(x, W_untied)
    assert_close(h_untied, h_conv, 1e-12, "forward")
    delta = rng.normal(size=h_conv.shape)
    assert_close(locally_connected_input_error(delta, untied_cache, R_untied),
                 conv_input_error(delta, conv_cache, R), 1e-12, "input error through R")
    G_untied = locally_connected_weight_increment(delta, untied_cache)  # (H, W, C_out, C_in, k, k)
    assert_close(G_untied.sum(axis=(0, 1)), conv_weight_increment(delta, conv_cache), 1e-12,
                 "summed untied increments vs conv increment")


def test_untied_network_starts_as_the_tied_network_and_then_drifts():
    """With the paper's default init the untied simple net computes the tied one's first step."""
    kwargs = dict(input_shape=(1, 10, 10), n_classes=3, seed=4, rule="urfb", backend="numpy")
    tied = hebbref.build_network("simple", **kwargs)
    untied = hebbref.build_network("simple", untied=True, **kwargs)
    conv, lc = tied.parameters()[0], untied.parameters()[0]
    assert lc.W.shape == (10, 10) + conv.W.shape
    np.testing.assert_array_equal(lc.W[3, 7], conv.W)  # one filter copied to every location
    np.testing.assert_array_equal(lc.R[0, 0], conv.R)
    x, y = random_batch(np.random.default_rng(0), (1, 10, 10), 3, batch=8)
    assert untied.train_step(x, y) == pytest.approx(tied.train_step(x, y), rel=1e-12)
    # after one step the untied filters differ from place to place, and sum to the tied step
    assert not np.allclose(lc.W[0, 0], lc.W[5, 5])
    assert_close(lc.G.sum(axis=(0, 1)), conv.G, 1e-10, "untied increments summed over space")


def test_independent_untied_init_draws_every_location():
    net = hebbref.build_network("lc3:2 ramp out", (1, 4, 4), 2, untied_init="independent",
                                backend="numpy")
    W = net.parameters()[0].W
    assert not np.allclose(W[0, 0], W[1, 1])
    limit = np.sqrt(6 / (9 * 1 + 9 * 2))
    assert np.abs(W).max() <= limit


def test_a_one_by_one_untied_layer_learns():
    """Regression: tiling the default filter over a 1×1 image once gave a read-only W."""
    net = hebbref.build_network("pool3s3 lc1:1 ramp out", (1, 3, 3), 2, rule="urfb", backend="numpy")
    lc = net.parameters()[0]
    W0 = lc.W.copy()
    x, y = random_batch(np.random.default_rng(0), (1, 3, 3), 2, batch=4)
    net.train_step(x, y, lr=0.5)
    assert lc.W.flags.writeable and lc.R.flags.writeable
    assert not np.array_equal(lc.W, W0)
