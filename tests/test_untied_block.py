"""An untied layer, its ramp and the pool above, as one step each way: its own kernels.  # SPEC §2, §3, §5

``lc ramp pool`` (untied ``simple``) is taken by a network as one backend call forward
(``locally_connected_ramp_maxpool_forward``) and one backward
(``maxpool_ramp_locally_connected_backward``). Its ``images-last`` path
(``hebbref/kernels/tuned_untied_block.py``) is held to the tuned tier's own steps in a
row, bit for bit: the same h, pool output and winners (so the same δ), and the same
increment where the tile of images is the same; and the kernels it is made of (the
pool along the images, the transposition by parts) to their counterparts.

What holds for this block and the tied one alike (every path against the NumPy
reference, whole networks that take them) is in tests/test_blocks.py.
"""
import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hebbref import activations
from hebbref.kernels import plan, tuned, tuned_locally_connected, tuned_pooling, tuned_untied_block
from hebbref.kernels.tuned_simd import LANES
from hebbref.modules import Deferred

from block_checks import bits, block_cases, block_input, run_path
from strategies import SEEDS

EQUATION = "locally_connected_ramp_maxpool_forward"


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
@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (3, 2), (1, 7), (7, 1), (5, 5), (50, 61), (LANES, LANES),
                                   (2 * LANES + 3, 3 * LANES + 5), (3 * LANES + 5, 2 * LANES + 3),
                                   (4, 2 * tuned_locally_connected.PART_MOST + 3),
                                   (2 * tuned_locally_connected.PART_MOST + 3, 4),
                                   (LANES + 1, 2 * tuned_locally_connected.PART_MOST + 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_the_transposition_by_parts_equals_the_transpose(shape, dtype, threads):
    """``batch_last`` cuts the longer axis into parts: every shape, wide or tall, more parts than numbers, one thread or two;
    float32 in blocks of LANES × LANES (whole ones, and the rows and columns past them)."""
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
