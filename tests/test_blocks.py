"""Both one-step blocks, a layer, its ramp and the pool above, against the reference and in networks.  # SPEC §2, §3, §5

``conv ramp pool`` (``simple``) and ``lc ramp pool`` (untied ``simple``) are each taken
by a network as one backend call forward and one backward (``KINDS``). What holds for
either block is here, once for both:

* every path of the tuned tier (``plan.PATHS``) against the NumPy reference's three
  steps, up to rounding (in float64, where no rounding moves a window's winner), and
  the winners at ties and kinks exactly;
* the reference block against its own three functions in a row, and the readable
  backend's against the reference;
* every candidate of a measured plan through the numba backend's two functions;
* whole networks that take the block, held to the reference backend and to themselves
  taking one layer at a time.

Each block's own kernels, bit for bit against the tuned tier's steps in a row, are in
tests/test_conv_block.py and tests/test_untied_block.py.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hebbref
from hebbref import activations, layers
from hebbref.backends import get_backend
from hebbref.experiments.probes import probe
from hebbref.kernels import plan, tuned

from comparisons import assert_close, tolerance
from block_checks import block_cases, block_input, formed, network_batch, run_path
from strategies import SEEDS

# each block by the name of its layer's functions in hebbref.layers and in the backends
KINDS = {"conv": "conv", "lc": "locally_connected"}


def equation(kind):
    """The plan's equation of the block, the name of its forward function."""
    return f"{KINDS[kind]}_ramp_maxpool_forward"


def path_dtype(name):
    """float64, or the dtype a path computes in where it takes one only (``plan.DTYPES``)."""
    return plan.DTYPES.get(name, (np.float64,))[0]


def block(source, kind):
    """(forward, backward) of the block in ``source``: hebbref.layers or a backend."""
    return getattr(source, equation(kind)), getattr(source, f"maxpool_ramp_{KINDS[kind]}_backward")


def layer(source, kind, what):
    """The block's layer's own ``what`` ("forward", "input_error", "weight_increment") in ``source``."""
    return getattr(source, f"{KINDS[kind]}_{what}")


PATHS = [(kind, name) for kind in KINDS for name in plan.PATHS[equation(kind)]]


@pytest.mark.parametrize("kind, name", PATHS)
@settings(max_examples=20, deadline=None)
@given(case=block_cases(), seed=SEEDS, slope=st.sampled_from([0.5, 1.0]))
def test_every_block_path_equals_the_reference_three_steps(kind, name, case, seed, slope):
    """Against hebbref.layers, up to rounding: float64, where rounding moves no winner (float32 for a path that
    computes in float32 only, ``plan.DTYPES``)."""
    dtype = path_dtype(name)
    x, W, dy = block_input(case, dtype, seed, slope, untied=kind == "lc")
    y, layer_cache, _, h, delta, G = run_path(equation(kind), name, None, x, W, case[-2], case[-1], slope, dy)
    forward, backward = block(layers, kind)
    y_ref, layer_ref, h_ref, cache_ref = forward(x, W, case[-2], case[-1], slope)
    delta_ref, G_ref = backward(dy, cache_ref, slope)
    rtol = 10 * tolerance(dtype)
    for what, ours, reference in [("y", y, y_ref), ("h", h, h_ref), ("δ", delta, delta_ref), ("G", G, G_ref)]:
        assert ours.dtype == dtype, f"{kind} {name} {what}: {ours.dtype}"
        assert_close(ours, reference, rtol, f"{kind} {name} {what}, case {case}")
    # the layer's cache serves its own input error, as after its own forward pass
    B = np.random.default_rng(seed).normal(size=W.shape).astype(dtype)
    assert_close(layer(tuned, kind, "input_error")(delta, layer_cache, B),
                 layer(layers, kind, "input_error")(delta_ref, layer_ref, B), rtol, f"{kind} {name} input error")


@pytest.mark.parametrize("kind", KINDS)
def test_the_winners_are_those_of_the_reference_at_ties_and_at_the_kinks(kind):
    """σ(h) ties at ±1 where the ramp saturates (the first cell in row-major order wins); at |s·h| = 1, σ' = s."""
    slope = 0.5
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, :2] = [1 / slope, 3 / slope]  # window (0, 0): the kink, then a saturated cell, σ = 1 at both
    x[0, 0, 2:, 2:] = [[-5 / slope, -1 / slope], [-7 / slope, -1 / slope]]  # window (1, 1): σ = -1 at all four
    W = np.ones((2, 1, 1, 1))  # h = x in the first plane
    W[1] = -1  # and -x in the second
    if kind == "lc":
        W = np.ascontiguousarray(np.broadcast_to(W, (4, 4) + W.shape))  # the same filters at every location
    dy = np.arange(1.0, 9.0).reshape(1, 2, 2, 2)
    forward, backward = block(layers, kind)
    y_ref, _, _, cache_ref = forward(x, W, 2, 2, slope)
    delta_ref, G_ref = backward(dy, cache_ref, slope)
    for name in plan.PATHS[equation(kind)]:  # every number here is exact in float32 too
        dtype = path_dtype(name)
        y, _, cache, h, delta, G = run_path(equation(kind), name, None, x.astype(dtype), W.astype(dtype), 2, 2, slope,
                                            dy.astype(dtype))
        np.testing.assert_array_equal(y, y_ref, err_msg=name)
        np.testing.assert_array_equal(delta, delta_ref, err_msg=name)
        np.testing.assert_array_equal(G, G_ref, err_msg=name)
    # the first of the tied cells wins: the kink (σ' = s) in window (0, 0), a saturated cell (σ' = 0) in (1, 1)
    assert delta_ref[0, 0, 0, 0] == slope * dy[0, 0, 0, 0] and delta_ref[0, 0, 0, 1] == 0
    assert not delta_ref[0, :, 2:, 2:].any()


@pytest.mark.parametrize("kind", KINDS)
def test_the_reference_block_is_its_three_functions_in_a_row(kind):
    x, W, dy = block_input((3, 2, 3, 6, 5, 3, 3, 2), np.float64, 1, 0.5, untied=kind == "lc")
    forward, backward = block(layers, kind)
    y, layer_cache, h, cache = forward(x, W, 3, 2, 0.5)
    h_steps, layer_steps = layer(layers, kind, "forward")(x, W)
    y_steps, pool_cache = layers.maxpool_forward(activations.ramp(h_steps, 0.5), 3, 2)
    delta, G = backward(dy, cache, 0.5)
    delta_steps = activations.ramp_backward(layers.maxpool_backward(dy, pool_cache), h_steps, 0.5)
    np.testing.assert_array_equal(h, h_steps)
    np.testing.assert_array_equal(y, y_steps)
    np.testing.assert_array_equal(delta, delta_steps)
    np.testing.assert_array_equal(G, layer(layers, kind, "weight_increment")(delta_steps, layer_steps))


@pytest.mark.parametrize("kind", KINDS)
def test_backends_without_the_block_run_their_own_functions_in_a_row(kind):
    """The readable backend composes its own functions; its block equals the reference's."""
    x, W, dy = block_input((2, 2, 3, 5, 6, 2, 2, 2), np.float64, 5, 0.5, untied=kind == "lc")
    forward, backward = block(get_backend("readable"), kind)
    y, _, h, cache = forward(x, W, 2, 2, 0.5)
    delta, G = backward(dy, cache, 0.5)
    forward, backward = block(layers, kind)
    y_ref, _, h_ref, cache_ref = forward(x, W, 2, 2, 0.5)
    delta_ref, G_ref = backward(dy, cache_ref, 0.5)
    for what, ours, reference in [("y", y, y_ref), ("h", h, h_ref), ("δ", delta, delta_ref), ("G", G, G_ref)]:
        assert_close(ours, reference, 1e-9, f"{kind} {what}")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_candidate_plan_of_the_block_computes_the_reference(kind, dtype, monkeypatch):
    """Every path, block size and thread count a measured plan may pick, through the numba backend's two functions."""
    slope = 0.25  # not the default: each function must pass its slope on
    # the untied block's tiles of images: sizes below this batch of 9, so that tiles end within it
    monkeypatch.setitem(plan.BLOCKS, "images-last", ("images per tile", "tile_size", (1, 4, 16)))
    x, W, dy = block_input((9, 2, 3, 7, 6, 3, 3, 2), dtype, 3, slope, untied=kind == "lc")
    forward, backward = block(layers, kind)
    y_ref, _, h_ref, cache_ref = forward(x, W, 3, 2, slope)
    delta_ref, G_ref = backward(dy, cache_ref, slope)
    rtol = 10 * tolerance(dtype)
    names = plan.candidates(equation(kind))
    assert {c.path for c in names.values()} == set(plan.PATHS[equation(kind)])
    assert all(c.threads == plan.numba.get_num_threads() for c in names.values() if c.path == "in-turn")
    forward, backward = block(tuned, kind)
    for name, candidate in names.items():
        if not plan.applies(equation(kind), candidate.path, (x, W, 3, 2, slope)):
            continue  # a path that computes in float32 only, in float64
        monkeypatch.setattr(tuned, "choose", lambda eq, *arguments, c=candidate: c if eq == equation(kind)
                            else plan.default_plan(eq, arguments))
        y, _, h, cache = forward(x, W, 3, 2, slope)
        assert cache[0] == candidate.path and cache[2] == candidate.threads
        delta, G = backward(dy, cache, slope)
        for what, ours, reference in [("y", y, y_ref), ("h", formed(h), h_ref), ("δ", formed(delta), delta_ref)]:
            assert_close(ours, reference, rtol, f"{kind} {name} {what}")
        assert_close(G, G_ref, rtol * 10, f"{kind} {name} G")


# --- whole networks: the network code that takes either block is the same ---------------------------------
ONE_BLOCK = {"conv": "conv3:5 ramp pool3s2 dense7 ramp out", "lc": "lc3:5 ramp pool3s2 dense7 ramp out"}
# a block above another weighted layer, and where it lies
BLOCK_ABOVE = {"conv": ("conv3:3 ramp pool2s1 conv2:4 ramp pool2s2 dense6 ramp out", 3),
               "lc": ("conv3:3 ramp lc3:4 ramp pool2s2 dense6 ramp out", 2)}


def _pair(rule, architecture, input_shape=(2, 9, 8), seed=4):
    """The same network on the reference backend and on the numba backend."""
    return [hebbref.build_network(architecture, input_shape, 4, rule=rule, backend=backend, seed=seed)
            for backend in ("numpy", "numba")]


@pytest.mark.parametrize("kind", ONE_BLOCK)
@pytest.mark.parametrize("rule", ["bp", "urfb", "frfb", "brsf"])
def test_a_network_takes_the_block_as_one_step_and_learns_what_the_reference_learns(kind, rule):
    reference, ours = _pair(rule, ONE_BLOCK[kind])
    x, y = network_batch((2, 9, 8))
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
    x, y = network_batch((2, 8, 8))
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
    x, y = network_batch((2, 8, 8))
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


@pytest.mark.parametrize("kind", ONE_BLOCK)
def test_probes_read_the_deferred_delta_and_a_direct_rule_takes_no_block(kind):
    reference, ours = _pair("urfb", ONE_BLOCK[kind])
    x, y = network_batch((2, 9, 8))
    ours.train_step(x, y, lr=0.05, loss="hinge")
    reference.train_step(x, y, lr=0.05, loss="hinge")
    got, want = probe(ours, x, y), probe(reference, x, y)
    assert ours.layers[0].in_block
    for layer_name, values in want.items():
        for key, value in values.items():
            assert np.isclose(got[layer_name][key], value, rtol=1e-7, atol=1e-9), (layer_name, key, got[layer_name][key])
    for net in _pair("dfa", ONE_BLOCK[kind]):
        net.train_step(x, y, lr=0.05, loss="hinge")
        assert not net.layers[0].in_block  # the rule reads each ramp's h in the layers' own layout


@pytest.mark.parametrize("kind", ONE_BLOCK)
def test_a_forward_pass_of_the_layer_alone_leaves_the_block(kind):
    net = _pair("bp", ONE_BLOCK[kind])[1]
    x, y = network_batch((2, 9, 8))
    net.train_step(x, y, lr=0.05, loss="hinge")
    assert net.layers[0].in_block
    net.layers[0].forward(x)
    assert not net.layers[0].in_block and net.layers[0].block_cache is None
