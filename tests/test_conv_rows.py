"""Sums held in vector registers compute the tied conv layer's three equations of the NumPy reference.  # SPEC §2, §3, §5

``hebbref.kernels.tuned_conv_rows`` (at eight and at four output channels per group) and
``hebbref.kernels.tuned_conv_channels`` (at eight and at six positions or terms per pass;
float32) against ``hebbref.layers.conv`` and the
readable tier: forward pass, input error through W and R, and weight increment on odd
and even kernels; images narrower than a vector, between one and two, and wider than a
piece of two; output channels that are not a multiple of a group (8 or 4) or of a block
of channels (2·LANES), and more than one block; a number
of positions or of window terms that is not a multiple of six or eight; one thread and all;
the layouts the kernels read; the vector operations of ``tuned_simd``; the plan's
"rows" and "channels" paths in whole float32 networks under bp and urfb. The kernels as
Numba builds them for a CPU with AVX2 alone are held to the reference in
tests/test_kernels_built_for_avx2.py (on a CPU with AVX-512).
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
from hebbref.kernels import plan, tuned_conv_channels, tuned_conv_rows, tuned_simd
from hebbref.kernels.tuned_simd import LANES, vfma, vload, vsplat, vsplat_at, vstore, vtranspose, vzero

from comparisons import assert_close, tolerance
from kernel_checks import Readable, check, check_conv_module, conv_case, forcing_conv_path
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
    (2, 3, 2 * LANES + 8, 5, 3, 3),  # a block of channels and part of another; 15 positions, 27 terms
]
REFERENCES = {"the NumPy reference": layers, "the readable tier": Readable("parallel")}


GROUPS = [8, 4]  # output channels per group of the rows' forward pass and input error


class Registers:
    """A module's three functions under the reference's names: ``tuned_conv_rows`` at ``group`` output channels
    per group, or ``tuned_conv_channels`` at ``span`` positions (or terms) per pass."""

    def __init__(self, module, **blocks):
        (self.block,) = blocks.values()  # one block size, named as the module's functions name it
        self.module = module
        self.blocks = blocks

    def conv_forward(self, x, W):
        return self.module.forward(x, W, **self.blocks)

    def conv_input_error(self, delta, cache, B):
        return self.module.input_error(delta, B, **self.blocks)

    def conv_weight_increment(self, delta, cache):
        return self.module.weight_increment(delta, cache)

    def __repr__(self):
        return f"{'rows' if self.module is tuned_conv_rows else 'channels'}:{self.block}"


SPANS = [8, 6]  # output positions (forward pass, input error) or window terms (increment) per pass of the channels
KERNELS = [Registers(tuned_conv_rows, group=g) for g in GROUPS] + [Registers(tuned_conv_channels, span=s) for s in SPANS]


@pytest.mark.parametrize("kernels", KERNELS, ids=repr)
@pytest.mark.parametrize("against", list(REFERENCES))
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_input_error_and_increment_equal_the_references(shape, against, kernels):
    check_conv_module(kernels, shape, np.float32, sum(shape), RTOL, f"{kernels!r} vs {against}: ", REFERENCES[against])


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), c_in=st.integers(1, 6), c_out=st.integers(1, 2 * LANES + 5), h=st.integers(1, 9),
       w=st.integers(1, 2 * SPAN + 3), k=st.integers(1, 5), kernels=st.sampled_from(KERNELS), seed=SEEDS)
def test_drawn_shapes(n, c_in, c_out, h, w, k, kernels, seed):
    check_conv_module(kernels, (n, c_in, c_out, h, w, k), np.float32, seed, RTOL, f"{kernels!r}: ")


@pytest.mark.parametrize("kernels", KERNELS, ids=repr)
def test_one_thread_and_all_give_the_same_sums(kernels):
    """Each output of the forward pass and the input error is one sum in one order, whoever computes it: the same bits.
    The increment's partial sums are cut by thread, so it only comes close."""
    x, W, R, delta = conv_case((5, 3, 9, 6, LANES + 5, 3), np.float32, 3)
    results = []
    for threads in (1, 2):
        with plan.on_threads(threads):
            h, cache = kernels.conv_forward(x, W)
            results.append((h, kernels.conv_input_error(delta, cache, R), kernels.conv_weight_increment(delta, cache)))
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


@pytest.mark.parametrize("kernels", KERNELS, ids=repr)
def test_the_forward_cache_is_the_input_and_the_kernel_width(kernels):
    x, W, _, _ = conv_case((2, 3, 4, 5, 6, 4), np.float32, 0)
    _, cache = kernels.conv_forward(x, W)
    assert cache[0] is x and cache[1] == 4
    # the rows' increment sums as many output channels at a time as the forward pass, the channels' as many terms
    # as the forward pass's positions
    assert cache[2] == kernels.block


@pytest.mark.parametrize("module, name, size", [(tuned_conv_rows, "group", 2), (tuned_conv_rows, "group", 16),
                                                (tuned_conv_channels, "span", 4), (tuned_conv_channels, "span", 7)])
def test_a_block_size_the_loops_are_not_built_for_is_refused(module, name, size):
    """The parallel kernels take the block size at run time and run the one-image loops' build for 8, or for the
    other size: any other size would read past their arrays, so each entry point refuses it."""
    x, W, _, delta = conv_case((2, 3, 4, 5, 6, 3), np.float32, 0)
    block = {name: size}
    with pytest.raises(ValueError, match=f"not {size}"):
        module.forward(x, W, **block)
    with pytest.raises(ValueError, match=f"not {size}"):
        module.input_error(delta, W, **block)
    with pytest.raises(ValueError, match=f"not {size}"):
        module.increment_from_input(delta, x, 3, size)
    if module is tuned_conv_channels:
        from hebbref.kernels import tuned_conv_block
        with pytest.raises(ValueError, match=f"not {size}"):
            tuned_conv_block.forward_channels_path(x, W, 2, 2, 0.5, size)


def test_a_term_s_weights_of_a_block_of_channels_lie_together():
    block = tuned_conv_channels.BLOCK
    W = np.arange((block + 3) * 2 * 2 * 2, dtype=np.float32).reshape(block + 3, 2, 2, 2) + 1
    laid = tuned_conv_channels.weights_by_block(W).reshape(2, 8, block)
    for o in range(2 * block):
        expected = W[o].reshape(-1) if o < block + 3 else np.zeros(8, np.float32)
        np.testing.assert_array_equal(laid[o // block, :, o % block], expected)


def test_positions_and_terms_index_the_padded_image():
    q = tuned_conv_channels.positions(3, 5, 7, 8)  # 15 outputs, rows 7 apart: 16 entries, the last repeated
    np.testing.assert_array_equal(q, [0, 1, 2, 3, 4, 7, 8, 9, 10, 11, 14, 15, 16, 17, 18, 18])
    q = tuned_conv_channels.positions(3, 5, 7, 6)  # in blocks of six: 18 entries
    np.testing.assert_array_equal(q, [0, 1, 2, 3, 4, 7, 8, 9, 10, 11, 14, 15, 16, 17, 18, 18, 18, 18])
    offsets = tuned_conv_channels.term_offsets(2, 2, 100, 7, 16)
    np.testing.assert_array_equal(offsets, [0, 1, 7, 8, 100, 101, 107, 108] + [0] * 8)


@njit
def _vector_operations(a, out, at, s):
    v = vload(a, at)
    vstore(out, 0, vfma(vsplat(s), v, vsplat(np.float32(1.0))))
    vstore(out, LANES, vzero())
    vstore(out, 2 * LANES, vsplat_at(a, at + 1))


def test_vector_operations_are_lane_by_lane():
    a = np.arange(3 * LANES, dtype=np.float32)
    out = np.full(3 * LANES, np.nan, dtype=np.float32)
    _vector_operations(a, out, 5, 0.5)  # an unaligned start; s a float64, rounded to float32
    np.testing.assert_array_equal(out[:LANES], 1 + 0.5 * a[5 : 5 + LANES])
    np.testing.assert_array_equal(out[LANES : 2 * LANES], 0)
    np.testing.assert_array_equal(out[2 * LANES :], a[6])
    assert tuned_simd.f32v.name == f"f32x{LANES}"


@njit
def _vtranspose(src, i, s, dst, j, t):
    vtranspose(src, i, s, dst, j, t)


@pytest.mark.parametrize("i, s, j, t", [(0, LANES, 0, LANES), (3, LANES + 5, 7, 2 * LANES + 1), (1, 3 * LANES, 0, LANES + 2)])
def test_vtranspose_turns_a_block_over_and_writes_nothing_else(i, s, j, t):
    """dst[j + c·t + r] = src[i + r·s + c] for r, c < LANES, at unaligned starts and strides; every other number of
    dst as it was."""
    src = np.arange(i + LANES * s + LANES, dtype=np.float32)
    dst = np.full(j + LANES * t + LANES, -1.0, dtype=np.float32)
    expected = dst.copy()
    for r in range(LANES):
        for c in range(LANES):
            expected[j + c * t + r] = src[i + r * s + c]
    _vtranspose(src, i, s, dst, j, t)
    np.testing.assert_array_equal(dst, expected)


def test_vectors_come_from_flat_float32_arrays_only():
    with pytest.raises(TypingError, match="flat float32 array"):
        _vector_operations(np.zeros(3 * LANES), np.zeros(3 * LANES, np.float32), 0, 1.0)


@pytest.mark.parametrize("path", ["rows", "channels"])
def test_the_plan_offers_the_registers_paths_in_float32_only(path):
    for equation, arguments in (("conv_forward", lambda d: (np.empty((2, 3, 4, 4), d), np.empty((5, 3, 3, 3), d))),
                                ("conv_input_error", lambda d: (np.empty((2, 5, 4, 4), d), None,
                                                                np.empty((5, 3, 3, 3), d)))):
        assert plan.applies(equation, path, arguments(np.float32))
        assert not plan.applies(equation, path, arguments(np.float64))
        assert path in {c.path for c in plan.candidates(equation, arguments(np.float32)).values()}
        assert path not in {c.path for c in plan.candidates(equation, arguments(np.float64)).values()}
    mixed = (np.empty((2, 3, 4, 4), np.float64), np.empty((5, 3, 3, 3), np.float32))
    assert not plan.applies("conv_forward", path, mixed)


@pytest.mark.parametrize("path", ["rows", "channels"])
@pytest.mark.parametrize("rule", ["bp", "urfb"])
def test_a_float32_network_on_a_registers_path_learns_what_the_reference_learns(path, rule, monkeypatch):
    """A sum block of two 3×3 layers on images wider than a vector, a pool and a 2×2 layer: every conv on ``path``."""
    monkeypatch.setattr(plan, "default_plan", forcing_conv_path(path))
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
        assert taken == {path}, taken
    finally:
        plan.forget()
    for p, q in zip(reference.parameters(), ours.parameters()):
        check(q.W, p.W, f"{path} {rule} {p.name} W", 1e-4)
        check(q.R, p.R, f"{path} {rule} {p.name} R", 1e-4)

