"""Whole networks: back-propagation gradients against finite differences, and the API."""
import numpy as np
import pytest

import hebbref
from hebbref.losses import get_loss

from comparisons import assert_close, numerical_gradient
from strategies import random_batch

NETWORKS = {
    "sum block": ("sum[conv3:2,conv3:2] pool3s2 dense5 ramp out", (1, 6, 6)),
    "even kernels, overlapping pool": ("conv2:3 ramp pool3s1 conv4:2 ramp out", (2, 5, 5)),
    "untied": ("lc3:2 ramp pool2 lc2:2 ramp out", (1, 6, 6)),
    "untied sum block": ("sum[lc2:2,lc3:2] pool2s2 dense4 ramp out", (1, 4, 4)),
    "dense": ("dense7 ramp dense5 ramp out", (3, 2, 2)),
}


def gradients_by_backprop(net, x, y, loss):
    o = net.forward(x, train=True)
    _, e = get_loss(loss)(o, y)
    net.backward(e)
    return [p.G.copy() for p in net.parameters()]


@pytest.mark.parametrize("loss", ["hinge", "softmax", "squared"])
@pytest.mark.parametrize("name", list(NETWORKS))
def test_bp_gradient_of_whole_network_matches_finite_differences(name, loss):
    text, shape = NETWORKS[name]
    net = hebbref.build_network(text, shape, 3, rule="bp", seed=1, backend="numpy")
    rng = np.random.default_rng(2)
    x, y = random_batch(rng, shape, 3, batch=4)
    x *= 4.0  # large enough fields that some ramps saturate
    grads = gradients_by_backprop(net, x, y, loss)
    for p, G in zip(net.parameters(), grads):
        picks = [tuple(rng.integers(0, n) for n in p.W.shape) for _ in range(12)]
        numeric = numerical_gradient(lambda: net.loss(x, y, loss), p.W, eps=1e-6, indices=picks)
        ours = np.array([G[i] for i in picks])
        assert_close(ours, numeric, 1e-5, f"{name}/{loss}: dL/dW of {p.name}", atol=1e-9)


def test_parameters_are_named_in_order_and_R_twins_W():
    net = hebbref.build_network("deep", (3, 32, 32), 10, seed=0, backend="numpy")
    names = [p.name for p in net.parameters()]
    assert names == ["sum1.a", "sum1.b", "sum2.a", "sum2.b", "sum3.a", "sum3.b", "dense1", "dense2"]
    for p in net.parameters():
        assert p.R.shape == p.W.shape and p.R.dtype == p.W.dtype
        assert not np.shares_memory(p.R, p.W)


def test_presets_adapt_to_input_shape_and_classes():
    for shape in [(1, 28, 28), (3, 32, 32), (2, 9, 13)]:
        for name in ["simple", "deep"]:
            for untied in [False, True]:
                net = hebbref.build_network(name, shape, 7, untied=untied, seed=0, backend="numpy")
                x, _ = random_batch(np.random.default_rng(0), shape, 7, batch=2)
                assert net.forward(x).shape == (2, 7)


def test_simple_preset_is_the_papers_network():
    net = hebbref.build_network("simple", (3, 32, 32), 10, seed=0, backend="numpy")
    assert [layer.describe() for layer in net.layers] == [
        "conv5:32", "ramp", "pool3s2", "drop0.8", "flatten", "dense500", "ramp", "drop0.3", "dense10"]
    conv, dense, out = net.parameters()
    assert conv.W.shape == (32, 3, 5, 5) and dense.W.shape == (500, 32 * 16 * 16)
    # Glorot uniform: |W| <= sqrt(6/(fan_in+fan_out)), fan = k·k·channels for a conv
    assert np.abs(conv.W).max() <= np.sqrt(6 / (25 * 3 + 25 * 32))
    assert np.abs(conv.W).max() > 0.9 * np.sqrt(6 / (25 * 3 + 25 * 32))
    no_dropout = hebbref.build_network("simple", (3, 32, 32), 10, dropout=False, backend="numpy")
    assert "drop" not in repr(no_dropout)


def test_random_init_draws_R_independently_and_symmetric_copies_W():
    a = hebbref.build_network("simple", (1, 8, 8), 3, init="random", seed=5, backend="numpy")
    b = hebbref.build_network("simple", (1, 8, 8), 3, init="symmetric", seed=5, backend="numpy")
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(pa.W, pb.W)  # one seed, one W, whatever the init
        np.testing.assert_array_equal(pb.R, pb.W)
        assert abs(np.corrcoef(pa.W.ravel(), pa.R.ravel())[0, 1]) < 0.2


def test_train_step_returns_the_loss_before_the_step_and_learns():
    net = hebbref.build_network("conv3:4 ramp pool2 dense16 ramp out", (1, 6, 6), 2, rule="urfb",
                                seed=0, backend="numpy")
    rng = np.random.default_rng(0)
    x, y = random_batch(rng, (1, 6, 6), 2, batch=32)
    x[y == 1, :, :3] += 1.0  # class 1 is brighter at the top
    before = net.loss(x, y)
    first = net.train_step(x, y, lr=0.1)
    assert first == pytest.approx(before)
    for _ in range(60):
        net.train_step(x, y, lr=0.1)
    assert net.loss(x, y) < 0.5 * before
    assert net.accuracy(x, y) > 0.9
    assert net.predict(x).dtype.kind == "i"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_both_dtypes_run_and_keep_their_dtype(dtype):
    net = hebbref.build_network("simple", (1, 10, 10), 4, dtype=dtype, seed=0, backend="numpy")
    x, y = random_batch(np.random.default_rng(0), (1, 10, 10), 4, batch=5)
    net.train_step(x, y)
    assert net.forward(x).dtype == np.dtype(dtype)
    for p in net.parameters():
        assert p.W.dtype == p.R.dtype == p.G.dtype == np.dtype(dtype)


def test_state_round_trip_restores_weights_and_dropout_stream():
    kwargs = dict(input_shape=(1, 8, 8), n_classes=3, seed=3, backend="numpy")
    a = hebbref.build_network("simple", **kwargs)
    x, y = random_batch(np.random.default_rng(0), (1, 8, 8), 3, batch=6)
    a.train_step(x, y)
    saved = a.state()
    b = hebbref.build_network("simple", **kwargs)
    b.load_state(saved)
    a.train_step(x, y)
    b.train_step(x, y)
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(pa.W, pb.W)
        np.testing.assert_array_equal(pa.R, pb.R)
