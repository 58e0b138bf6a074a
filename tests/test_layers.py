"""Every layer's back-propagation pass against finite differences, and forwards against loops.

Finite differences: central, ε = 1e-6, float64. A central difference of a smooth
function is accurate to O(ε²) plus rounding O(1e-16/ε) ≈ 1e-10; we allow a relative
error of 1e-6 of the largest gradient entry. For piecewise-linear functions (ramp,
hinge, max pooling) the inputs are drawn away from the kinks, where the derivative is
the same on both sides of x ± ε.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hebbref.activations import ramp, ramp_derivative
from hebbref.layers import (
    conv_forward, conv_input_error, conv_weight_increment,
    dense_forward, dense_input_error, dense_weight_increment,
    dropout_backward, dropout_forward, dropout_mask,
    locally_connected_forward, locally_connected_input_error, locally_connected_weight_increment,
    maxpool_backward, maxpool_forward,
)
from hebbref.losses import LOSSES

from comparisons import assert_close, numerical_gradient
from strategies import SEEDS, conv_shapes

FD_RTOL = 1e-6


def check_layer_gradients(forward, input_error, weight_increment, x, W, rng, what):
    """Compare Wᵀδ and Σδxᵀ with the finite-difference gradient of ⟨δ, forward(x, W)⟩."""
    h, cache = forward(x, W)
    delta = rng.normal(size=h.shape)
    objective = lambda: float((forward(x, W)[0] * delta).sum())  # noqa: E731
    assert_close(input_error(delta, cache, W).ravel(), numerical_gradient(objective, x), FD_RTOL,
                 f"{what} input error")
    assert_close(weight_increment(delta, cache).ravel(), numerical_gradient(objective, W), FD_RTOL,
                 f"{what} weight increment")


# --- slow, obvious references for the forward passes ---------------------------------
def conv_by_loops(x, W):
    N, C, H, Wd = x.shape
    O, _, k, _ = W.shape
    before = (k - 1) // 2
    h = np.zeros((N, O, H, Wd))
    for n, o, i, j in np.ndindex(N, O, H, Wd):
        for c, a, b in np.ndindex(C, k, k):
            y, z = i + a - before, j + b - before
            if 0 <= y < H and 0 <= z < Wd:
                h[n, o, i, j] += W[o, c, a, b] * x[n, c, y, z]
    return h


def maxpool_by_loops(x, k, t):
    N, C, H, W = x.shape
    Ho, Wo = math.ceil(H / t), math.ceil(W / t)
    top = max((Ho - 1) * t + k - H, 0) // 2
    left = max((Wo - 1) * t + k - W, 0) // 2
    y = np.full((N, C, Ho, Wo), -np.inf)
    for n, c, i, j in np.ndindex(N, C, Ho, Wo):
        for a, b in np.ndindex(k, k):
            r, s = i * t + a - top, j * t + b - left
            if 0 <= r < H and 0 <= s < W:
                y[n, c, i, j] = max(y[n, c, i, j], x[n, c, r, s])
    return y


# --- dense ---------------------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(SEEDS, st.integers(1, 4), st.integers(1, 5), st.integers(1, 5))
def test_dense_gradients(seed, batch, d_in, d_out):
    rng = np.random.default_rng(seed)
    x, W = rng.normal(size=(batch, d_in)), rng.normal(size=(d_out, d_in))
    check_layer_gradients(dense_forward, dense_input_error, dense_weight_increment, x, W, rng, "dense")


# --- convolution, tied and untied --------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_conv_forward_equals_loops(k):
    rng = np.random.default_rng(k)
    x, W = rng.normal(size=(2, 3, 6, 5)), rng.normal(size=(4, 3, k, k))
    assert_close(conv_forward(x, W)[0], conv_by_loops(x, W), 1e-12, f"conv {k}x{k} forward")


@settings(max_examples=25, deadline=None)
@given(conv_shapes(), SEEDS)
def test_conv_gradients_odd_and_even_kernels(shape, seed):
    n, c_in, c_out, h, w, k = shape
    rng = np.random.default_rng(seed)
    x, W = rng.normal(size=(n, c_in, h, w)), rng.normal(size=(c_out, c_in, k, k))
    check_layer_gradients(conv_forward, conv_input_error, conv_weight_increment, x, W, rng, f"conv k={k}")


@settings(max_examples=20, deadline=None)
@given(conv_shapes(max_size=5), SEEDS)
def test_locally_connected_gradients(shape, seed):
    n, c_in, c_out, h, w, k = shape
    rng = np.random.default_rng(seed)
    x, W = rng.normal(size=(n, c_in, h, w)), rng.normal(size=(h, w, c_out, c_in, k, k))
    check_layer_gradients(locally_connected_forward, locally_connected_input_error,
                          locally_connected_weight_increment, x, W, rng, f"untied k={k}")


# --- pooling ---------------------------------------------------------------------------
@pytest.mark.parametrize("k,t", [(2, 2), (3, 3), (3, 2), (2, 1), (3, 1)])
@pytest.mark.parametrize("size", [(5, 5), (6, 7), (1, 4)])
def test_maxpool_forward_and_gradient(k, t, size):
    rng = np.random.default_rng(k * 10 + t)
    # distinct values far apart: no ties, and x ± ε never changes a window's winner
    x = rng.permutation(2 * 3 * size[0] * size[1]).reshape(2, 3, *size).astype(float)
    y, cache = maxpool_forward(x, k, t)
    assert y.shape == (2, 3, math.ceil(size[0] / t), math.ceil(size[1] / t))
    assert_close(y, maxpool_by_loops(x, k, t), 0.0, f"pool {k}s{t} forward")
    dy = rng.normal(size=y.shape)
    objective = lambda: float((maxpool_forward(x, k, t)[0] * dy).sum())  # noqa: E731
    assert_close(maxpool_backward(dy, cache).ravel(), numerical_gradient(objective, x, eps=1e-3),
                 FD_RTOL, f"pool {k}s{t} backward")


def test_overlapping_pool_adds_errors_of_every_window_a_cell_wins():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 5.0  # the centre wins all four overlapping 2x2 windows at stride 1
    y, cache = maxpool_forward(x, 2, 1)
    dx = maxpool_backward(np.ones_like(y), cache)
    assert dx[0, 0, 1, 1] >= 4.0 and dx.sum() == y.size


# --- the ramp ----------------------------------------------------------------------------
@pytest.mark.parametrize("slope", [0.5, 1.0, 2.0])
def test_ramp_derivative_matches_finite_differences(slope):
    rng = np.random.default_rng(0)
    h = rng.uniform(-6, 6, size=200)
    h = h[np.abs(np.abs(slope * h) - 1.0) > 1e-3]  # away from the two kinks
    numeric = (ramp(h + 1e-7, slope) - ramp(h - 1e-7, slope)) / 2e-7
    assert_close(ramp_derivative(h, slope), numeric, 1e-6, "ramp derivative")
    assert np.all(np.abs(ramp(h, slope)) <= 1.0)


def test_ramp_saturates_and_passes_error_only_in_the_linear_part():
    h = np.array([-4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 2.5])
    np.testing.assert_array_equal(ramp(h, 0.5), [-1.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.0])
    np.testing.assert_array_equal(ramp_derivative(h, 0.5), [0.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.0])


# --- dropout ---------------------------------------------------------------------------
def test_dropout_drops_with_probability_p_and_backward_uses_the_same_mask():
    rng = np.random.default_rng(1)
    p = 0.8
    mask = dropout_mask(rng, (200, 500), p, np.float64)
    assert abs((mask == 0).mean() - p) < 0.01  # p is the probability of DROPPING
    np.testing.assert_array_equal(np.unique(mask), [0.0, 1 / (1 - p)])
    x, e = rng.normal(size=mask.shape), rng.normal(size=mask.shape)
    np.testing.assert_array_equal(dropout_forward(x, mask), x * mask)
    np.testing.assert_array_equal(dropout_backward(e, mask), e * mask)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.7])
def test_dropout_mask_is_the_definition_in_the_layers_dtype_from_the_same_draws(p, dtype):
    """m = [u >= p] / (1-p), divided in float64 and cast: bit for bit, and the stream is left where it was."""
    ours, theirs = np.random.default_rng(5), np.random.default_rng(5)
    mask = dropout_mask(ours, (40, 50), p, dtype)
    definition = ((theirs.random((40, 50)) >= p) / (1.0 - p)).astype(dtype)
    assert mask.dtype == dtype
    np.testing.assert_array_equal(mask.view(np.uint8), definition.view(np.uint8))
    assert ours.random() == theirs.random(), "the mask drew more or fewer numbers than the definition"


# --- the losses ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("mu", [1.0, 10.0])
def test_loss_gradient_matches_finite_differences(name, mu):
    rng = np.random.default_rng(3)
    B, C = 6, 5
    o = rng.uniform(-3, 3, size=(B, C))
    o[np.abs(np.abs(o) - 1.0) < 1e-3] += 0.01  # away from the hinge's kinks at ±1
    y = rng.integers(0, C, size=B)
    loss_fn = LOSSES[name]
    _, e = loss_fn(o, y, mu=mu)
    numeric = numerical_gradient(lambda: loss_fn(o, y, mu=mu)[0], o)
    assert_close(e.ravel(), numeric, FD_RTOL, f"{name} loss gradient")


def test_hinge_loss_by_hand():
    # o = [[0.5, -2.0, 0.0]], y = 0, C = 3, μ = 1:
    # ℓ = max(0, 1 - 0.5) + (1/2)(max(0, 1 - 2) + max(0, 1 + 0)) = 0.5 + 0.5 = 1.0
    # e = [-1 (0.5 < 1), 0 (-2 <= -1), +1/2 (0 > -1)]
    loss, e = LOSSES["hinge"](np.array([[0.5, -2.0, 0.0]]), np.array([0]), mu=1.0)
    assert loss == 1.0
    np.testing.assert_array_equal(e, [[-1.0, 0.0, 0.5]])
