"""A tied conv layer, its ramp and the pool above, as one step each way: every path against the three steps.  # SPEC §2, §3

``conv ramp pool`` (``simple``) is taken by a network as one backend call forward
(``conv_ramp_maxpool_forward``) and one backward (``maxpool_ramp_conv_backward``).
Each path of the tuned tier (``plan.PATHS``; ``hebbref/kernels/tuned_conv_block.py``)
is held

* to the tuned tier's own steps in a row (the direct loops, the pool, its backward
  pass and the direct increment), bit for bit: the same h, pool output and winners,
  and the same δ and G (up to the sign of a zero);
* to the NumPy reference's steps, up to rounding (in float64, where no rounding moves
  a window's winner);

then whole networks that take the block, or the untied one (``lc ramp pool``), are held
to the reference backend and to themselves taking one layer at a time.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hebbref
from hebbref import activations, layers
from hebbref.backends import get_backend
from hebbref.experiments.probes import probe
from hebbref.kernels import plan, tuned, tuned_conv_direct

from comparisons import assert_close, tolerance
from block_checks import bits, block_cases, block_input, formed, run_path
from strategies import SEEDS

EQUATION = "conv_ramp_maxpool_forward"
PATH_NAMES = list(plan.PATHS[EQUATION])


@pytest.mark.parametrize("width", [4, 8])
@settings(max_examples=30, deadline=None)
@given(case=block_cases(), dtype=st.sampled_from([np.float32, np.float64]), seed=SEEDS,
       slope=st.sampled_from([0.5, 1.0, 0.25]))
def test_the_direct_path_equals_the_direct_steps_in_a_row_bit_for_bit(width, case, dtype, seed, slope):
    """h and the pool's output to the bit, the winners marked where σ' = 0, δ and G equal (a zero's sign aside)."""
    n, c_in, c_out, hh, w, k, pool_k, pool_t = case
    x, W, dy = block_input(case, dtype, seed, slope, untied=False)
    y, conv_cache, cache, h, delta, G = run_path(EQUATION, "direct", width, x, W, pool_k, pool_t, slope, dy)
    h_steps, (xp_steps, _) = tuned_conv_direct.forward(x, W, width)
    y_steps, pool_cache = plan.PATHS["ramp_maxpool_forward"]["ramp-then-loops"](h_steps, pool_k, pool_t, slope)
    delta_steps = tuned.maxpool_ramp_backward(dy, pool_cache, h_steps, slope)
    G_steps = tuned_conv_direct.weight_increment(delta_steps, (xp_steps, width))
    assert conv_cache[0] == "direct" and conv_cache[1][1] == width
    np.testing.assert_array_equal(conv_cache[1][0], xp_steps)
    for name, ours, steps in [("h", h, h_steps), ("y", y, y_steps)]:
        assert ours.dtype == steps.dtype and ours.shape == steps.shape, f"{name}: {ours.dtype}{ours.shape}"
        np.testing.assert_array_equal(bits(ours), bits(steps), err_msg=f"{name}, case {case}")
    # the same cells win; a winner where the ramp saturates is marked -1 - its index
    marks, (winner_steps, _) = cache.winner, pool_cache
    np.testing.assert_array_equal(np.where(marks < 0, -1 - marks, marks), winner_steps)
    at_winner = np.take_along_axis(h_steps.reshape(n, c_out, -1), winner_steps.reshape(n, c_out, -1), axis=2)
    np.testing.assert_array_equal(marks < 0, activations.ramp_derivative(at_winner, slope).reshape(marks.shape) == 0)
    for name, ours, steps in [("δ", delta, delta_steps), ("G", G, G_steps)]:
        assert ours.dtype == steps.dtype and ours.shape == steps.shape, f"{name}: {ours.dtype}{ours.shape}"
        np.testing.assert_array_equal(ours, steps, err_msg=f"{name}, case {case}")  # -0 == +0


@pytest.mark.parametrize("name", PATH_NAMES)
@settings(max_examples=20, deadline=None)
@given(case=block_cases(), seed=SEEDS, slope=st.sampled_from([0.5, 1.0]))
def test_every_block_path_equals_the_reference_three_steps(name, case, seed, slope):
    """Against hebbref.layers, up to rounding: float64, where rounding moves no winner."""
    n, c_in, c_out, hh, w, k, pool_k, pool_t = case
    x, W, dy = block_input(case, np.float64, seed, slope, untied=False)
    y, conv_cache, _, h, delta, G = run_path(EQUATION, name, None, x, W, pool_k, pool_t, slope, dy)
    y_ref, conv_ref, h_ref, cache_ref = layers.conv_ramp_maxpool_forward(x, W, pool_k, pool_t, slope)
    delta_ref, G_ref = layers.maxpool_ramp_conv_backward(dy, cache_ref, slope)
    rtol = 10 * tolerance(np.float64)
    for what, ours, reference in [("y", y, y_ref), ("h", h, h_ref), ("δ", delta, delta_ref), ("G", G, G_ref)]:
        assert_close(ours, reference, rtol, f"{name} {what}, case {case}")
    # the conv layer's cache serves its own input error and increment, as after its own forward pass
    B = np.random.default_rng(seed).normal(size=W.shape)
    assert_close(tuned.conv_input_error(delta, conv_cache, B), layers.conv_input_error(delta_ref, conv_ref, B), rtol,
                 f"{name} input error")
    assert_close(tuned.conv_weight_increment(delta, conv_cache), G_ref, rtol, f"{name} increment of the conv cache")


def test_the_winners_are_those_of_the_reference_at_ties_and_at_the_kinks():
    """σ(h) ties at ±1 where the ramp saturates (the first cell in row-major order wins); at |s·h| = 1, σ' = s."""
    slope = 0.5
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, :2] = [1 / slope, 3 / slope]  # window (0, 0): the kink, then a saturated cell, σ = 1 at both
    x[0, 0, 2:, 2:] = [[-5 / slope, -1 / slope], [-7 / slope, -1 / slope]]  # window (1, 1): σ = -1 at all four
    W = np.ones((2, 1, 1, 1))  # h = x in the first plane
    W[1] = -1  # and -x in the second
    dy = np.arange(1.0, 9.0).reshape(1, 2, 2, 2)
    for name in PATH_NAMES:
        y, _, cache, h, delta, G = run_path(EQUATION, name, None, x, W, 2, 2, slope, dy)
        y_ref, _, _, cache_ref = layers.conv_ramp_maxpool_forward(x, W, 2, 2, slope)
        delta_ref, G_ref = layers.maxpool_ramp_conv_backward(dy, cache_ref, slope)
        np.testing.assert_array_equal(y, y_ref, err_msg=name)
        np.testing.assert_array_equal(delta, delta_ref, err_msg=name)
        np.testing.assert_array_equal(G, G_ref, err_msg=name)
    # the first of the tied cells wins: the kink (σ' = s) in window (0, 0), a saturated cell (σ' = 0) in (1, 1)
    assert delta_ref[0, 0, 0, 0] == slope * dy[0, 0, 0, 0] and delta_ref[0, 0, 0, 1] == 0
    assert not delta_ref[0, :, 2:, 2:].any()


def test_the_reference_block_is_its_three_functions_in_a_row():
    x, W, dy = block_input((3, 2, 3, 6, 5, 3, 3, 2), np.float64, 1, 0.5, untied=False)
    y, conv_cache, h, cache = layers.conv_ramp_maxpool_forward(x, W, 3, 2, 0.5)
    h_steps, conv_steps = layers.conv_forward(x, W)
    y_steps, pool_cache = layers.maxpool_forward(activations.ramp(h_steps, 0.5), 3, 2)
    delta, G = layers.maxpool_ramp_conv_backward(dy, cache, 0.5)
    delta_steps = activations.ramp_backward(layers.maxpool_backward(dy, pool_cache), h_steps, 0.5)
    np.testing.assert_array_equal(h, h_steps)
    np.testing.assert_array_equal(y, y_steps)
    np.testing.assert_array_equal(delta, delta_steps)
    np.testing.assert_array_equal(G, layers.conv_weight_increment(delta_steps, conv_steps))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_candidate_plan_of_the_block_computes_the_reference(dtype, monkeypatch):
    """Every path, terms per pass and thread count a measured plan may pick, through the numba backend's two functions."""
    slope = 0.25  # not the default: each function must pass its slope on
    x, W, dy = block_input((9, 2, 3, 7, 6, 3, 3, 2), dtype, 3, slope, untied=False)
    y_ref, _, h_ref, cache_ref = layers.conv_ramp_maxpool_forward(x, W, 3, 2, slope)
    delta_ref, G_ref = layers.maxpool_ramp_conv_backward(dy, cache_ref, slope)
    rtol = 10 * tolerance(dtype)
    names = plan.candidates(EQUATION)
    assert {c.path for c in names.values()} == set(PATH_NAMES)
    assert {c.block for c in names.values() if c.path == "direct"} == {4, 8}
    assert all(c.threads == plan.numba.get_num_threads() for c in names.values() if c.path == "in-turn")
    for name, candidate in names.items():
        monkeypatch.setattr(tuned, "choose", lambda equation, *arguments, c=candidate: c if equation == EQUATION
                            else plan.default_plan(equation, arguments))
        y, _, h, cache = tuned.conv_ramp_maxpool_forward(x, W, 3, 2, slope)
        assert cache[0] == candidate.path and cache[2] == candidate.threads
        delta, G = tuned.maxpool_ramp_conv_backward(dy, cache, slope)
        for what, ours, reference in [("y", y, y_ref), ("h", formed(h), h_ref), ("δ", formed(delta), delta_ref)]:
            assert_close(ours, reference, rtol, f"{name} {what}")
        assert_close(G, G_ref, rtol * 10, f"{name} G")


def test_the_default_plan_takes_the_direct_block_where_the_direct_loops_are_the_conv_default():
    x = np.zeros((500, 1, 28, 28), dtype=np.float32)
    assert plan.default_plan(EQUATION, (x, np.zeros((32, 1, 5, 5), np.float32), 3, 2, 0.5)).path == "direct"
    assert plan.default_plan("conv_forward", (x, np.zeros((32, 1, 5, 5), np.float32))).path == "direct"
    x = np.zeros((500, 16, 11, 11), dtype=np.float32)
    assert plan.default_plan(EQUATION, (x, np.zeros((64, 16, 3, 3), np.float32), 2, 2, 0.5)).path == "in-turn"
    assert plan.default_plan("conv_forward", (x, np.zeros((64, 16, 3, 3), np.float32))).path == "shifted"


# the tests below take both blocks, ``conv ramp pool`` and ``lc ramp pool`` (tests/test_untied_block.py
# holds the untied block's kernels): the network code that takes them is the same
ONE_BLOCK = {"conv": "conv3:5 ramp pool3s2 dense7 ramp out", "lc": "lc3:5 ramp pool3s2 dense7 ramp out"}
# a block above another weighted layer, and where it lies
BLOCK_ABOVE = {"conv": ("conv3:3 ramp pool2s1 conv2:4 ramp pool2s2 dense6 ramp out", 3),
               "lc": ("conv3:3 ramp lc3:4 ramp pool2s2 dense6 ramp out", 2)}


def _pair(rule, architecture, input_shape=(2, 9, 8), seed=4):
    """The same network on the reference backend and on the numba backend."""
    return [hebbref.build_network(architecture, input_shape, 4, rule=rule, backend=backend, seed=seed)
            for backend in ("numpy", "numba")]


def _batch(input_shape, n=11, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n,) + input_shape) * 2, rng.integers(0, 4, size=n)


@pytest.mark.parametrize("kind", ONE_BLOCK)
@pytest.mark.parametrize("rule", ["bp", "urfb", "frfb", "brsf"])
def test_a_network_takes_the_block_as_one_step_and_learns_what_the_reference_learns(kind, rule):
    reference, ours = _pair(rule, ONE_BLOCK[kind])
    x, y = _batch((2, 9, 8))
    for _ in range(3):
        for net in (reference, ours):
            net.train_step(x, y, lr=0.05, loss="hinge")
    assert ours.layers[0].in_block and reference.layers[0].in_block
    for p, q in zip(reference.parameters(), ours.parameters()):
        assert_close(q.W, p.W, 1e-9, f"{kind} {rule} {p.name} W")
        assert_close(q.R, p.R, 1e-9, f"{kind} {rule} {p.name} R")
    # what the block did not write out is formed on demand, as the reference holds it: h of the
    # forward pass, though W has been updated since
    assert_close(ours.layers[1].h, reference.layers[1].h, 1e-9, f"{kind}: the ramp's h")
    assert_close(ours.layers[0].delta, reference.layers[0].delta, 1e-9, f"{kind}: the layer's δ")


@pytest.mark.parametrize("kind", BLOCK_ABOVE)
def test_a_block_above_another_layer_sends_its_error_down(kind):
    """The block's δ goes through the layer's own input error when a weighted layer lies below it."""
    architecture, where = BLOCK_ABOVE[kind]
    reference, ours = _pair("urfb", architecture, (2, 8, 8))
    x, y = _batch((2, 8, 8))
    for _ in range(2):
        for net in (reference, ours):
            net.train_step(x, y, lr=0.05, loss="hinge")
    assert ours.layers[where].in_block and ours.layers[where].sends_error
    for p, q in zip(reference.parameters(), ours.parameters()):
        assert_close(q.W, p.W, 1e-9, f"{kind} {p.name} W")
        assert_close(q.R, p.R, 1e-9, f"{kind} {p.name} R")


@pytest.mark.parametrize("kind", BLOCK_ABOVE)
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_network_learns_through_its_blocks_what_it_learns_layer_by_layer(kind, backend, monkeypatch):
    """The block's own wiring (modules.Conv2D's two block methods), which every backend shares, against the layers' own.

    The same network, once taking the block as one step each way and once one layer at
    a time: the error below the block goes down through the rule's B (here R), and its
    δ and G are the layers' own.
    """
    architecture, where = BLOCK_ABOVE[kind]
    x, y = _batch((2, 8, 8))
    nets = [hebbref.build_network(architecture, (2, 8, 8), 4, rule="urfb", backend=backend, seed=2) for _ in "ab"]
    blocks = hebbref.network.Network._block_at
    for net, taken in zip(nets, (True, False)):
        monkeypatch.setattr(hebbref.network.Network, "_block_at", blocks if taken else (lambda self, i: False))
        for _ in range(2):
            net.train_step(x, y, lr=0.05, loss="hinge")
        assert net.layers[where].in_block == taken and net.layers[where].sends_error
    for p, q in zip(*(net.parameters() for net in nets)):
        assert_close(p.W, q.W, 1e-9, f"{kind} {backend} {p.name} W")
        assert_close(p.R, q.R, 1e-9, f"{kind} {backend} {p.name} R")
        assert_close(p.delta, q.delta, 1e-9, f"{kind} {backend} {p.name} δ")


SUM_AND_POOL = "sum[conv3:4,conv3:4] pool3s2 sum[conv2:3,conv2:3] pool2s2 dense5 ramp out"


@pytest.mark.parametrize("rule", ["bp", "urfb", "dfa"])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_sum_block_and_the_pool_above_learn_in_one_pass_what_they_learn_in_two(rule, backend, monkeypatch):
    """``sum[...] pool``: the block's output formed as the pool reads it (``SumBlock.forward_with_pool``), against the
    two layers' own forward passes; and the numba backend against the reference."""
    x, y = _batch((2, 9, 8))
    nets = [hebbref.build_network(SUM_AND_POOL, (2, 9, 8), 4, rule=rule, backend=b, seed=5, slope=0.25)
            for b in (backend, backend, "numpy")]  # a slope that is not the default: each call must pass its own on
    fused = hebbref.modules.SumBlock.forward_with_pool
    calls = []

    def counted(self, x, pool, train=False):
        calls.append(self)
        return fused(self, x, pool, train)

    for net, one_pass in zip(nets, (True, False, True)):
        in_two = lambda self, x, pool, train=False: pool.forward(self.forward(x, train), train)  # noqa: E731
        monkeypatch.setattr(hebbref.modules.SumBlock, "forward_with_pool", counted if one_pass else in_two)
        for _ in range(2):
            net.train_step(x, y, lr=0.05, loss="hinge")
    assert len(calls) == 2 * 2 * 2  # two blocks, two steps, two networks
    for p, q, r in zip(*(net.parameters() for net in nets)):
        assert_close(p.W, q.W, 1e-9, f"{backend} {rule} {p.name} W, in one pass and in two")
        assert_close(p.R, q.R, 1e-9, f"{backend} {rule} {p.name} R, in one pass and in two")
        assert_close(p.W, r.W, 1e-9, f"{backend} {rule} {p.name} W, against the reference")
    for ours, reference in zip(nets[0].layers[0].activations(), nets[2].layers[0].activations()):
        assert_close(ours[1].h, reference[1].h, 1e-9, f"{backend} {rule}: the ramps' h")


@pytest.mark.parametrize("kind", ONE_BLOCK)
def test_probes_read_the_deferred_delta_and_a_direct_rule_takes_no_block(kind):
    reference, ours = _pair("urfb", ONE_BLOCK[kind])
    x, y = _batch((2, 9, 8))
    ours.train_step(x, y, lr=0.05, loss="hinge")
    reference.train_step(x, y, lr=0.05, loss="hinge")
    got, want = probe(ours, x, y), probe(reference, x, y)
    assert ours.layers[0].in_block
    for layer, values in want.items():
        for key, value in values.items():
            assert np.isclose(got[layer][key], value, rtol=1e-7, atol=1e-9), (layer, key, got[layer][key], value)
    for net in _pair("dfa", ONE_BLOCK[kind]):
        net.train_step(x, y, lr=0.05, loss="hinge")
        assert not net.layers[0].in_block  # the rule reads each ramp's h in the layers' own layout


@pytest.mark.parametrize("kind", ONE_BLOCK)
def test_a_forward_pass_of_the_layer_alone_leaves_the_block(kind):
    net = _pair("bp", ONE_BLOCK[kind])[1]
    x, y = _batch((2, 9, 8))
    net.train_step(x, y, lr=0.05, loss="hinge")
    assert net.layers[0].in_block
    net.layers[0].forward(x)
    assert not net.layers[0].in_block and net.layers[0].block_cache is None


def test_backends_without_the_block_run_their_own_functions_in_a_row():
    """The readable backend composes its own functions; its block equals the reference's."""
    readable = get_backend("readable")
    x, W, dy = block_input((2, 2, 3, 5, 6, 2, 2, 2), np.float64, 5, 0.5, untied=False)
    y, conv_cache, h, cache = readable.conv_ramp_maxpool_forward(x, W, 2, 2, 0.5)
    delta, G = readable.maxpool_ramp_conv_backward(dy, cache, 0.5)
    y_ref, _, h_ref, cache_ref = layers.conv_ramp_maxpool_forward(x, W, 2, 2, 0.5)
    delta_ref, G_ref = layers.maxpool_ramp_conv_backward(dy, cache_ref, 0.5)
    for what, ours, reference in [("y", y, y_ref), ("h", h, h_ref), ("δ", delta, delta_ref), ("G", G, G_ref)]:
        assert_close(ours, reference, 1e-9, what)


def test_backends_without_the_sum_and_pool_step_run_their_own_functions_in_a_row():
    """The readable backend forms σ(h) + a by its ramp_plus and pools it by its maxpool_forward: the reference's numbers."""
    readable = get_backend("readable")
    rng = np.random.default_rng(6)
    h, a = rng.normal(size=(2, 3, 7, 6)) * 4, rng.normal(size=(2, 3, 7, 6))
    y, cache = readable.ramp_plus_maxpool_forward(h, a, 3, 2, 0.25)
    y_ref, cache_ref = layers.ramp_plus_maxpool_forward(h, a, 3, 2, 0.25)
    assert_close(y, y_ref, 1e-12, "y")
    dy = rng.normal(size=y.shape)
    assert_close(readable.maxpool_backward(dy, cache), layers.maxpool_backward(dy, cache_ref), 1e-12, "e")
