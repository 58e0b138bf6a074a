"""The Numba CPU kernels equal the NumPy reference, kernel by kernel.  # SPEC §2, §3, §5

Every compiled function of ``hebbref.kernels`` gets the inputs its reference in
``hebbref.layers`` / ``hebbref.activations`` gets, on hypothesis-drawn shapes (batch,
channels, sizes, odd and even kernels) in float32 and float64, and must return the
same shape, the same dtype and the same numbers up to a dtype-aware tolerance. The
tied conv kernels have two paths (direct loops, shifted products): both are tested.
"""
import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hebbref import activations, layers
from hebbref.kernels import (
    numba_activations, numba_conv, numba_locally_connected, numba_pooling, numba_threads,
)

from kernel_checks import check_locally_connected_module
from comparisons import assert_close, tolerance
from strategies import SEEDS, conv_shapes

DTYPES = st.sampled_from([np.float32, np.float64])


def rtol(dtype):
    """Sums of a few hundred products, in another order than the reference's: 10 × one operation's."""
    return 10 * tolerance(dtype)


@pytest.fixture(autouse=True)
def all_threads_even_for_small_work(monkeypatch):
    """Small shapes would run on one thread: make every call here run the parallel loops."""
    monkeypatch.setattr(numba_threads, "PARALLEL_FROM", 0)


def check(ours, reference, what):
    assert ours.dtype == reference.dtype, f"{what}: dtype {ours.dtype} vs reference {reference.dtype}"
    assert_close(ours, reference, rtol(reference.dtype), what)


@contextlib.contextmanager
def conv_path_forced(path):
    """Run the tied conv kernels through one path: direct loops or shifted products."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(numba_conv, "SHIFTED_FROM", 1 if path == "shifted" else 10**9)
        yield


@pytest.mark.parametrize("conv_path", ["direct", "shifted"])
@settings(max_examples=25, deadline=None)
@given(shape=conv_shapes(max_batch=3, max_channels=4, max_size=8, max_kernel=5), dtype=DTYPES, seed=SEEDS)
def test_conv_kernels_equal_the_reference(conv_path, shape, dtype, seed):
    n, c_in, c_out, h, w, k = shape
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c_in, h, w)).astype(dtype)
    W, R = (rng.normal(size=(c_out, c_in, k, k)).astype(dtype) for _ in range(2))
    delta = rng.normal(size=(n, c_out, h, w)).astype(dtype)

    with conv_path_forced(conv_path):
        h_ours, cache = numba_conv.conv_forward(x, W)
        errors = {name: numba_conv.conv_input_error(delta, cache, B) for name, B in (("W", W), ("R", R))}
        G_ours = numba_conv.conv_weight_increment(delta, cache)
    h_ref, cache_ref = layers.conv_forward(x, W)
    check(h_ours, h_ref, f"conv_forward ({conv_path}) {shape}")
    for name, B in (("W", W), ("R", R)):
        check(errors[name], layers.conv_input_error(delta, cache_ref, B),
              f"conv_input_error through {name} ({conv_path}) {shape}")
    check(G_ours, layers.conv_weight_increment(delta, cache_ref), f"conv_weight_increment ({conv_path}) {shape}")


@settings(max_examples=25, deadline=None)
@given(shape=conv_shapes(max_batch=3, max_channels=4, max_size=7, max_kernel=4), dtype=DTYPES, seed=SEEDS)
def test_locally_connected_kernels_equal_the_reference(shape, dtype, seed):
    check_locally_connected_module(numba_locally_connected, shape, dtype, seed, rtol(np.dtype(dtype)), "")


@st.composite
def pool_cases(draw):
    """(N, C, H, W, k, t): disjoint (k = t), overlapping (t < k) and gapped (t > k) windows."""
    k = draw(st.integers(1, 4))
    t = draw(st.integers(1, 4))
    return (draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 9)),
            draw(st.integers(1, 9)), k, t)


@settings(max_examples=40, deadline=None)
@given(case=pool_cases(), dtype=DTYPES, seed=SEEDS, ties=st.booleans())
def test_maxpool_kernels_equal_the_reference(case, dtype, seed, ties):
    """Also with many ties (small integers): the first maximum in row-major order wins."""
    n, c, h, w, k, t = case
    rng = np.random.default_rng(seed)
    x = (rng.integers(-2, 3, size=(n, c, h, w)) if ties else rng.normal(size=(n, c, h, w))).astype(dtype)
    y_ours, cache = numba_pooling.maxpool_forward(x, k, t)
    y_ref, cache_ref = layers.maxpool_forward(x, k, t)
    check(y_ours, y_ref, f"maxpool_forward {case}")
    dy = rng.normal(size=y_ref.shape).astype(dtype)
    # a sum of at most k·k errors per cell, in another order: exact up to rounding
    check(numba_pooling.maxpool_backward(dy, cache), layers.maxpool_backward(dy, cache_ref),
          f"maxpool_backward {case}")


@settings(max_examples=20, deadline=None)
@given(dtype=DTYPES, seed=SEEDS, slope=st.sampled_from([0.5, 1.0, 0.25]))
def test_ramp_kernels_equal_the_reference_bit_for_bit(dtype, seed, slope):
    """The same arithmetic, so the same bits, the two kinks |s·h| = 1 included."""
    rng = np.random.default_rng(seed)
    h = (rng.normal(size=(3, 2, 5, 4)) * 4).astype(dtype)
    h.flat[:4] = [1 / slope, -1 / slope, 0.0, 10.0]
    for name, ours, ref in (("ramp", numba_activations.ramp, activations.ramp),
                            ("ramp_derivative", numba_activations.ramp_derivative, activations.ramp_derivative)):
        got, want = ours(h, slope), ref(h, slope)
        assert got.dtype == want.dtype and got.shape == want.shape, f"{name}: {got.dtype}{got.shape} vs {want.dtype}{want.shape}"
        np.testing.assert_array_equal(got, want, err_msg=f"{name}, slope {slope}, {np.dtype(dtype).name}")
    e = rng.normal(size=h.shape).astype(dtype)
    np.testing.assert_array_equal(numba_activations.ramp_backward(e, h, slope),
                                  e * activations.ramp_derivative(h, slope),
                                  err_msg=f"ramp_backward = e * ramp_derivative, slope {slope}")


def test_kernels_accept_views_that_are_not_contiguous():
    """A transposed view gives the same answer as its contiguous copy."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 5, 2, 3)).transpose(2, 3, 0, 1)  # (2, 3, 5, 5), not contiguous
    W = rng.normal(size=(4, 3, 3, 3))
    check(numba_conv.conv_forward(x, W)[0], layers.conv_forward(x, W)[0], "conv_forward on a view")
    W_untied = rng.normal(size=(5, 5, 4, 3, 3, 3))
    check(numba_locally_connected.locally_connected_forward(x, W_untied)[0],
          layers.locally_connected_forward(x, W_untied)[0], "locally_connected_forward on a view")
    check(numba_pooling.maxpool_forward(x, 3, 2)[0], layers.maxpool_forward(x, 3, 2)[0], "maxpool on a view")
