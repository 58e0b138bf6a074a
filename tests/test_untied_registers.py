"""The untied block's ``registers`` path: sums held in vector registers, ramped and pooled as they are formed.  # SPEC §2, §3, §5

``hebbref/kernels/tuned_untied_registers.py`` never writes h. It is held here to the
``images-last`` path (``tuned_untied_block``): on data whose sums are exact in any order
(small integers, which tie in many windows, inside the ramp, at its kinks and where it
saturates), the same pool output, winners, δ, increment and h, bit for bit; on
real-valued data the same up to the rounding of the sums, which the two add in different
orders. What holds for every path of the block (the NumPy reference, whole networks) is
in tests/test_blocks.py, in float32 for this path.
"""

import numba
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from numba import njit

import hebbref
from hebbref import layers
from hebbref.kernels import plan, tuned, tuned_simd, tuned_untied_registers
from hebbref.kernels.tuned_simd import vabs, vload, vmaximum, vmul, vstore, vwhere_gt, vwhere_le

from block_checks import bits, run_path
from strategies import SEEDS

EQUATION = "locally_connected_ramp_maxpool_forward"
SPAN = tuned_untied_registers.SPAN
# batches below a piece of images, of exactly one, and past one or two by a few (the last piece overlaps; at
# SPAN + 3/4 SPAN it begins a quarter piece back, so its first vector of images is partly new and its second all new)
BATCHES = [1, 3, SPAN - 1, SPAN, SPAN + 1, SPAN + 3 * SPAN // 4, 2 * SPAN + 5]
GROUPS = plan.BLOCKS["registers"][2]  # output channels summed at a time: 8 and 4


@st.composite
def cases(draw):
    """(N, C_in, C_out, H, W, k of the layer, k and t of the pool): output channels below, at and past a group of
    four and of eight; pools with overlapping, disjoint and gapped windows."""
    return (draw(st.sampled_from(BATCHES)), draw(st.integers(1, 3)), draw(st.sampled_from([1, 3, 4, 5, 8, 9, 17])),
            draw(st.integers(1, 7)), draw(st.integers(1, 7)), draw(st.integers(1, 4)), draw(st.integers(1, 4)),
            draw(st.integers(1, 3)))


def inputs(case, seed, slope, exact=True):
    """float32 x, W (one filter bank per location) and dy, h large enough that σ saturates many cells (they tie at ±1).

    ``exact``: x and W small integers, so that every sum is exact (whatever the order of its
    terms) and many cells tie, inside the ramp and at its kinks |s·h| = 1 as well as where it
    saturates.
    """
    n, c_in, c_out, hh, w, k, pool_k, pool_t = case
    rng = np.random.default_rng(seed)
    if exact:
        x = rng.integers(-3, 4, size=(n, c_in, hh, w)).astype(np.float32)
        W = rng.integers(-2, 3, size=(hh, w, c_out, c_in, k, k)).astype(np.float32)
    else:
        x = rng.normal(size=(n, c_in, hh, w)).astype(np.float32)
        W = (rng.normal(size=(hh, w, c_out, c_in, k, k)) * 2 / slope).astype(np.float32)
    ho, wo = -(-hh // pool_t), -(-w // pool_t)
    dy = rng.normal(size=(n, c_out, ho, wo)).astype(np.float32)
    return x, W, dy


@settings(max_examples=40, deadline=None)
@given(case=cases(), seed=SEEDS, slope=st.sampled_from([0.5, 1.0, 0.25]), group=st.sampled_from(GROUPS))
# pools of 49 and of 16 windows: whole blocks of LANES windows turned over on their way out (tuned_simd.turn_over), in
# pieces of new images only, and in a last piece that begins a quarter piece back
@example(case=(SPAN + 3 * SPAN // 4, 1, 9, 7, 7, 3, 3, 1), seed=0, slope=0.5, group=8)
@example(case=(2 * SPAN, 2, 3, 7, 8, 2, 2, 2), seed=1, slope=1.0, group=4)
@example(case=(SPAN + 1, 1, 5, 4, 6, 3, 3, 2), seed=2, slope=0.5, group=4)
def test_the_registers_path_equals_the_images_last_path_bit_for_bit(case, seed, slope, group):
    """y, the winners (and so δ), G and h: the numbers of ``images-last``, on sums that are exact in either order;
    four output channels at a time or eight."""
    x, W, dy = inputs(case, seed, slope)
    pool_k, pool_t = case[-2:]
    ours = run_path(EQUATION, "registers", group, x, W, pool_k, pool_t, slope, dy)
    theirs = run_path(EQUATION, "images-last", None, x, W, pool_k, pool_t, slope, dy)
    np.testing.assert_array_equal(ours[1], theirs[1])  # the layer's cache, xp
    np.testing.assert_array_equal(ours[2].winner, theirs[2].winner)
    for name, a, b in zip(["y", "h", "δ", "G"], [ours[0], *ours[3:]], [theirs[0], *theirs[3:]]):
        assert a.dtype == b.dtype == np.float32 and a.shape == b.shape, f"{name}: {a.dtype}{a.shape}"
        np.testing.assert_array_equal(bits(a), bits(b), err_msg=f"{name}, case {case}")


@settings(max_examples=20, deadline=None)
@given(case=cases(), seed=SEEDS, group=st.sampled_from(GROUPS))
def test_on_real_valued_data_the_path_is_the_images_last_path_up_to_rounding(case, seed, group):
    """The sums go in another order (a fused multiply-add per term): y to rounding; the winners, apart from windows
    whose two largest differ by no more than rounding, the same."""
    x, W, dy = inputs(case, seed, 0.5, exact=False)
    pool_k, pool_t = case[-2:]
    ours = run_path(EQUATION, "registers", group, x, W, pool_k, pool_t, 0.5, dy)
    theirs = run_path(EQUATION, "images-last", None, x, W, pool_k, pool_t, 0.5, dy)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=0, atol=1e-5)  # σ(h) is within [-1, 1]
    assert np.mean(ours[2].winner == theirs[2].winner) > 0.99


def test_h_asked_for_after_the_weights_change_is_that_of_the_forward_pass():
    """A probe reads h after the update: the path sums it again from the W of its forward pass, not the W of now."""
    x, W, dy = inputs((SPAN + 3, 2, 5, 6, 5, 3, 3, 2), 0, 0.5, exact=False)
    y, xp, h, cache = tuned_untied_registers.forward_registers_path(x, W, 3, 2, 0.5)
    h_then = layers.locally_connected_forward(x, W)[0]
    W -= 1.0  # the SGD step updates W in place
    np.testing.assert_allclose(h(), h_then, rtol=1e-5, atol=1e-5 * np.abs(h_then).max())


@pytest.mark.parametrize("threads", [1, 2])
def test_one_thread_and_all_give_the_same_bits(threads):
    x, W, dy = inputs((2 * SPAN + 5, 1, 9, 9, 8, 5, 3, 2), 3, 0.5, exact=False)
    expected = tuned_untied_registers.forward_registers_path(x, W, 3, 2, 0.5)[0]
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        y = tuned_untied_registers.forward_registers_path(x, W, 3, 2, 0.5)[0]
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(bits(y), bits(expected))


@njit
def _lanes(op, a, b, x, y):
    """Apply one of the comparison and arithmetic operations to the first LANES numbers of each array."""
    out = np.empty(tuned_simd.LANES, np.float32)
    va, vb, vx, vy = vload(a, 0), vload(b, 0), vload(x, 0), vload(y, 0)
    if op == 0:
        vstore(out, 0, vmaximum(va, vb))
    elif op == 1:
        vstore(out, 0, vwhere_gt(va, vb, vx, vy))
    elif op == 2:
        vstore(out, 0, vwhere_le(va, vb, vx, vy))
    elif op == 3:
        vstore(out, 0, vabs(va))
    else:
        vstore(out, 0, vmul(va, vb))
    return out


@njit
def _numba_scalars(a, b, x, y):
    """The same operations as Numba compiles them for one float32 at a time, the way the pool kernels write them."""
    out = np.empty((5, a.size), np.float32)
    for m in range(a.size):
        out[0, m] = np.maximum(a[m], b[m])
        out[1, m] = x[m] if a[m] > b[m] else y[m]
        out[2, m] = x[m] if a[m] <= b[m] else y[m]
        out[3, m] = abs(a[m])
        out[4, m] = a[m] * b[m]
    return out


def test_the_vector_operations_are_numbas_scalar_ones_lane_by_lane():
    """NaN in either argument, ties, and zeros of either sign (np.maximum(-0, 0) is -0: the first where a >= b)."""
    lanes = tuned_simd.LANES
    special = np.array([np.nan, 1.0, np.nan, -0.0, 0.0, 2.0, -3.0, 1.0, -1.5, np.inf, -np.inf, 0.5, 7.0, -0.0, 3.0, 1.0],
                       np.float32)
    other = np.array([1.0, np.nan, np.nan, 0.0, -0.0, 2.0, 3.0, -1.0, -1.5, 1.0, -np.inf, 0.25, -7.0, -0.0, 3.5, 1.0],
                     np.float32)
    a, b = special[:lanes].copy(), other[:lanes].copy()
    x, y = np.arange(lanes, dtype=np.float32), -np.arange(1, lanes + 1, dtype=np.float32)
    expected = _numba_scalars(a, b, x, y)
    for op in range(5):
        np.testing.assert_array_equal(bits(_lanes(op, a, b, x, y)), bits(expected[op]), err_msg=f"operation {op}")


def test_the_plan_times_the_path_on_float32_only():
    x32 = np.zeros((2, 1, 5, 5), np.float32)
    W32 = np.zeros((5, 5, 3, 1, 3, 3), np.float32)
    assert plan.applies(EQUATION, "registers", (x32, W32, 3, 2, 0.5))
    for x, W in [(x32.astype(np.float64), W32), (x32, W32.astype(np.float64))]:
        assert not plan.applies(EQUATION, "registers", (x, W, 3, 2, 0.5))
        assert "registers" not in {c.path for c in plan.candidates(EQUATION, (x, W, 3, 2, 0.5)).values()}
    assert plan.applies(EQUATION, "images-last", (x32.astype(np.float64), W32, 3, 2, 0.5))


@pytest.mark.parametrize("rule", ["bp", "urfb"])
def test_a_float32_network_on_the_registers_path_learns_what_the_reference_learns(rule, monkeypatch):
    architecture = "lc6:5 ramp pool3s2 dense7 ramp out"
    nets = [hebbref.build_network(architecture, (1, 12, 11), 4, rule=rule, backend=backend, seed=2, dtype="float32")
            for backend in ("numpy", "numba")]
    rng = np.random.default_rng(1)
    x, labels = rng.normal(size=(SPAN + 7, 1, 12, 11)).astype(np.float32), rng.integers(0, 4, size=SPAN + 7)
    taken = []

    def choose(equation, *arguments):
        if equation == EQUATION:
            taken.append(equation)
            return plan.Plan("registers", numba.get_num_threads(), block=plan.BLOCKS["registers"][2][0])
        return plan.default_plan(equation, arguments)

    monkeypatch.setattr(tuned, "choose", choose)
    for _ in range(3):
        for net in nets:
            net.train_step(x, labels, lr=0.05, loss="hinge")
    assert taken
    for p, q in zip(nets[0].parameters(), nets[1].parameters()):
        np.testing.assert_allclose(q.W, p.W, rtol=1e-4, atol=1e-4 * np.abs(p.W).max(), err_msg=f"{rule} {p.name} W")
        np.testing.assert_allclose(q.R, p.R, rtol=1e-4, atol=1e-4 * np.abs(p.R).max(), err_msg=f"{rule} {p.name} R")



def test_a_nan_in_the_input_reaches_the_windows_that_hold_it_as_on_images_last():
    """np.maximum's NaN (``vmaximum``), not a comparison's: a window holding a NaN cell has a NaN maximum."""
    x, W, dy = inputs((SPAN + 2, 1, 9, 8, 7, 3, 3, 2), 5, 0.5, exact=False)
    x[3, 0, 4, 2] = np.nan
    x[SPAN + 1, 0, 0, 0] = np.nan
    ours = tuned_untied_registers.forward_registers_path(x, W, 3, 2, 0.5)
    theirs = plan.PATHS[EQUATION]["images-last"](x, W, 3, 2, 0.5)
    assert np.isnan(ours[0]).any() and not np.isnan(ours[0]).all()
    np.testing.assert_array_equal(np.isnan(ours[0]), np.isnan(theirs[0]))
    np.testing.assert_array_equal(ours[3].winner[np.isnan(theirs[0]).transpose(1, 2, 3, 0)],
                                  theirs[3].winner[np.isnan(theirs[0]).transpose(1, 2, 3, 0)])
