"""The tuned dense products (``hebbref.kernels.tuned_dense``) equal the NumPy reference.  # SPEC §2, §3

Each of the dense layer's three products is cut into parts along the longer side of its
output, one SciPy gemm per part on Numba's threads. The tests draw shapes where either
side is longer, sides shorter than the thread count and of one row or column, on one
thread and on two, in float32 and float64, and check that a network built on the
``numba`` backend sends its dense layers through these functions.
"""
import dataclasses

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hebbref
from hebbref import backends, layers
from hebbref.kernels import tuned_dense

from comparisons import tolerance

EQUATIONS = ("dense_forward", "dense_input_error", "dense_weight_increment")


def _arrays(rng, batch, d_in, d_out, dtype):
    x = rng.standard_normal((batch, d_in)).astype(dtype)
    W = rng.standard_normal((d_out, d_in)).astype(dtype)
    delta = rng.standard_normal((batch, d_out)).astype(dtype)
    return x, W, delta


def _three(module, x, W, delta):
    h, cache = module.dense_forward(x, W)
    return h, module.dense_input_error(delta, cache, W), module.dense_weight_increment(delta, cache)


def _assert_all_close(ours, theirs, dtype):
    for name, a, b in zip(EQUATIONS, ours, theirs):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        scale = max(1.0, float(np.abs(b).max()))
        np.testing.assert_allclose(a, b, rtol=10 * tolerance(dtype), atol=10 * tolerance(dtype) * scale, err_msg=name)


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 23), d_in=st.integers(1, 37), d_out=st.integers(1, 19),
       dtype=st.sampled_from([np.float32, np.float64]), threads=st.sampled_from([1, 2]), seed=st.integers(0, 2**16))
def test_the_three_products_equal_the_reference(batch, d_in, d_out, dtype, threads, seed):
    x, W, delta = _arrays(np.random.default_rng(seed), batch, d_in, d_out, dtype)
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        ours = _three(tuned_dense, x, W, delta)
    finally:
        numba.set_num_threads(before)
    _assert_all_close(ours, _three(layers, x, W, delta), dtype)


@pytest.mark.parametrize("batch, d_in, d_out", [(64, 300, 40), (9, 2, 300), (300, 7, 3), (2, 1, 1)])
@pytest.mark.parametrize("parts", [1, 2, 3, 7, 1000])
def test_every_cut_gives_the_same_product(batch, d_in, d_out, parts):
    """Cut along the rows (the longer side) or the columns, into more parts than the side has: all the same."""
    x, W, delta = _arrays(np.random.default_rng(parts), batch, d_in, d_out, np.float64)
    blas = tuned_dense.blas_for(np.float64)
    for P, Q, transpose_p, transpose_q, expected in [(x, W, False, True, x @ W.T), (delta, W, False, False, delta @ W),
                                                     (delta, x, True, False, delta.T @ x)]:
        got = tuned_dense.split_product(blas, P, Q, transpose_p, transpose_q, parts)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_views_and_other_dtypes_take_the_reference_values():
    """A transposed view is laid out first; float32 with float64 gives float64; read-only arrays are read;
    integers go to NumPy."""
    rng = np.random.default_rng(5)
    x, W, delta = _arrays(rng, 12, 20, 6, np.float64)
    h, _ = tuned_dense.dense_forward(np.asfortranarray(x), np.asfortranarray(W))
    np.testing.assert_allclose(h, x @ W.T, rtol=1e-12)
    e = tuned_dense.dense_input_error(delta.astype(np.float32), None, W)
    assert e.dtype == np.float64
    np.testing.assert_allclose(e, delta.astype(np.float32) @ W, rtol=1e-12)
    x.setflags(write=False)  # data loaded read-only (a memory map) may reach a first dense layer as it is
    np.testing.assert_allclose(tuned_dense.dense_weight_increment(delta, x), delta.T @ x, rtol=1e-12)
    xi, Wi = np.arange(6).reshape(2, 3), np.arange(12).reshape(4, 3)
    np.testing.assert_array_equal(tuned_dense.dense_forward(xi, Wi)[0], xi @ Wi.T)


@pytest.mark.parametrize("dropout", [True, False])
def test_a_numba_network_sends_its_dense_layers_through_the_backend(dropout):
    """Each dense layer's three products go through the backend's functions, not through ``@`` in the layer:
    a dense layer above dropout through drop dense's two (``dropout_dense_forward``, ``dense_dropout_backward``)."""
    numba_backend = backends.get_backend("numba")
    assert numba_backend.dense_forward is tuned_dense.dense_forward
    assert backends.get_backend("numpy").dense_forward is layers.dense_forward
    calls = []

    def counted(name):
        function = getattr(numba_backend, name)

        def call(*args):
            calls.append(name)
            return function(*args)
        return call

    names = EQUATIONS + ("dropout_dense_forward", "dense_dropout_backward")
    counting = dataclasses.replace(numba_backend, **{name: counted(name) for name in names})
    net = hebbref.build_network("simple", (1, 12, 12), 10, rule="urfb", backend=counting, seed=1, dropout=dropout)
    reference = hebbref.build_network("simple", (1, 12, 12), 10, rule="urfb", backend="numpy", seed=1, dropout=dropout)
    rng = np.random.default_rng(0)
    x, y = rng.random((6, 1, 12, 12)), rng.integers(0, 10, size=6)
    net.train_step(x, y, lr=0.05)
    reference.train_step(x, y, lr=0.05)
    dense_layers = sum(1 for layer in net.parameters() if layer.kind == "dense")
    assert dense_layers >= 2
    # every dense layer of simple reads a dropout's output; none is the first weighted layer
    one_step, alone = ("dropout_dense_forward", "dense_dropout_backward"), EQUATIONS
    assert all(calls.count(name) == dense_layers for name in (one_step if dropout else alone)), calls
    assert not any(name in calls for name in (alone if dropout else one_step)), calls
    for a, b in zip(net.parameters(), reference.parameters()):
        np.testing.assert_allclose(a.W, b.W, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(a.R, b.R, rtol=1e-9, atol=1e-12)
