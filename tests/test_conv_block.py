"""A tied conv layer, its ramp and the pool above, as one step each way: its own kernels.  # SPEC §2, §3

``conv ramp pool`` (``simple``) is taken by a network as one backend call forward
(``conv_ramp_maxpool_forward``) and one backward (``maxpool_ramp_conv_backward``).
Its ``direct`` path (``hebbref/kernels/tuned_conv_block.py``) is held to the tuned
tier's own steps in a row (the direct loops, the pool, its backward pass and the direct
increment), bit for bit: the same h, pool output and winners, and the same δ and G (up
to the sign of a zero). Then ``deep``'s sum blocks and the pool above them, in one pass
and in two.

What holds for this block and the untied one alike (every path against the NumPy
reference, whole networks that take them) is in tests/test_blocks.py.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hebbref
from hebbref import activations, layers
from hebbref.backends import get_backend
from hebbref.kernels import plan, tuned, tuned_conv_channels, tuned_conv_direct

from comparisons import assert_close
from block_checks import bits, block_cases, block_input, network_batch, run_path
from strategies import SEEDS

EQUATION = "conv_ramp_maxpool_forward"


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
    assert_equals_steps(case, slope, (y, cache, h, delta, G), (h_steps, y_steps, pool_cache, delta_steps, G_steps))


@pytest.mark.parametrize("span", [6, 8])
@settings(max_examples=30, deadline=None)
@given(case=block_cases(), seed=SEEDS, slope=st.sampled_from([0.5, 1.0, 0.25]))
def test_the_channel_path_equals_the_channel_steps_in_a_row_bit_for_bit(span, case, seed, slope):
    """The channel path's conv forward pass, the pool of σ(h), its backward pass and the channel path's increment,
    in a row: h, y and the winners to the bit, δ and G equal (a zero's sign aside). float32, the path's dtype."""
    check_channel_path(span, case, seed, slope)


@pytest.mark.parametrize("span", [6, 8])
@pytest.mark.parametrize("case", [(2, 2, 2 * tuned_conv_channels.BLOCK + 3, 7, 6, 3, 3, 2),
                                  (3, 1, tuned_conv_channels.BLOCK, 9, 9, 5, 2, 2)])
def test_the_channel_path_takes_every_block_of_channels(span, case):
    """More output channels than a block (``BLOCK``, two vectors), a last block partly past them, and exactly one."""
    check_channel_path(span, case, 5, 0.5)


def check_channel_path(span, case, seed, slope):
    """The channel path at ``span`` against the channel steps in a row (``assert_equals_steps``), and its conv cache."""
    n, c_in, c_out, hh, w, k, pool_k, pool_t = case
    x, W, dy = block_input(case, np.float32, seed, slope, untied=False)
    y, conv_cache, cache, h, delta, G = run_path(EQUATION, "channels", span, x, W, pool_k, pool_t, slope, dy)
    h_steps, x_steps = tuned_conv_channels.forward(x, W, span)
    y_steps, pool_cache = plan.PATHS["ramp_maxpool_forward"]["ramp-then-loops"](h_steps, pool_k, pool_t, slope)
    delta_steps = tuned.maxpool_ramp_backward(dy, pool_cache, h_steps, slope)
    G_steps = tuned_conv_channels.weight_increment(delta_steps, x_steps)
    assert conv_cache[0] == "channels" and conv_cache[1][1:] == (k, span)
    np.testing.assert_array_equal(conv_cache[1][0], x)
    assert_equals_steps(case, slope, (y, cache, h, delta, G), (h_steps, y_steps, pool_cache, delta_steps, G_steps))


def assert_equals_steps(case, slope, ours, steps):
    """A block path's (y, cache, h, δ, G) against the steps in a row (h, y and the pool's cache, δ, G): h and y to
    the bit, the same winners, marked -1 - their index where the ramp saturates, δ and G equal (-0 == +0)."""
    n, c_out = case[0], case[2]
    y, cache, h, delta, G = ours
    h_steps, y_steps, pool_cache, delta_steps, G_steps = steps
    for name, a, b in [("h", h, h_steps), ("y", y, y_steps)]:
        assert a.dtype == b.dtype and a.shape == b.shape, f"{name}: {a.dtype}{a.shape}"
        np.testing.assert_array_equal(bits(a), bits(b), err_msg=f"{name}, case {case}")
    # the same cells win; a winner where the ramp saturates is marked -1 - its index
    marks, (winner_steps, _) = cache.winner, pool_cache
    np.testing.assert_array_equal(np.where(marks < 0, -1 - marks, marks), winner_steps)
    at_winner = np.take_along_axis(h_steps.reshape(n, c_out, -1), winner_steps.reshape(n, c_out, -1), axis=2)
    np.testing.assert_array_equal(marks < 0, activations.ramp_derivative(at_winner, slope).reshape(marks.shape) == 0)
    for name, a, b in [("δ", delta, delta_steps), ("G", G, G_steps)]:
        assert a.dtype == b.dtype and a.shape == b.shape, f"{name}: {a.dtype}{a.shape}"
        np.testing.assert_array_equal(a, b, err_msg=f"{name}, case {case}")  # -0 == +0


def test_the_block_paths_have_their_block_sizes_among_their_candidates():
    """The direct path's terms per pass, 4 and 8; the channel path's positions per pass, 6 and 8 (float32 only)."""
    blocks = {path: {c.block for c in plan.candidates(EQUATION).values() if c.path == path}
              for path in ("direct", "channels")}
    assert blocks == {"direct": {4, 8}, "channels": {6, 8}}
    x, W = np.zeros((2, 1, 6, 6)), np.zeros((3, 1, 3, 3))
    assert plan.applies(EQUATION, "channels", (x.astype(np.float32), W.astype(np.float32), 3, 2, 0.5))
    assert not plan.applies(EQUATION, "channels", (x, W, 3, 2, 0.5))


def test_the_default_plan_takes_the_direct_block_where_the_direct_loops_are_the_conv_default():
    x = np.zeros((500, 1, 28, 28), dtype=np.float32)
    assert plan.default_plan(EQUATION, (x, np.zeros((32, 1, 5, 5), np.float32), 3, 2, 0.5)).path == "direct"
    assert plan.default_plan("conv_forward", (x, np.zeros((32, 1, 5, 5), np.float32))).path == "direct"
    x = np.zeros((500, 16, 11, 11), dtype=np.float32)
    assert plan.default_plan(EQUATION, (x, np.zeros((64, 16, 3, 3), np.float32), 2, 2, 0.5)).path == "in-turn"
    assert plan.default_plan("conv_forward", (x, np.zeros((64, 16, 3, 3), np.float32))).path == "shifted"


SUM_AND_POOL = "sum[conv3:4,conv3:4] pool3s2 sum[conv2:3,conv2:3] pool2s2 dense5 ramp out"


def _trained_in_one_pass_and_in_two(method, in_two, rule, backend, monkeypatch):
    """Three ``SUM_AND_POOL`` networks after two steps: ``backend``'s with ``SumBlock.<method>`` (counted), the same
    backend's with ``in_two`` in its place, and the reference's with ``method``. -> (networks, calls of ``method``)."""
    x, y = network_batch((2, 9, 8))
    nets = [hebbref.build_network(SUM_AND_POOL, (2, 9, 8), 4, rule=rule, backend=b, seed=5, slope=0.25)
            for b in (backend, backend, "numpy")]  # a slope that is not the default: each call must pass its own on
    fused = getattr(hebbref.modules.SumBlock, method)
    calls = []

    def counted(self, *arguments, **keywords):
        calls.append(self)
        return fused(self, *arguments, **keywords)

    for net, one_pass in zip(nets, (True, False, True)):
        monkeypatch.setattr(hebbref.modules.SumBlock, method, counted if one_pass else in_two)
        for _ in range(2):
            net.train_step(x, y, lr=0.05, loss="hinge")
    return nets, calls


def _assert_alike(nets, fields, against_reference, label):
    """The ``fields`` of every layer alike in the first two networks, and ``against_reference`` in the first and third."""
    for p, q, r in zip(*(net.parameters() for net in nets)):
        for field in fields:
            assert_close(getattr(p, field), getattr(q, field), 1e-9, f"{label} {p.name} {field}, in one pass and in two")
        assert_close(getattr(p, against_reference), getattr(r, against_reference), 1e-9,
                     f"{label} {p.name} {against_reference}, against the reference")


@pytest.mark.parametrize("rule", ["bp", "urfb", "dfa"])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_sum_block_and_the_pool_above_learn_in_one_pass_what_they_learn_in_two(rule, backend, monkeypatch):
    """``sum[...] pool``: the block's output formed as the pool reads it (``SumBlock.forward_with_pool``), against the
    two layers' own forward passes; and the numba backend against the reference."""
    def in_two(self, x, pool, train=False):
        return pool.forward(self.forward(x, train), train)

    nets, calls = _trained_in_one_pass_and_in_two("forward_with_pool", in_two, rule, backend, monkeypatch)
    assert len(calls) == 2 * 2 * 2  # two blocks, two steps, two networks
    _assert_alike(nets, ("W", "R"), "W", f"{backend} {rule}")
    for ours, reference in zip(nets[0].layers[0].activations(), nets[2].layers[0].activations()):
        assert_close(ours[1].h, reference[1].h, 1e-9, f"{backend} {rule}: the ramps' h")


@pytest.mark.parametrize("rule", ["bp", "urfb"])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_the_error_through_a_pool_into_a_sum_block_is_the_two_layers_own_backward_passes(rule, backend, monkeypatch):
    """``sum[...] pool`` backward (``SumBlock.backward_from_pool``: the pool's error taken into both ramps' steps)
    against the pool's backward pass and then the block's; and the numba backend against the reference.

    Every layer's last increment G, and W and R, after two steps in one pass and in two.
    """
    def in_two(self, e, pool):
        return self.backward(pool.backward(e))

    nets, calls = _trained_in_one_pass_and_in_two("backward_from_pool", in_two, rule, backend, monkeypatch)
    assert len(calls) == 2 * 2 * 2  # two blocks, two steps, two networks
    _assert_alike(nets, ("G", "W", "R"), "G", f"{backend} {rule}")


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
    e1 = rng.normal(size=h.shape)
    assert_close(readable.maxpool_ramp_backward_of_sum(e1, dy, cache, h, 0.25),
                 layers.maxpool_ramp_backward_of_sum(e1, dy, cache_ref, h, 0.25), 1e-12, "δ at the first ramp")
