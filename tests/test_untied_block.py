"""An untied layer, its ramp and the pool above, as one step each way: every path against the three steps.  # SPEC §2, §3, §5

``lc ramp pool`` (untied ``simple``) is taken by a network as one backend call forward
(``locally_connected_ramp_maxpool_forward``) and one backward
(``maxpool_ramp_locally_connected_backward``). Each path of the tuned tier
(``plan.PATHS``; ``hebbref/kernels/tuned_untied_block.py``) is held

* to the tuned tier's own steps in a row, bit for bit: the same h, pool output and
  winners (so the same δ), and the same increment where the tile of images is the same;
* to the NumPy reference's steps, up to rounding (in float64, where no rounding moves
  a window's winner);

(whole networks that take the block are held to the reference backend in
tests/test_conv_block.py, with the tied block).
"""
import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hebbref
from hebbref import activations, layers
from hebbref.backends import get_backend
from hebbref.kernels import plan, tuned, tuned_locally_connected, tuned_pooling, tuned_untied_block
from hebbref.modules import Deferred

from comparisons import assert_close, tolerance
from block_checks import bits, block_cases, block_input, formed, run_path
from strategies import SEEDS

EQUATION = "locally_connected_ramp_maxpool_forward"
PATH_NAMES = list(plan.PATHS[EQUATION])


@pytest.mark.parametrize("tile", [1, 3, None])
@settings(max_examples=25, deadline=None)
@given(case=block_cases(), dtype=st.sampled_from([np.float32, np.float64]), seed=SEEDS,
       slope=st.sampled_from([0.5, 1.0, 0.25]))
def test_the_images_last_path_equals_the_tuned_steps_in_a_row_bit_for_bit(tile, case, dtype, seed, slope):
    """h, the pool's output, δ (hence the winners) and G: the numbers of the batch-last steps of the same tile."""
    n, c_in, c_out, hh, w, k, pool_k, pool_t = case
    x, W, dy = block_input(case, dtype, seed, slope, untied=True)
    y, xp, _, h, delta, G = run_path(EQUATION, "images-last", tile, x, W, pool_k, pool_t, slope, dy)
    size = tile or tuned_untied_block.IMAGES_PER_TILE
    h_steps, xp_steps = tuned_locally_connected.locally_connected_forward_batch_last(x, W, size)
    y_steps, pool_cache = plan.PATHS["ramp_maxpool_forward"]["ramp-then-loops"](h_steps, pool_k, pool_t, slope)
    delta_steps = tuned.maxpool_ramp_backward(dy, pool_cache, h_steps, slope)
    G_steps = tuned_locally_connected.locally_connected_weight_increment_batch_last(delta_steps, xp_steps, size)
    np.testing.assert_array_equal(xp, xp_steps)
    for name, ours, steps in [("h", h, h_steps), ("y", y, y_steps), ("δ", delta, delta_steps), ("G", G, G_steps)]:
        assert ours.dtype == steps.dtype and ours.shape == steps.shape, f"{name}: {ours.dtype}{ours.shape}"
        np.testing.assert_array_equal(bits(ours), bits(steps), err_msg=f"{name}, case {case}, tile {tile}")


@pytest.mark.parametrize("name", PATH_NAMES)
@settings(max_examples=20, deadline=None)
@given(case=block_cases(), seed=SEEDS, slope=st.sampled_from([0.5, 1.0]))
def test_every_block_path_equals_the_reference_three_steps(name, case, seed, slope):
    """Against hebbref.layers, up to rounding: float64, where rounding moves no winner."""
    n, c_in, c_out, hh, w, k, pool_k, pool_t = case
    x, W, dy = block_input(case, np.float64, seed, slope, untied=True)
    y, lc_cache, _, h, delta, G = run_path(EQUATION, name, None, x, W, pool_k, pool_t, slope, dy)
    y_ref, lc_ref, h_ref, cache_ref = layers.locally_connected_ramp_maxpool_forward(x, W, pool_k, pool_t, slope)
    delta_ref, G_ref = layers.maxpool_ramp_locally_connected_backward(dy, cache_ref, slope)
    rtol = 10 * tolerance(np.float64)
    for what, ours, reference in [("y", y, y_ref), ("h", h, h_ref), ("δ", delta, delta_ref), ("G", G, G_ref)]:
        assert_close(ours, reference, rtol, f"{name} {what}, case {case}")
    # the untied layer's cache serves its own input error, as after its own forward pass
    B = np.random.default_rng(seed).normal(size=W.shape)
    assert_close(tuned.locally_connected_input_error(delta, lc_cache, B),
                 layers.locally_connected_input_error(delta_ref, lc_ref, B), rtol, f"{name} input error")


@st.composite
def pool_cases(draw):
    """(N, C, H, W, k, t): disjoint, overlapping and gapped windows, with and without padding before the image."""
    return (draw(st.integers(1, 6)), draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9)),
            draw(st.integers(1, 4)), draw(st.integers(1, 4)))


@settings(max_examples=40, deadline=None)
@given(case=pool_cases(), dtype=st.sampled_from([np.float32, np.float64]), seed=SEEDS,
       slope=st.sampled_from([0.5, 1.0, 0.25]))
def test_the_pool_kernels_along_the_images_equal_those_along_the_planes(case, dtype, seed, slope):
    """The pool of σ(h) and its backward pass with the images last: the same bits as plane by plane.

    h saturates many cells (they tie at ±1 in σ(h): the first must win) and holds the
    kinks |s·h| = 1, where σ' is still s. The backward pass reads no h: the forward
    pass marked the winners where σ' = 0.
    """
    n, c, hh, w, k, t = case
    rng = np.random.default_rng(seed)
    h = (rng.normal(size=(n, c, hh, w)) * 4 / slope).astype(dtype)
    h.flat[: min(h.size, 3)] = [1 / slope, -1 / slope, 0.0][: min(h.size, 3)]
    y_planes, (winner_planes, _) = plan.PATHS["ramp_maxpool_forward"]["ramp-then-loops"](h, k, t, slope)
    top, left, ho, wo = tuned_pooling._windows(h, k, t)
    h_last = tuned_untied_block.images_last(h)
    y, winner_last = tuned_pooling.ramp_maxpool_images_last(h_last, k, t, top, left, ho, wo, h.dtype.type(slope))
    np.testing.assert_array_equal(bits(y), bits(y_planes))
    # the same cells win; a winner where the ramp saturates is marked -1 - its index
    marks = tuned_untied_block.images_first(winner_last)
    np.testing.assert_array_equal(np.where(marks < 0, -1 - marks, marks), winner_planes)
    at_winner = np.take_along_axis(h.reshape(n, c, -1), winner_planes.reshape(n, c, -1), axis=2).reshape(marks.shape)
    np.testing.assert_array_equal(marks < 0, activations.ramp_derivative(at_winner, slope) == 0)
    dy = (rng.normal(size=y_planes.shape) * 10.0 ** rng.integers(-3, 4, size=y_planes.shape)).astype(dtype)
    delta_last = tuned_pooling.maxpool_ramp_backward_images_last(tuned_untied_block.images_last(dy), winner_last,
                                                                 hh, w, k, t, top, left, h.dtype.type(slope))
    delta_planes = tuned.maxpool_ramp_backward(dy, (winner_planes, (hh, w)), h, slope)
    np.testing.assert_array_equal(bits(tuned_untied_block.images_first(delta_last)), bits(delta_planes))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (3, 2), (1, 7), (7, 1), (5, 5), (50, 61),
                                   (4, 2 * tuned_locally_connected.PART_MOST + 3),
                                   (2 * tuned_locally_connected.PART_MOST + 3, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_the_transposition_by_parts_equals_the_transpose(shape, dtype, threads):
    """``batch_last`` cuts the longer axis into parts: every shape, wide or tall, more parts than numbers, one thread or two."""
    a = np.arange(np.prod(shape)).reshape(shape).astype(dtype)
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        out = tuned_locally_connected.batch_last(a)
    finally:
        numba.set_num_threads(previous)
    assert out.dtype == a.dtype and out.flags.c_contiguous
    np.testing.assert_array_equal(out, a.T)
    x = a.reshape(shape[0], 1, 1, shape[1])
    np.testing.assert_array_equal(tuned_untied_block.images_first(tuned_untied_block.images_last(x)), x)


def test_the_reference_block_is_its_three_functions_in_a_row():
    x, W, dy = block_input((3, 2, 3, 6, 5, 3, 3, 2), np.float64, 1, 0.5, untied=True)
    y, lc_cache, h, cache = layers.locally_connected_ramp_maxpool_forward(x, W, 3, 2, 0.5)
    h_steps, lc_steps = layers.locally_connected_forward(x, W)
    y_steps, pool_cache = layers.maxpool_forward(hebbref.activations.ramp(h_steps, 0.5), 3, 2)
    delta, G = layers.maxpool_ramp_locally_connected_backward(dy, cache, 0.5)
    delta_steps = hebbref.activations.ramp_backward(layers.maxpool_backward(dy, pool_cache), h_steps, 0.5)
    np.testing.assert_array_equal(h, h_steps)
    np.testing.assert_array_equal(y, y_steps)
    np.testing.assert_array_equal(delta, delta_steps)
    np.testing.assert_array_equal(G, layers.locally_connected_weight_increment(delta_steps, lc_steps))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_candidate_plan_of_the_block_computes_the_reference(dtype, monkeypatch):
    """Every path, tile and thread count a measured plan may pick, through the numba backend's two functions."""
    monkeypatch.setitem(plan.BLOCKS, "images-last", ("images per tile", "tile_size", (1, 4, 16)))
    x, W, dy = block_input((9, 2, 3, 7, 6, 3, 3, 2), dtype, 3, 0.5, untied=True)
    y_ref, _, h_ref, cache_ref = layers.locally_connected_ramp_maxpool_forward(x, W, 3, 2, 0.5)
    delta_ref, G_ref = layers.maxpool_ramp_locally_connected_backward(dy, cache_ref, 0.5)
    rtol = 10 * tolerance(dtype)
    names = plan.candidates(EQUATION)
    assert {c.path for c in names.values()} == set(PATH_NAMES)
    assert all(c.threads == plan.numba.get_num_threads() for c in names.values() if c.path == "in-turn")
    for name, candidate in names.items():
        monkeypatch.setattr(tuned, "choose", lambda equation, *arguments, c=candidate: c if equation == EQUATION
                            else plan.default_plan(equation, arguments))
        y, _, h, cache = tuned.locally_connected_ramp_maxpool_forward(x, W, 3, 2, 0.5)
        assert cache[0] == candidate.path
        delta, G = tuned.maxpool_ramp_locally_connected_backward(dy, cache, 0.5)
        for what, ours, reference in [("y", y, y_ref), ("h", formed(h), h_ref), ("δ", formed(delta), delta_ref)]:
            assert_close(ours, reference, rtol, f"{name} {what}")
        assert_close(G, G_ref, rtol * 10, f"{name} G")


def test_a_deferred_attribute_is_formed_once_and_only_when_read():
    calls = []

    class Holder:
        value = Deferred()

    holder = Holder()
    holder.value = lambda: calls.append(1) or np.arange(3)
    assert calls == []
    np.testing.assert_array_equal(holder.value, np.arange(3))
    np.testing.assert_array_equal(holder.value, np.arange(3))
    assert calls == [1]
    holder.value = np.ones(2)  # an array is kept as it is
    np.testing.assert_array_equal(holder.value, np.ones(2))
    holder.value = None
    assert holder.value is None


def test_backends_without_the_block_run_their_own_functions_in_a_row():
    """The readable backend composes its own functions; its block equals the reference's."""
    readable = get_backend("readable")
    x, W, dy = block_input((2, 2, 3, 5, 6, 2, 2, 2), np.float64, 5, 0.5, untied=True)
    y, lc_cache, h, cache = readable.locally_connected_ramp_maxpool_forward(x, W, 2, 2, 0.5)
    delta, G = readable.maxpool_ramp_locally_connected_backward(dy, cache, 0.5)
    y_ref, _, h_ref, cache_ref = layers.locally_connected_ramp_maxpool_forward(x, W, 2, 2, 0.5)
    delta_ref, G_ref = layers.maxpool_ramp_locally_connected_backward(dy, cache_ref, 0.5)
    for what, ours, reference in [("y", y, y_ref), ("h", h, h_ref), ("δ", delta, delta_ref), ("G", G, G_ref)]:
        assert_close(ours, reference, 1e-9, what)
