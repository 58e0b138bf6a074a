"""The tuned SGD step (``hebbref.kernels.tuned_update``) gives the reference's bits.  # SPEC §3, §9

``W ← W - η (G + λ W)`` in place, one parallel pass, against ``hebbref.rules.forward_update``
(NumPy's ``W -= eta * G``): the same numbers to the last bit, on one thread and on two,
for float32 and float64, with and without weight decay, η a Python number or a NumPy
scalar; views, other dtypes and read-only arrays take the reference's own lines. A
network's rule takes every SGD step, on W and on R, through its backend's
``weight_update``, and timing the plan never touches a network's weights.
"""
import dataclasses

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hebbref
from hebbref import backends
from hebbref.kernels import plan, tuned, tuned_update
from hebbref.rules import forward_update


def _pair(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)


def _both(update, W, G, eta, weight_decay):
    """(W after ``update``, W after the reference), each on its own copy, laid out as W is."""
    ours, theirs = W.copy(order="K"), W.copy(order="K")
    update(ours, G, eta, weight_decay)
    forward_update(theirs, G, eta, weight_decay)
    return ours, theirs


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple),
       dtype=st.sampled_from([np.float32, np.float64]), threads=st.sampled_from([1, 2]),
       eta=st.sampled_from([0.1, 1e-3, 2.5, np.float32(0.05), np.float64(0.05)]),
       weight_decay=st.sampled_from([0.0, 1e-4, 0.3]), seed=st.integers(0, 2**16))
def test_the_step_equals_the_reference_bit_for_bit(shape, dtype, threads, eta, weight_decay, seed):
    W, G = _pair(np.random.default_rng(seed), shape, dtype)
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        ours, theirs = _both(tuned.weight_update, W, G, eta, weight_decay)
    finally:
        numba.set_num_threads(before)
    assert ours.dtype == theirs.dtype == dtype
    np.testing.assert_array_equal(ours, theirs)
    assert not np.array_equal(ours, W), "the step changed nothing"


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_the_compiled_pass_itself_runs_and_equals_the_reference(weight_decay):
    """A float32 W with a Python η: the case the compiled loops take (not the reference's fallback)."""
    W, G = _pair(np.random.default_rng(1), (300, 17), np.float32)
    ran = []
    kernel = "subtract_scaled_with_decay" if weight_decay else "subtract_scaled"
    real = getattr(tuned_update, kernel)
    ours, theirs = W.copy(), W.copy()
    setattr(tuned_update, kernel, lambda *a: ran.append(1) or real(*a))
    try:
        tuned_update.weight_update(ours, G, 0.05, weight_decay)
    finally:
        setattr(tuned_update, kernel, real)
    forward_update(theirs, G, 0.05, weight_decay)
    assert ran == [1]
    np.testing.assert_array_equal(ours, theirs)


def test_views_other_dtypes_and_read_only_arrays_take_the_reference():
    rng = np.random.default_rng(2)
    W, G = _pair(rng, (12, 8), np.float32)
    cases = [
        (np.asfortranarray(W), G),  # not C-contiguous
        (W, G.astype(np.float64)),  # G of another dtype: NumPy computes in float64
        (W, np.asfortranarray(G)),  # G in another order: read as it is
    ]
    for W_case, G_case in cases:
        ours, theirs = _both(tuned_update.weight_update, W_case, G_case, 0.1, 0.0)
        assert ours.flags.f_contiguous == W_case.flags.f_contiguous
        np.testing.assert_array_equal(ours, theirs)
    ours, theirs = _both(tuned_update.weight_update, W, G, np.float64(0.1), 0.0)  # NumPy's float64 arithmetic
    np.testing.assert_array_equal(ours, theirs)
    view = W.copy()[:, ::2]  # a strided view is updated in place, where it lies
    parent = view.base
    tuned_update.weight_update(view, G[:, ::2].copy(), 0.1)
    expected = W.copy()
    forward_update(expected[:, ::2], G[:, ::2].copy(), 0.1)
    np.testing.assert_array_equal(parent, expected)
    frozen = W.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        tuned_update.weight_update(frozen, G, 0.1)


def test_timing_the_plan_never_touches_the_weights(monkeypatch, tmp_path):
    """With timing on the path is timed on G alone: W takes one step, not one per timed call."""
    monkeypatch.setenv(plan.TUNE_VARIABLE, "1")
    monkeypatch.setenv(plan.CACHE_VARIABLE, str(tmp_path))
    plan.forget()
    try:
        W, G = _pair(np.random.default_rng(3), (40, 30), np.float32)
        G_before = G.copy()
        ours, theirs = _both(tuned.weight_update, W, G, 0.1, 0.0)
        timed = [p for key, p in plan.plans_in_this_process().items() if key.startswith("weight_update ")]
        assert len(timed) == 1 and timed[0].measured_ms, "the plan was not timed"
    finally:
        plan.forget()
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(G, G_before)


@pytest.mark.parametrize("rule, weight_decay, steps_per_layer", [("bp", 0.0, 1), ("frfb", 0.0, 1), ("urfb", 0.0, 2),
                                                                 ("kp", 1e-3, 2)])
def test_a_rule_takes_every_sgd_step_through_the_backend(rule, weight_decay, steps_per_layer):
    """W's step, and R's where the rule updates R, each one call of ``weight_update``."""
    calls = []

    def counted(W, G, eta, weight_decay=0.0):
        calls.append(W.shape)
        forward_update(W, G, eta, weight_decay)

    backend = dataclasses.replace(backends.get_backend("numpy"), weight_update=counted)
    net = hebbref.build_network("simple", (1, 12, 12), 10, rule=rule, dtype="float32", backend=backend, seed=0)
    rng = np.random.default_rng(0)
    net.train_step(rng.random((6, 1, 12, 12), dtype=np.float32), np.arange(6) % 10, lr=0.05,
                   weight_decay=weight_decay)
    layers = net.parameters()
    assert len(calls) == steps_per_layer * len(layers)
    assert sorted(calls) == sorted([p.W.shape for p in layers] * steps_per_layer)


@pytest.mark.parametrize("rule", ["urfb", "kp"])
def test_a_numba_network_steps_as_the_numpy_one_does(rule):
    """Same draws, same kernels' tolerance: after three steps W and R agree between the two backends."""
    rng = np.random.default_rng(4)
    x, y = rng.random((10, 1, 12, 12), dtype=np.float32), np.arange(10) % 10
    nets = [hebbref.build_network("simple", (1, 12, 12), 10, rule=rule, dtype="float64", backend=name, seed=1)
            for name in ("numpy", "numba")]
    for _ in range(3):
        for net in nets:
            net.train_step(x, y, lr=0.05, weight_decay=1e-3)
    for ours, theirs in zip(nets[1].parameters(), nets[0].parameters()):
        np.testing.assert_allclose(ours.W, theirs.W, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ours.R, theirs.R, rtol=1e-9, atol=1e-12)
