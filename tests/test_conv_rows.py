"""The rows of vector registers compute the tied conv layer's three equations of the NumPy reference.  # SPEC §2, §3, §5

``hebbref.kernels.tuned_conv_rows`` (float32) against ``hebbref.layers.conv`` and the
readable tier: forward pass, input error through W and R, and weight increment on odd
and even kernels; images narrower than a vector, between one and two, and wider than a
piece of two; output channels that are not a multiple of eight (the forward pass's
group) or of four (the increment's); one thread and all; the layouts the kernels
read; the vector operations of ``tuned_simd``; and the plan's "rows" path in whole
float32 networks under bp and urfb.
"""
import ctypes

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit
from numba.core.errors import TypingError

import hebbref
from hebbref import layers
from hebbref.kernels import plan, tuned_conv_rows, tuned_simd
from hebbref.kernels.tuned_simd import LANES, vfma, vload, vsplat, vstore, vzero

from comparisons import assert_close, tolerance
from kernel_checks import Readable, check, check_conv_module, conv_case
from strategies import SEEDS

SPAN = tuned_conv_rows.SPAN
RTOL = 10 * tolerance(np.float32)
# (N, C_in, C_out, H, W, k)
SHAPES = [
    (2, 3, 5, 7, 6, 3),  # narrower than a vector
    (3, 5, 9, 5, LANES + 3, 4),  # between one vector and two; 9 output channels: a group of 8 and one of 1
    (2, 2, 17, 4, SPAN, 2),  # one whole piece; 17 channels: not a multiple of 4 or 8
    (2, 4, 8, 3, SPAN + 5, 5),  # a whole piece and a part of one
    (1, 1, 1, 1, 1, 1),
    (2, 2, 3, 1, 1, 3),  # every tap but the centre reads padding
    (3, 16, 16, 6, 2 * SPAN, 3),  # two whole pieces, deep 1b's channels
]
REFERENCES = {"the NumPy reference": layers, "the readable tier": Readable("parallel")}


GROUPS = [8, 4]  # output channels per group of the forward pass and the input error


class Rows:
    """The module's three functions under the reference's names, ``group`` output channels at a time."""

    def __init__(self, group):
        self.group = group

    def conv_forward(self, x, W):
        return tuned_conv_rows.forward(x, W, self.group)

    def conv_input_error(self, delta, cache, B):
        return tuned_conv_rows.input_error(delta, B, self.group)

    def conv_weight_increment(self, delta, cache):
        return tuned_conv_rows.weight_increment(delta, cache)


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("against", list(REFERENCES))
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_input_error_and_increment_equal_the_references(shape, against, group):
    check_conv_module(Rows(group), shape, np.float32, sum(shape), RTOL, f"rows:{group} vs {against}: ",
                      REFERENCES[against])


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), c_in=st.integers(1, 6), c_out=st.integers(1, 20), h=st.integers(1, 9),
       w=st.integers(1, 2 * SPAN + 3), k=st.integers(1, 5), group=st.sampled_from(GROUPS), seed=SEEDS)
def test_drawn_shapes(n, c_in, c_out, h, w, k, group, seed):
    check_conv_module(Rows(group), (n, c_in, c_out, h, w, k), np.float32, seed, RTOL, f"rows:{group}: ")


@pytest.mark.parametrize("group", GROUPS)
def test_one_thread_and_all_give_the_same_sums(group):
    """Each output of the forward pass and the input error is one sum in one order, whoever computes it: the same bits.
    The increment's partial sums are cut by thread, so it only comes close."""
    x, W, R, delta = conv_case((5, 3, 9, 6, LANES + 5, 3), np.float32, 3)
    results = []
    for threads in (1, 2):
        with plan.on_threads(threads):
            h, cache = tuned_conv_rows.forward(x, W, group)
            results.append((h, tuned_conv_rows.input_error(delta, R, group),
                            tuned_conv_rows.weight_increment(delta, cache)))
    (h1, e1, G1), (h2, e2, G2) = results
    np.testing.assert_array_equal(h1, h2)
    np.testing.assert_array_equal(e1, e2)
    assert_close(G1, G2, RTOL, "increment on one thread and on two")


@pytest.mark.parametrize("group", GROUPS)
def test_each_terms_weights_of_a_group_lie_next_to_each_other(group):
    W = np.arange(11 * 2 * 3 * 3, dtype=np.float32).reshape(11, 2, 3, 3) + 1
    groups = -(-11 // group)
    laid = tuned_conv_rows.weights_by_group(W, group).reshape(groups, 2, 3, 3, group)
    for o in range(groups * group):
        expected = W[o] if o < 11 else np.zeros((2, 3, 3), np.float32)
        np.testing.assert_array_equal(laid[o // group, :, :, :, o % group], expected)


def test_the_buffers_start_on_a_cache_line_and_hold_zeros():
    for size in (1, 17, 1000):
        block = tuned_conv_rows.aligned_zeros(size)
        assert block.shape == (size,) and block.dtype == np.float32 and not block.any()
        assert ctypes.addressof(ctypes.c_char.from_buffer(block)) % 64 == 0


def test_the_forward_cache_is_the_input_and_the_kernel_width():
    x, W, _, _ = conv_case((2, 3, 4, 5, 6, 4), np.float32, 0)
    _, (saved, k) = tuned_conv_rows.forward(x, W)
    assert saved is x and k == 4


@njit
def _vector_operations(a, out, at, s):
    v = vload(a, at)
    vstore(out, 0, vfma(vsplat(s), v, vsplat(np.float32(1.0))))
    vstore(out, LANES, vzero())


def test_vector_operations_are_lane_by_lane():
    a = np.arange(3 * LANES, dtype=np.float32)
    out = np.full(2 * LANES, np.nan, dtype=np.float32)
    _vector_operations(a, out, 5, 0.5)  # an unaligned start; s a float64, rounded to float32
    np.testing.assert_array_equal(out[:LANES], 1 + 0.5 * a[5 : 5 + LANES])
    np.testing.assert_array_equal(out[LANES:], 0)
    assert tuned_simd.f32v.name == f"f32x{LANES}"


def test_vectors_come_from_flat_float32_arrays_only():
    with pytest.raises(TypingError, match="flat float32 array"):
        _vector_operations(np.zeros(2 * LANES), np.zeros(2 * LANES, np.float32), 0, 1.0)


def test_the_plan_offers_rows_in_float32_only():
    for equation, arguments in (("conv_forward", lambda d: (np.empty((2, 3, 4, 4), d), np.empty((5, 3, 3, 3), d))),
                                ("conv_input_error", lambda d: (np.empty((2, 5, 4, 4), d), None,
                                                                np.empty((5, 3, 3, 3), d)))):
        assert plan.applies(equation, "rows", arguments(np.float32))
        assert not plan.applies(equation, "rows", arguments(np.float64))
        assert "rows" in {c.path for c in plan.candidates(equation, arguments(np.float32)).values()}
        assert "rows" not in {c.path for c in plan.candidates(equation, arguments(np.float64)).values()}
    mixed = (np.empty((2, 3, 4, 4), np.float64), np.empty((5, 3, 3, 3), np.float32))
    assert not plan.applies("conv_forward", "rows", mixed)


def _forced_rows(real):
    def default_plan(equation, arguments):
        chosen = real(equation, arguments)
        if equation in ("conv_forward", "conv_input_error") and plan.applies(equation, "rows", arguments):
            return plan.Plan("rows", chosen.threads)
        return chosen
    return default_plan


@pytest.mark.parametrize("rule", ["bp", "urfb"])
def test_a_float32_network_on_the_rows_path_learns_what_the_reference_learns(rule, monkeypatch):
    """A sum block of two 3×3 layers on images wider than a vector, a pool and a 2×2 layer: every conv on "rows"."""
    monkeypatch.setattr(plan, "default_plan", _forced_rows(plan.default_plan))
    plan.forget()
    try:
        architecture = "sum[conv3:9,conv3:9] pool2s2 conv2:5 ramp dense7 ramp out"
        shape = (3, 6, LANES + 3)
        reference, ours = (hebbref.build_network(architecture, shape, 4, rule=rule, backend=backend, seed=2,
                                                 dtype="float32") for backend in ("numpy", "numba"))
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(7,) + shape).astype(np.float32), rng.integers(0, 4, size=7)
        for _ in range(3):
            for net in (reference, ours):
                net.train_step(x, y, lr=0.05, loss="hinge")
        taken = {p.path for key, p in plan.plans_in_this_process().items()
                 if key.startswith(("conv_forward", "conv_input_error"))}
        assert taken == {"rows"}, taken
    finally:
        plan.forget()
    for p, q in zip(reference.parameters(), ours.parameters()):
        check(q.W, p.W, f"rows {rule} {p.name} W", 1e-4)
        check(q.R, p.R, f"rows {rule} {p.name} R", 1e-4)
