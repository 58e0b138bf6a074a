"""The tuned tier equals the readable tier and the NumPy reference, path by path.  # SPEC §2, §3, §5

Every path ``hebbref.kernels.plan.PATHS`` lists (the five ways to compute the conv
forward pass and its weight increment, the six ways to compute its input error, each
on the kernel widths and dtypes it applies to, ``plan.APPLIES`` and ``plan.DTYPES``; the
untied, pooling and ramp kernels) is run directly, on all of Numba's threads, on odd and even kernels, and compared with ``hebbref.kernels.readable`` (parallel loops) and
with ``hebbref.layers``. Then the ``numba`` backend's functions, which go through
``plan.choose``, are compared the same way on one thread and on all.
"""
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hebbref import activations, layers
from hebbref.kernels import plan, tuned, tuned_conv_shifted

from comparisons import tolerance
from kernel_checks import (
    Readable, check, check_conv_module, check_locally_connected_module, check_maxpool_module, check_ramp_module,
    conv_case, pool_cases,
)
from strategies import SEEDS, conv_shapes

DTYPES = st.sampled_from([np.float32, np.float64])
REFERENCES = {"the NumPy reference": layers, "the readable tier": Readable("parallel")}
# (N, C_in, C_out, H, W, k): odd and even kernels, fewer and more input than output channels
SHAPES = [
    (2, 3, 5, 7, 6, 3),
    (3, 5, 2, 5, 8, 4),  # even k pads 1 before, 2 after
    (1, 4, 4, 6, 6, 2),  # even k pads 0 before, 1 after
    (2, 2, 3, 1, 1, 3),  # 1×1 images: every tap but the centre reads padding
    (4, 1, 1, 3, 5, 5),  # kernel wider than the image
    (5, 3, 2, 4, 3, 1),  # 1×1 kernel: no padding
]


def rtol(dtype):
    return 10 * tolerance(dtype)


class ConvPaths:
    """The tied conv computed by one forward path (its weight increment follows) and one input-error path."""

    def __init__(self, forward_path, error_path):
        self.forward_path, self.error_path = forward_path, error_path

    def conv_forward(self, x, W):
        return plan.PATHS["conv_forward"][self.forward_path](x, W)

    def conv_input_error(self, delta, cache, B):
        return plan.PATHS["conv_input_error"][self.error_path](delta, cache, B)

    def conv_weight_increment(self, delta, cache):
        path, saved = cache
        return plan.CONV_WEIGHT_INCREMENT[path](delta, saved)

    def conv_backward(self, delta, cache, B):
        """Both together, by one kernel where this pair of paths has one (plan.conv_backward_together)."""
        path, saved = cache
        together = plan.conv_backward_together(path, plan.Plan(self.error_path, 1))
        if together is None:
            return self.conv_input_error(delta, cache, B), self.conv_weight_increment(delta, cache)
        return together(delta, saved, B)


FORWARD_PATHS = list(plan.PATHS["conv_forward"])
ERROR_PATHS = list(plan.PATHS["conv_input_error"])


def applies(forward_path, error_path, k, dtype=np.float64):
    """Whether both paths apply to a k-wide kernel in ``dtype`` (``plan.APPLIES``: Winograd's tiles for some widths
    only; ``plan.DTYPES``: the sums held in vector registers, "rows" and "channels", in float32 only)."""
    kernel = (np.empty((1, 1, k, k), dtype),)
    return plan.applies("conv_forward", forward_path, kernel) and plan.applies("conv_input_error", error_path, kernel)


@pytest.mark.parametrize("against", list(REFERENCES))
@pytest.mark.parametrize("shape, forward_path, error_path", [
    (shape, forward_path, error_path) for shape in SHAPES for forward_path in FORWARD_PATHS for error_path in ERROR_PATHS
    if applies(forward_path, error_path, shape[-1], np.float32)])
def test_every_conv_path_on_odd_and_even_kernels(shape, forward_path, error_path, against):
    for dtype in (np.float64, np.float32):
        if not applies(forward_path, error_path, shape[-1], dtype):
            continue
        check_conv_module(ConvPaths(forward_path, error_path), shape, dtype, sum(shape), rtol(np.dtype(dtype)),
                          f"{forward_path}/{error_path} vs {against}: ", REFERENCES[against])


@pytest.mark.parametrize("columns", [8, 64, None])
@pytest.mark.parametrize("shape", SHAPES)
def test_the_shifted_input_error_and_increment_together_on_blocks_of_every_size(shape, columns):
    """tuned_conv_shifted.backward_correlation: δ laid out once per block for both products, blocks of 1 to all images."""
    for dtype in (np.float64, np.float32):
        x, W, R, delta = conv_case(shape, dtype, sum(shape))
        _, cache = tuned_conv_shifted.forward(x, W, columns)
        _, xp = layers.conv_forward(x, W)
        e_below, G = tuned_conv_shifted.backward_correlation(delta, cache, R)
        assert e_below.dtype == G.dtype == np.dtype(dtype)
        label = f"{shape}, {columns} columns, {np.dtype(dtype).name}"
        check(e_below, layers.conv_input_error(delta, xp, R), f"input error {label}", rtol(np.dtype(dtype)))
        check(G, layers.conv_weight_increment(delta, xp), f"increment {label}", rtol(np.dtype(dtype)))


@pytest.mark.parametrize("forward_path", FORWARD_PATHS)
def test_every_conv_increment_sums_in_the_dtype_of_its_forward_pass(forward_path):
    """A δ of another dtype than x is taken in x's: G has x's dtype on every path, and the reference's numbers."""
    shape = (3, 2, 4, 6, 5, 3)
    x, W, _, delta = conv_case(shape, np.float32, 7)
    _, (path, cache) = plan.PATHS["conv_forward"][forward_path](x, W)
    G = plan.CONV_WEIGHT_INCREMENT[path](delta.astype(np.float64), cache)
    assert G.dtype == np.float32, f"{forward_path}: {G.dtype}"
    _, xp = layers.conv_forward(x, W)
    check(G, layers.conv_weight_increment(delta, xp), f"increment {forward_path}", rtol(np.dtype(np.float32)))


def test_only_a_shifted_forward_pass_with_a_correlation_input_error_goes_together():
    together = {(f, e) for f in FORWARD_PATHS for e in ERROR_PATHS
                if plan.conv_backward_together(f, plan.Plan(e, 1)) is not None}
    assert together == {("shifted", "shifted-correlation")}


@pytest.mark.parametrize("forward_path", FORWARD_PATHS)
@settings(max_examples=15, deadline=None)
@given(shape=conv_shapes(max_batch=3, max_channels=5, max_size=8, max_kernel=5), dtype=DTYPES, seed=SEEDS,
       error_path=st.sampled_from(ERROR_PATHS))
def test_conv_paths_equal_the_reference_on_drawn_shapes(forward_path, error_path, shape, dtype, seed):
    if not applies(forward_path, error_path, shape[-1], dtype):
        shape = shape[:-1] + (3,)  # Winograd's tiles apply to some widths only; every path to 3
        dtype = dtype if applies(forward_path, error_path, 3, dtype) else np.float32  # every path to float32
    check_conv_module(ConvPaths(forward_path, error_path), shape, dtype, seed, rtol(np.dtype(dtype)),
                      f"{forward_path}/{error_path}: ")


@pytest.mark.parametrize("against", list(REFERENCES))
@settings(max_examples=10, deadline=None)
@given(shape=conv_shapes(max_batch=3, max_channels=4, max_size=7, max_kernel=4), dtype=DTYPES, seed=SEEDS)
def test_tuned_untied_kernels_equal_the_references(against, shape, dtype, seed):
    check_locally_connected_module(tuned, shape, dtype, seed, rtol(np.dtype(dtype)), f"tuned vs {against}: ",
                                   REFERENCES[against])


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_the_numba_backend_through_its_plans_on_one_thread_and_on_all(k, monkeypatch):
    """tuned.* ask plan.choose; its default puts small layers on one thread, PARALLEL_FROM = 0 on all."""
    for parallel_from in (plan.PARALLEL_FROM, 0):
        monkeypatch.setattr(plan, "PARALLEL_FROM", parallel_from)
        plan.forget()
        for against, reference in REFERENCES.items():
            for shape in ((3, 2, 5, 6, 7, k), (2, 8, 16, 5, 5, k)):  # both default conv paths
                check_conv_module(tuned, shape, np.float32, k, rtol(np.dtype(np.float32)),
                                  f"tuned (threads from {parallel_from}) vs {against}: ", reference)
            check_locally_connected_module(tuned, (2, 2, 3, 5, 4, k), np.float64, k, rtol(np.dtype(np.float64)),
                                           f"tuned vs {against}: ", reference)
    plan.forget()


@settings(max_examples=25, deadline=None)
@given(case=pool_cases(), dtype=DTYPES, seed=SEEDS, ties=st.booleans())
def test_tuned_maxpool_equals_the_reference_and_the_readable_tier(case, dtype, seed, ties):
    check_maxpool_module(tuned, case, dtype, seed, ties, "tuned: ")
    n, c, h, w, k, t = case
    x = np.random.default_rng(seed).normal(size=(n, c, h, w)).astype(dtype)
    ours, readable_tier = tuned.maxpool_forward(x, k, t), Readable("parallel").maxpool_forward(x, k, t)
    np.testing.assert_array_equal(ours[0], readable_tier[0])
    dy = np.ones_like(ours[0])
    np.testing.assert_array_equal(tuned.maxpool_backward(dy, ours[1]),
                                  Readable("parallel").maxpool_backward(dy, readable_tier[1]))


@settings(max_examples=40, deadline=None)
@given(case=pool_cases(), dtype=DTYPES, seed=SEEDS, ties=st.booleans())
def test_every_maxpool_path_equals_the_reference_with_the_same_winners(case, dtype, seed, ties):
    """Each path of ``plan.PATHS["maxpool_forward"]``: the maxima, and the very cells that won (first on ties)."""
    n, c, h, w, k, t = case
    x = np.random.default_rng(seed).normal(size=(n, c, h, w)).astype(dtype)
    if ties:
        x = np.round(x)  # many equal cells in a window
    y_loops, (winner_loops, _) = plan.PATHS["maxpool_forward"]["loops"](x, k, t)
    for name, path in plan.PATHS["maxpool_forward"].items():
        module = SimpleNamespace(maxpool_forward=path, maxpool_backward=tuned.maxpool_backward)
        check_maxpool_module(module, case, dtype, seed, ties, f"maxpool path {name}: ")
        y, (winner, shape) = path(x, k, t)
        assert shape == (h, w)
        np.testing.assert_array_equal(y, y_loops, err_msg=name)
        np.testing.assert_array_equal(winner, winner_loops, err_msg=name)


@pytest.mark.parametrize("group", plan.BLOCKS["plane-groups"][2] + (1, 5))
@pytest.mark.parametrize("through_ramp", [False, True])
def test_plane_groups_of_every_size_give_the_windows_winners(group, through_ramp):
    """``maxpool_plane_groups`` with groups of the plan's sizes (and odd ones): the last group short, the windows clipped.

    5·7 = 35 planes: a short last group for every size listed; 9×10 planes under a 3×3
    window at stride 2 (padding after the image only) and a 4×4 at stride 3 (padding
    before it as well).
    """
    rng = np.random.default_rng(group)
    h = (rng.normal(size=(5, 7, 9, 10)) * 3).astype(np.float32)
    h[1, 2] = np.round(h[1, 2])  # ties within windows: the first cell must win
    x = activations.ramp(h, 0.5) if through_ramp else h
    for k, t in [(3, 2), (4, 3)]:
        y_loops, (winner_loops, _) = plan.PATHS["maxpool_forward"]["loops"](x, k, t)
        if through_ramp:
            y, (winner, _) = plan.PATHS["ramp_maxpool_forward"]["plane-groups"](h, k, t, 0.5, group=group)
        else:
            y, (winner, _) = plan.PATHS["maxpool_forward"]["plane-groups"](h, k, t, group=group)
        np.testing.assert_array_equal(y, y_loops)
        np.testing.assert_array_equal(winner, winner_loops)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_maxpool_paths_on_windows_of_minus_infinity_pick_a_cell_of_the_image(dtype):
    """The padded path fills the cells beyond the image with -inf: on an image of -inf they must still lose."""
    x = np.full((2, 3, 8, 8), -np.inf, dtype=dtype)
    x[0, 0, 2, 3] = 1.0
    for k, t in [(3, 2), (2, 2), (3, 3), (1, 3)]:  # all with the padding after the image only
        y_loops, (winner_loops, _) = plan.PATHS["maxpool_forward"]["loops"](x, k, t)
        for name, path in plan.PATHS["maxpool_forward"].items():
            y, (winner, _) = path(x, k, t)
            np.testing.assert_array_equal(y, y_loops, err_msg=f"{name}, k={k}, t={t}")
            np.testing.assert_array_equal(winner, winner_loops, err_msg=f"{name}, k={k}, t={t}")


@settings(max_examples=10, deadline=None)
@given(dtype=DTYPES, seed=SEEDS, slope=st.sampled_from([0.5, 1.0, 0.25]))
def test_tuned_ramp_equals_the_reference_and_the_readable_tier_bit_for_bit(dtype, seed, slope):
    check_ramp_module(tuned, dtype, seed, slope, "tuned: ")
    h = np.random.default_rng(seed).normal(size=(4, 7)).astype(dtype) * 4
    for name in ("ramp", "ramp_derivative"):
        np.testing.assert_array_equal(getattr(tuned, name)(h, slope), getattr(Readable("parallel"), name)(h, slope))
    # a sum block's two fused passes: σ(h) + a, and (e1 + e2) ⊙ σ'(h), with the kinks |s·h| = 1 among h
    rng = np.random.default_rng(seed + 1)
    h = (rng.normal(size=(3, 2, 5, 4)) * 4).astype(dtype)
    h.flat[:4] = [1 / slope, -1 / slope, 0.0, 10.0]
    a, e1, e2 = ((rng.normal(size=h.shape) * 10.0 ** rng.integers(-3, 4, size=h.shape)).astype(dtype) for _ in range(3))
    np.testing.assert_array_equal(tuned.ramp_plus(h, a, slope), activations.ramp(h, slope) + a)
    np.testing.assert_array_equal(tuned.ramp_plus(h, a, slope), activations.ramp_plus(h, a, slope))
    np.testing.assert_array_equal(tuned.ramp_backward_of_sum(e1, e2, h, slope),
                                  activations.ramp_backward(e1 + e2, h, slope))
    np.testing.assert_array_equal(tuned.ramp_backward_of_sum(e1, e2, h, slope),
                                  activations.ramp_backward_of_sum(e1, e2, h, slope))


def _ramp_input(case, dtype, seed, slope):
    """(h, σ(h), rng) for a pool case: h large enough that σ saturates many cells, with the kinks |s·h| = 1."""
    n, c, hh, w, _, _ = case
    rng = np.random.default_rng(seed)
    h = (rng.normal(size=(n, c, hh, w)) * 4 / slope).astype(dtype)
    h.flat[: min(h.size, 3)] = [1 / slope, -1 / slope, 0.0][: min(h.size, 3)]
    return h, activations.ramp(h, slope), rng


@settings(max_examples=40, deadline=None)
@given(case=pool_cases(), dtype=DTYPES, seed=SEEDS, slope=st.sampled_from([0.5, 1.0, 0.25]))
def test_every_ramp_and_pool_forward_path_equals_the_two_steps_with_the_same_winners(case, dtype, seed, slope):
    """ramp_maxpool_forward: the pool of σ(h), its maxima and the very cells that won.

    h is large enough that σ saturates many cells: they tie at ±1 in σ(h) though their
    h differ, and the first of them must win, not the largest h. Cases with padding
    before the image take the fallback of the padded path.
    """
    h, x, rng = _ramp_input(case, dtype, seed, slope)
    k, t = case[4:]
    y_ref, _ = layers.maxpool_forward(x, k, t)
    np.testing.assert_array_equal(layers.ramp_maxpool_forward(h, k, t, slope)[0], y_ref)
    y_loops, (winner_loops, _) = plan.PATHS["maxpool_forward"]["loops"](x, k, t)
    for name, path in plan.PATHS["ramp_maxpool_forward"].items():
        y, (winner, shape) = path(h, k, t, slope)
        assert shape == h.shape[2:] and y.dtype == h.dtype
        np.testing.assert_array_equal(_bits(y), _bits(y_ref), err_msg=name)
        np.testing.assert_array_equal(winner, winner_loops, err_msg=name)
    y, _ = tuned.ramp_maxpool_forward(h, k, t, slope)
    np.testing.assert_array_equal(_bits(y), _bits(y_ref))


@settings(max_examples=40, deadline=None)
@given(case=pool_cases(), dtype=DTYPES, seed=SEEDS, slope=st.sampled_from([0.5, 1.0, 0.25]))
def test_every_sum_and_pool_forward_path_equals_the_two_steps_with_the_same_winners(case, dtype, seed, slope):
    """ramp_plus_maxpool_forward: the pool of σ(h) + a (a sum block's output), its maxima and the very cells that won.

    a holds small integers and σ saturates many cells, so that σ(h) + a ties within
    windows: the first cell must win.
    """
    h, _, rng = _ramp_input(case, dtype, seed, slope)
    a = rng.integers(-1, 2, size=h.shape).astype(dtype)
    k, t = case[4:]
    x = activations.ramp_plus(h, a, slope)
    y_ref, _ = layers.maxpool_forward(x, k, t)
    np.testing.assert_array_equal(layers.ramp_plus_maxpool_forward(h, a, k, t, slope)[0], y_ref)
    y_loops, (winner_loops, _) = plan.PATHS["maxpool_forward"]["loops"](x, k, t)
    for name, path in plan.PATHS["ramp_plus_maxpool_forward"].items():
        y, cache = path(h, a, k, t, slope)
        assert cache[1] == h.shape[2:] and y.dtype == h.dtype
        np.testing.assert_array_equal(_bits(y), _bits(y_ref), err_msg=name)
        np.testing.assert_array_equal(cache[0], winner_loops, err_msg=name)
        dy = rng.normal(size=y.shape).astype(dtype)  # the pool's own backward pass reads the cache
        np.testing.assert_array_equal(tuned.maxpool_backward(dy, cache),
                                      tuned.maxpool_backward(dy, (winner_loops, cache[1])))
    y, _ = tuned.ramp_plus_maxpool_forward(h, a, k, t, slope)
    np.testing.assert_array_equal(_bits(y), _bits(y_ref))


@pytest.mark.parametrize("group", plan.BLOCKS["plane-groups"][2] + (1, 5))
def test_sum_and_pool_by_plane_groups_of_every_size(group):
    """σ(h) + a pooled by groups of the plan's sizes (and odd ones): a short last group, clipped windows, ties."""
    rng = np.random.default_rng(group)
    h = (rng.normal(size=(5, 7, 9, 10)) * 3).astype(np.float32)
    a = rng.integers(-1, 2, size=h.shape).astype(np.float32)
    x = activations.ramp_plus(h, a, 0.5)
    for k, t in [(3, 2), (4, 3)]:
        y_loops, (winner_loops, _) = plan.PATHS["maxpool_forward"]["loops"](x, k, t)
        y, (winner, _) = plan.PATHS["ramp_plus_maxpool_forward"]["plane-groups"](h, a, k, t, 0.5, group=group)
        np.testing.assert_array_equal(y, y_loops)
        np.testing.assert_array_equal(winner, winner_loops)


@settings(max_examples=30, deadline=None)
@given(case=pool_cases(), dtype=DTYPES, seed=SEEDS, slope=st.sampled_from([0.5, 1.0, 0.25]))
def test_pool_and_ramp_backward_in_one_pass_equal_the_two_steps(case, dtype, seed, slope):
    """maxpool_ramp_backward: the pool's scatter, then δ = e ⊙ σ'(h), as the two functions compute them in a row.

    The pool's input is σ(h), as in ``conv ramp pool``: saturated cells tie, and h holds
    the kinks |s·h| = 1. Against the NumPy reference's two steps (up to rounding: its
    scatter sums a cell's errors in float64) and against the tuned tier's own two steps
    (the same bits: the same scatter, the same expression for σ').
    """
    h, x, rng = _ramp_input(case, dtype, seed, slope)
    k, t = case[4:]
    _, cache_ref = layers.maxpool_forward(x, k, t)
    _, cache = tuned.maxpool_forward(x, k, t)
    dy = (rng.normal(size=cache[0].shape) * 10.0 ** rng.integers(-3, 4, size=cache[0].shape)).astype(dtype)
    fused = tuned.maxpool_ramp_backward(dy, cache, h, slope)
    assert fused.dtype == h.dtype and fused.shape == h.shape
    reference = layers.maxpool_ramp_backward(dy, cache_ref, h, slope)
    np.testing.assert_array_equal(reference,
                                  activations.ramp_backward(layers.maxpool_backward(dy, cache_ref), h, slope))
    np.testing.assert_allclose(fused, reference, rtol=rtol(np.dtype(dtype)), atol=0)
    two_steps = tuned.ramp_backward(tuned.maxpool_backward(dy, cache), h, slope)
    np.testing.assert_array_equal(_bits(fused), _bits(two_steps))


@settings(max_examples=30, deadline=None)
@given(case=pool_cases(), dtype=DTYPES, seed=SEEDS, slope=st.sampled_from([0.5, 1.0, 0.25]))
def test_pool_and_sum_ramp_backward_in_one_pass_equal_the_two_steps(case, dtype, seed, slope):
    """maxpool_ramp_backward_of_sum: the pool's scatter, then δ = (e1 + e) ⊙ σ'(h), as the two functions compute them.

    A sum block's first ramp under a pool: e1 comes from the block's second conv. e1 holds
    -0.0 where the pool's error is +0.0, so that an addend dropped or taken in the wrong
    order shows in the sign; and e1 ≈ -e at some winners, so that their sum cancels.
    """
    h, x, rng = _ramp_input(case, dtype, seed, slope)
    k, t = case[4:]
    _, cache_ref = layers.maxpool_forward(x, k, t)
    _, cache = tuned.maxpool_forward(x, k, t)
    dy = (rng.normal(size=cache[0].shape) * 10.0 ** rng.integers(-3, 4, size=cache[0].shape)).astype(dtype)
    e1 = rng.normal(size=h.shape).astype(dtype)
    e1[rng.random(size=h.shape) < 0.3] = -0.0
    e_pool = tuned.maxpool_backward(dy, cache)
    cancel = (e_pool != 0) & (rng.random(size=h.shape) < 0.3)
    e1[cancel] = -e_pool[cancel]
    fused = tuned.maxpool_ramp_backward_of_sum(e1, dy, cache, h, slope)
    assert fused.dtype == h.dtype and fused.shape == h.shape
    reference = layers.maxpool_ramp_backward_of_sum(e1, dy, cache_ref, h, slope)
    np.testing.assert_array_equal(
        reference, activations.ramp_backward_of_sum(e1, layers.maxpool_backward(dy, cache_ref), h, slope))
    # up to rounding, as the reference's scatter sums a cell's errors in float64: relative to the addends
    # (where e1 cancels the pool's error, the sum itself is all rounding)
    bound = rtol(np.dtype(dtype)) * slope * (np.abs(e1) + np.abs(e_pool)).astype(np.float64)
    assert np.all(np.abs(fused.astype(np.float64) - reference) <= bound)
    two_steps = tuned.ramp_backward_of_sum(e1, e_pool, h, slope)
    np.testing.assert_array_equal(_bits(fused), _bits(two_steps))
    with pytest.raises(ValueError, match="one shape"):
        tuned.maxpool_ramp_backward_of_sum(np.zeros(h.shape[:-1] + (h.shape[-1] + 1,), dtype), dy, cache, h, slope)


def _bits(a):
    """The bit patterns of a float array: 0.0 and -0.0 differ, as do NaNs with other payloads."""
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def _generator_pair(generator, seed, skip=0):
    """Two generators in one state, not at the start of their stream: NumPy's ``generator`` kind, or "buffered".

    "buffered": a PCG64 that holds half of a 64-bit output from a 32-bit draw. ``skip``: steps
    the generators first jump (MT19937 cannot).
    """
    kind = "PCG64" if generator == "buffered" else generator
    pair = [np.random.Generator(getattr(np.random, kind)(seed)) for _ in range(2)]
    for rng in pair:
        if kind != "MT19937":
            rng.bit_generator.advance(skip)
        rng.random(3)  # not at the start of the stream
        if generator == "buffered":
            rng.integers(0, 1000, dtype=np.int32)  # leaves a 32-bit half in the bit generator
    return pair


def _assert_the_reference_draw(drawn, reference, dtype, ours_rng, reference_rng):
    """(out, m) bit for bit the reference's, in ``dtype``, and the two generators left in the same state."""
    (out, m), (out_ref, m_ref) = drawn, reference
    assert out.shape == m.shape == out_ref.shape and out.dtype == m.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(_bits(m), _bits(m_ref))
    np.testing.assert_array_equal(_bits(out), _bits(out_ref))
    np.testing.assert_array_equal(ours_rng.random(5), reference_rng.random(5))  # the same state after
    for bits in (np.int32, np.int64):  # a 32-bit draw takes a buffered half first
        np.testing.assert_array_equal(ours_rng.integers(0, 1000, size=3, dtype=bits),
                                      reference_rng.integers(0, 1000, size=3, dtype=bits))


@settings(max_examples=20, deadline=None)
@given(dtype=DTYPES, seed=SEEDS, chunks=st.integers(1, 5), p=st.sampled_from([0.0, 0.3, 0.5, 0.8]),
       shape=st.sampled_from([(1,), (7,), (3, 11), (4, 2, 5, 5)]),
       generator=st.sampled_from(["PCG64", "PCG64DXSM", "MT19937", "buffered"]))
def test_tuned_dropout_draws_the_reference_mask_bit_for_bit_and_leaves_the_generator_as_it(dtype, seed, chunks, p,
                                                                                            shape, generator):
    """The numbers drawn a chunk per thread are the reference's, and the generator ends in the same state.

    "buffered": a PCG64 that holds half of a 64-bit output from a 32-bit draw, which
    jumping ahead would drop, so it draws as the reference does; MT19937 cannot jump.
    """
    from hebbref.kernels import tuned_dropout

    x = np.random.default_rng(seed).normal(size=shape).astype(dtype)  # negative values: x·0 is -0.0
    ours_rng, reference_rng = _generator_pair(generator, seed)
    _assert_the_reference_draw(tuned_dropout.dropout_draw(x, p, ours_rng, chunks),
                               layers.dropout_draw(reference_rng, x, p), dtype, ours_rng, reference_rng)


@settings(max_examples=40, deadline=None)
@given(dtype=DTYPES, seed=SEEDS, chunks=st.integers(1, 5), lanes=st.sampled_from([1, 2, 7, 64]),
       p=st.sampled_from([0.0, 0.3, 0.5, 0.8]), size=st.sampled_from([1, 7, 33, 130, 1001]),
       skip=st.integers(0, 2**70), generator=st.sampled_from(["PCG64", "PCG64", "PCG64DXSM", "MT19937", "buffered"]))
def test_dropout_drawn_in_lanes_is_the_reference_bit_for_bit_and_leaves_the_generator_as_it(
        dtype, seed, chunks, lanes, p, size, skip, generator):
    """The "lanes" path steps NumPy's PCG64 inside the kernel, L steps from one state at a time: the same u, m, x ⊙ m
    and generator state after as the reference's rng.random, for chunks and blocks of L that do not divide the size.

    ``skip``: the generator is first advanced up to 2^70 steps, so that the 128-bit state's upper half (where the
    carry of the low half lands, and the rotation is read) is far from its seed's. Generators other than PCG64
    (and a PCG64 holding a buffered 32-bit half) go by the "chunks" path, which draws as the reference does.
    """
    from hebbref.kernels import tuned_dropout

    x = np.random.default_rng(seed).normal(size=(1, size)).astype(dtype)
    ours_rng, reference_rng = _generator_pair(generator, seed, skip)
    _assert_the_reference_draw(tuned_dropout.dropout_draw_lanes(x, p, ours_rng, chunks, lanes),
                               layers.dropout_draw(reference_rng, x, p), dtype, ours_rng, reference_rng)


def test_the_steps_ahead_of_the_lanes_path_are_pcg64s_own_steps():
    """A[:, j]·S + C[:, j] is the state j + 1 steps after S, as NumPy's generator reaches it by ``advance``."""
    from hebbref.kernels import tuned_dropout

    bit_generator = np.random.PCG64(11)
    bit_generator.advance(12345)
    state = bit_generator.state["state"]
    A, C = tuned_dropout._steps_ahead(state["inc"], 9)
    for j in range(9):
        a, c = (int(A[0, j]) << 64) | int(A[1, j]), (int(C[0, j]) << 64) | int(C[1, j])
        bit_generator.advance(1)
        assert (a * state["state"] + c) % 2**128 == bit_generator.state["state"]["state"], j


@pytest.mark.parametrize("chunks", [1, 2])
def test_the_lanes_path_keeps_a_number_equal_to_p_and_drops_one_just_under_it(chunks):
    """u ≥ p, compared as integers (``keep_from``): p set to a drawn number itself, then to the float64 on either side.

    A drawn u is k·2^-53; the kernel keeps it where k ≥ ⌈p·2^53⌉. With p = u the unit is kept,
    with p one float64 above u (strictly between k·2^-53 and (k+1)·2^-53, since u < 1/2) it is
    dropped, and so with every u drawn at random no test would tell ⌈ ⌉ from ⌊ ⌋ or ≥ from >.
    """
    from hebbref.kernels import tuned_dropout

    seed = 4
    u = np.random.default_rng(seed).random(64)
    small = np.flatnonzero((u < 0.5) & (u > 0))  # where a float64 lies strictly between k·2^-53 and (k+1)·2^-53
    x = np.ones(64)
    for i in small[:3]:
        for p in (u[i], np.nextafter(u[i], 1.0), np.nextafter(u[i], 0.0)):
            ours, reference = np.random.default_rng(seed), np.random.default_rng(seed)
            out, m = tuned_dropout.dropout_draw_lanes(x, p, ours, chunks, lanes=7)
            _, m_ref = layers.dropout_draw(reference, x, p)
            np.testing.assert_array_equal(m, m_ref)
            assert (m[i] != 0) == (p <= u[i]), (i, p)


@settings(max_examples=20, deadline=None)
@given(dtype=DTYPES, seed=SEEDS, threads=st.sampled_from([1, 2]),
       shape=st.sampled_from([(1,), (7,), (3, 11), (4, 2, 5, 5)]), view=st.booleans())
def test_tuned_dropout_backward_is_the_reference_product_bit_for_bit(dtype, seed, threads, shape, view):
    """e ⊙ m in one parallel pass: the same bits as the reference's product, -0.0 included, views too."""
    import numba

    from hebbref.kernels import tuned

    rng = np.random.default_rng(seed)
    e = rng.normal(size=shape).astype(dtype)
    _, m = layers.dropout_draw(rng, e, 0.4)
    if view:  # arrays as a transposition leaves them (not contiguous)
        e, m = e.T, m.T
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        ours = tuned.dropout_backward(e, m)
    finally:
        numba.set_num_threads(before)
    reference = layers.dropout_backward(e, m)
    assert ours.shape == reference.shape and ours.dtype == reference.dtype
    np.testing.assert_array_equal(_bits(ours), _bits(reference))
    mixed = tuned.dropout_backward(e.astype(np.float64), m.astype(np.float32))  # NumPy's promotion
    np.testing.assert_array_equal(mixed, layers.dropout_backward(e.astype(np.float64), m.astype(np.float32)))


def test_the_dropout_layer_sends_its_error_through_the_backend():
    """A network's dropout layers take e ⊙ m from their backend's ``dropout_backward``."""
    import dataclasses

    import hebbref
    from hebbref import backends

    calls = []

    def counted(e, m):
        calls.append(e.shape)
        return layers.dropout_backward(e, m)

    # drop dense's two functions by default (None): the backend's own in a row, this dropout_backward among them
    backend = dataclasses.replace(backends.get_backend("numpy"), dropout_backward=counted, dropout_dense_forward=None,
                                  dense_dropout_backward=None)
    net = hebbref.build_network("dense12 ramp drop0.4 dense9 drop0.7 out", (1, 4, 5), 3, backend=backend, seed=3)
    net.train_step(np.random.default_rng(0).random((6, 1, 4, 5)), np.arange(6) % 3, lr=0.1)
    assert sorted(calls) == [(6, 9), (6, 12)]


def test_the_dropout_layer_draws_through_its_backend_the_reference_numbers():
    """A numba network's dropout masks, step after step, are the numpy network's."""
    import hebbref

    nets = [hebbref.build_network("dense12 ramp drop0.4 dense9 drop0.7 out", (1, 4, 5), 3, backend=backend, seed=3,
                                  dtype="float32") for backend in ("numba", "numpy")]
    x = np.random.default_rng(0).random((6, 1, 4, 5)).astype(np.float32)
    y = np.arange(6) % 3
    for _ in range(3):
        for net in nets:
            net.train_step(x, y, lr=0.1)
        masks = [[layer.mask for layer in net.layers if type(layer).__name__ == "Dropout"] for net in nets]
        for ours, reference in zip(*masks):
            np.testing.assert_array_equal(_bits(ours), _bits(reference))


def test_tuned_kernels_accept_views_that_are_not_contiguous():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 5, 2, 3)).transpose(2, 3, 0, 1)  # (2, 3, 5, 5), not contiguous
    W = rng.normal(size=(4, 3, 3, 3))
    for path in FORWARD_PATHS:
        dtype = plan.DTYPES.get(path, (np.float64,))[0]
        view, kernel = x.astype(dtype, copy=False), W.astype(dtype)
        if dtype != np.float64:  # a view again, in the path's dtype
            view = x.transpose(2, 3, 0, 1).astype(dtype).transpose(2, 3, 0, 1)
            assert not view.flags.c_contiguous
        close = (1e-10, 1e-12) if dtype == np.float64 else (rtol(np.dtype(dtype)),) * 2
        np.testing.assert_allclose(plan.PATHS["conv_forward"][path](view, kernel)[0],
                                   layers.conv_forward(view, kernel)[0], *close, err_msg=path)
    W_untied = rng.normal(size=(5, 5, 4, 3, 3, 3))
    np.testing.assert_allclose(tuned.locally_connected_forward(x, W_untied)[0],
                               layers.locally_connected_forward(x, W_untied)[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(tuned.ramp(x), activations.ramp(x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_candidate_plan_computes_the_reference(dtype, monkeypatch):
    """Every path at every block size and thread count a measured plan may pick (``plan.candidates``).

    The block sizes are made small here, so that the batch spans several blocks or tiles
    and the last one is short; the weight increment follows its forward pass's block size.
    """
    for path in ("shifted", "shifted-correlation", "shifted-scatter"):
        monkeypatch.setitem(plan.BLOCKS, path, ("columns per block", "columns", (40, 100, 4096)))
    for path in ("loops-tiled", "planes", "batch-last"):
        monkeypatch.setitem(plan.BLOCKS, path, ("images per tile", "tile_size", (1, 4, 16)))
    for path in ("winograd", "winograd-4x4"):
        monkeypatch.setitem(plan.BLOCKS, path, ("images per block", "images", (1, 2, 4)))
    rng = np.random.default_rng(7)
    tolerance_ = rtol(np.dtype(dtype))
    for n, c_in, c_out, h, w, k in [(9, 3, 4, 6, 7, 3), (7, 4, 2, 5, 5, 4), (6, 2, 3, 4, 6, 2)]:  # every conv path
        x = rng.normal(size=(n, c_in, h, w)).astype(dtype)
        W, R = (rng.normal(size=(c_out, c_in, k, k)).astype(dtype) for _ in range(2))
        delta = rng.normal(size=(n, c_out, h, w)).astype(dtype)
        h_ref, cache_ref = layers.conv_forward(x, W)
        G_ref = layers.conv_weight_increment(delta, cache_ref)
        e_ref = layers.conv_input_error(delta, cache_ref, R)
        for name, candidate in plan.candidates("conv_forward", (x, W)).items():
            with plan.on_threads(candidate.threads):
                h_ours, (tag, cache) = plan.path_function("conv_forward", candidate)(x, W)
                G_ours = plan.CONV_WEIGHT_INCREMENT[tag](delta, cache)
            np.testing.assert_allclose(h_ours, h_ref, rtol=tolerance_, atol=tolerance_, err_msg=f"h {name}")
            np.testing.assert_allclose(G_ours, G_ref, rtol=tolerance_, atol=tolerance_ * n, err_msg=f"G {name}")
        for name, candidate in plan.candidates("conv_input_error", (delta, None, R)).items():
            with plan.on_threads(candidate.threads):
                e_ours = plan.path_function("conv_input_error", candidate)(delta, None, R)
            np.testing.assert_allclose(e_ours, e_ref, rtol=tolerance_, atol=tolerance_, err_msg=f"e {name}")

        W_untied, R_untied = (rng.normal(size=(h, w, c_out, c_in, k, k)).astype(dtype) for _ in range(2))
        h_ref, cache_ref = layers.locally_connected_forward(x, W_untied)
        e_ref = layers.locally_connected_input_error(delta, cache_ref, R_untied)
        G_ref = layers.locally_connected_weight_increment(delta, cache_ref)
        for name, candidate in plan.candidates("locally_connected_forward").items():
            with plan.on_threads(candidate.threads):
                h_ours, cache = plan.path_function("locally_connected_forward", candidate)(x, W_untied)
            np.testing.assert_allclose(h_ours, h_ref, rtol=tolerance_, atol=tolerance_, err_msg=f"untied h {name}")
        for name, candidate in plan.candidates("locally_connected_weight_increment").items():
            with plan.on_threads(candidate.threads):
                G_ours = plan.path_function("locally_connected_weight_increment", candidate)(delta, cache)
            np.testing.assert_allclose(G_ours, G_ref, rtol=tolerance_, atol=tolerance_ * n,
                                       err_msg=f"untied G {name}")
        for name, candidate in plan.candidates("locally_connected_input_error").items():
            with plan.on_threads(candidate.threads):
                e_ours = plan.path_function("locally_connected_input_error", candidate)(delta, cache, R_untied)
            np.testing.assert_allclose(e_ours, e_ref, rtol=tolerance_, atol=tolerance_, err_msg=f"untied e {name}")
