"""``drop dense``: a dense layer and the dropout below it, one step each way.  # SPEC §2, §3

A network takes a dense layer that reads dropout's output (a flattening between them or
not) with the backends' ``dropout_dense_forward`` and ``dense_dropout_backward``. The tuned
tier has two paths (``plan.PATHS["dropout_dense_forward"]``): "blas" (the dense layer's gemm)
and "kept" (``hebbref.kernels.tuned_dense_kept``: sums over the kept inputs only, the input
error at kept entries only). Held here:

* the kept path's three products against the reference's dense products and dropout's
  backward pass, on shapes around its vector blocks and panels, with rows that keep
  nothing and kept inputs whose value is 0 (the error still goes down to them);
* its lists of kept inputs, image by image and panel by panel, against np.flatnonzero,
  with images that keep every input (each list's one write past its end stays its own);
* every candidate a measured plan may pick, through the numba backend's two functions;
* the backends' defaults, the reference's functions in a row;
* networks that take the step, against the reference backend and against themselves
  taking one layer at a time, under rules that send the error through R, through W and
  directly, with the dense layer first (nothing below to send to).
"""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hebbref
from hebbref import backends, layers
from hebbref.experiments.probes import probe
from hebbref.kernels import plan, tuned, tuned_dense_kept
from hebbref.network import Network

from comparisons import assert_close, tolerance

EQUATION = "dropout_dense_forward"


def _case(seed, n, d_in, d_out, p, dtype=np.float32, zeros=0.1):
    """x (dropout's output), its mask m, W, R and δ; a fraction ``zeros`` of the input below dropout is 0."""
    rng = np.random.default_rng(seed)
    below = rng.standard_normal((n, d_in)).astype(dtype)
    below[rng.random((n, d_in)) < zeros] = 0  # kept where m says so, and 0 all the same
    mask = layers.dropout_mask(rng, (n, d_in), p, dtype)
    x = below * mask
    W, R = (rng.standard_normal((d_out, d_in)).astype(dtype) for _ in range(2))
    delta = rng.standard_normal((n, d_out)).astype(dtype)
    return x, mask, W, R, delta


def _reference(x, mask, W, B, delta):
    h, cache = layers.dense_forward(x, W)
    e_below = None if B is None else layers.dropout_backward(layers.dense_input_error(delta, cache, B), mask)
    return h, e_below, layers.dense_weight_increment(delta, cache)


def _check(ours, reference, mask, what):
    h, e_below, G = ours
    h_ref, e_ref, G_ref = reference
    rtol = 10 * tolerance(h_ref.dtype)
    assert h.dtype == h_ref.dtype and G.dtype == G_ref.dtype, what
    assert_close(h, h_ref, rtol, f"{what}: h")
    assert_close(G, G_ref, rtol, f"{what}: G")
    if e_ref is None:
        assert e_below is None, what
        return
    assert e_below.dtype == e_ref.dtype, what
    assert_close(e_below, e_ref, rtol, f"{what}: e_below")
    assert np.all(e_below[mask == 0] == 0), f"{what}: an error sent to a dropped input"


def _kept(x, mask, W, B, delta, panel):
    h, cache = tuned_dense_kept.forward(x, mask, W, panel)
    e_below, G = tuned_dense_kept.backward(delta, cache, B, mask)
    return h, e_below, G


# output counts around the vector blocks (WIDTH outputs) and input counts around the panels and LANES
OUTPUTS = sorted({1, 3, tuned_dense_kept.WIDTH - 1, tuned_dense_kept.WIDTH, tuned_dense_kept.WIDTH + 5, 37})


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 9), d_in=st.integers(1, 70), d_out=st.sampled_from(OUTPUTS),
       p=st.sampled_from([0.0, 0.3, 0.8, 0.99]), panel=st.sampled_from([1, 4, 16, 256]),
       threads=st.sampled_from([1, 2]), seed=st.integers(0, 2**16))
def test_the_kept_path_equals_the_reference(n, d_in, d_out, p, panel, threads, seed):
    x, mask, W, R, delta = _case(seed, n, d_in, d_out, p)
    for name, B in (("R", R), ("W", W), ("nothing", None)):  # W: the forward pass's Wᵀ is read again
        with plan.on_threads(min(threads, plan.numba.config.NUMBA_NUM_THREADS)):
            ours = _kept(x, mask, W, B, delta, panel)
        _check(ours, _reference(x, mask, W, B, delta), mask, f"{n}x{d_in}->{d_out} p={p} panel={panel} through {name}")


def test_the_kept_path_around_its_blocks_and_panels():
    """Outputs filling one block of WIDTH, two and a part, inputs around LANES and a panel, on one thread and on all.

    Also run in the builds for other CPUs (``built_elsewhere``: 8 and 4 lanes, no FMA).
    """
    width, lanes = tuned_dense_kept.WIDTH, tuned_dense_kept.LANES
    for d_out in (width - 1, width, 2 * width + 3):
        for d_in, panel in ((3 * lanes + 1, 4), (70, 16), (300, 256)):
            x, mask, W, R, delta = _case(d_out + d_in, 7, d_in, d_out, 0.8)
            for threads, (name, B) in itertools.product(sorted({1, plan.numba.get_num_threads()}), (("R", R), ("W", W))):
                with plan.on_threads(threads):
                    ours = _kept(x, mask, W, B, delta, panel)
                _check(ours, _reference(x, mask, W, B, delta), mask,
                       f"{d_in}->{d_out} panel {panel} {threads} threads through {name}")


def test_a_kept_input_of_value_zero_still_gets_its_error():
    """The lists come from the mask, not from x: where dropout kept an input that was 0, the error goes down."""
    x, mask, W, R, delta = _case(0, 6, 50, 20, 0.5, zeros=0.5)
    kept_zero = (mask != 0) & (x == 0)
    assert kept_zero.any()
    _, e_below, _ = _kept(x, mask, W, R, delta, 16)
    assert np.all(e_below[kept_zero] != 0)
    _check((_kept(x, mask, W, R, delta, 16)), _reference(x, mask, W, R, delta), mask, "kept zeros")


def test_rows_that_keep_nothing_and_a_mask_of_zeros():
    x, mask, W, R, delta = _case(1, 5, 40, 30, 0.5)
    mask[[0, 3]] = 0
    x[[0, 3]] = 0
    _check(_kept(x, mask, W, R, delta, 8), _reference(x, mask, W, R, delta), mask, "empty rows")
    zeros = np.zeros_like(mask)
    _check(_kept(x * 0, zeros, W, R, delta, 8), _reference(x * 0, zeros, W, R, delta), zeros, "nothing kept")


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 9), d_in=st.integers(1, 70), p=st.sampled_from([0.0, 0.5, 0.9, 1.0]),
       panel=st.sampled_from([1, 3, 16, 256]), full=st.lists(st.integers(0, 8), max_size=3), seed=st.integers(0, 2**16))
def test_the_lists_hold_each_images_kept_inputs_by_panel(n, d_in, p, panel, full, seed):
    """``kept_lists`` against np.flatnonzero, image by image and panel by panel; some images keep every input.

    Each list writes one place past its kept entries: that place must be no other image's
    (the lists are written in parallel) and inside the arrays.
    """
    x, mask, _, _, _ = _case(seed, n, d_in, 1, min(p, 0.99))
    if p == 1.0:
        mask[:] = 0
    for r in full:
        mask[r % n] = 1  # an image that keeps every input
    inputs, values, at = tuned_dense_kept.kept_lists(mask, x, panel)
    panels = -(-d_in // panel)
    assert at.shape == (n, panels + 1)
    for r in range(n):
        kept = np.flatnonzero(mask[r])
        np.testing.assert_array_equal(inputs[at[r, 0]:at[r, panels]], kept)
        np.testing.assert_array_equal(values[at[r, 0]:at[r, panels]], x[r, kept])
        for c in range(panels):
            np.testing.assert_array_equal(inputs[at[r, c]:at[r, c + 1]], kept[(kept >= c * panel) & (kept < (c + 1) * panel)])
        past = at[r, panels]
        assert past < len(inputs)
        assert not any(at[o, 0] <= past < at[o, panels] for o in range(n) if o != r), f"image {r}'s last write"


def test_the_plan_takes_the_kept_path_for_float32_only_and_times_it_with_its_backward_pass():
    x, mask, W, _, _ = _case(2, 4, 30, 10, 0.8)
    assert plan.applies(EQUATION, "kept", (x, mask, W, 0.8))
    as64 = tuple(a.astype(np.float64) for a in (x, mask, W)) + (0.8,)
    assert not plan.applies(EQUATION, "kept", as64) and plan.applies(EQUATION, "blas", as64)
    assert {c.path for c in plan.candidates(EQUATION, as64).values()} == {"blas"}
    assert set(plan.DENSE_BACKWARD) == set(plan.PATHS[EQUATION])
    assert plan.default_plan(EQUATION, (x, mask, W, 0.8)).path == "blas"  # timing off: the gemm, as before
    # dropout's p is part of the plan's key: which path wins depends on the fraction kept
    assert plan.plan_key(EQUATION, (x, mask, W, 0.8)) != plan.plan_key(EQUATION, (x, mask, W, 0.3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_candidate_plan_computes_the_reference(dtype, monkeypatch):
    """Every path, panel and thread count a measured plan may pick, through the numba backend's two functions."""
    x, mask, W, R, delta = _case(3, 7, 45, 13, 0.8, dtype)
    reference = _reference(x, mask, W, R, delta)
    names = plan.candidates(EQUATION, (x, mask, W, 0.8))
    assert {c.path for c in names.values()} == ({"blas", "kept"} if dtype == np.float32 else {"blas"})
    for name, candidate in names.items():
        monkeypatch.setattr(tuned, "choose", lambda eq, *a, c=candidate: c if eq == EQUATION else plan.default_plan(eq, a))
        h, dense_cache, cache = tuned.dropout_dense_forward(x, mask, W, 0.8)
        assert cache[0] == candidate.path and cache[2] == candidate.threads
        assert dense_cache is x or np.shares_memory(dense_cache, x)  # the layer's own functions read x
        e_below, G = tuned.dense_dropout_backward(delta, cache, R, mask)
        _check((h, e_below, G), reference, mask, f"{name} {np.dtype(dtype).name}")


def test_a_measured_plan_picks_one_of_the_candidates(monkeypatch, tmp_path):
    monkeypatch.setenv(plan.CACHE_VARIABLE, str(tmp_path))
    monkeypatch.setenv(plan.TUNE_VARIABLE, "1")
    monkeypatch.setattr(plan, "_chosen", {})
    x, mask, W, _, _ = _case(4, 16, 300, 40, 0.8)
    chosen = plan.choose(EQUATION, x, mask, W, 0.8)
    assert chosen.measured_ms and set(chosen.measured_ms) == set(plan.candidates(EQUATION, (x, mask, W, 0.8)))
    assert chosen.path in ("blas", "kept")


def test_the_default_of_a_backend_is_its_own_functions_in_a_row():
    x, mask, W, R, delta = _case(5, 6, 20, 7, 0.5, np.float64)
    for backend in (backends.get_backend("numpy"), backends.get_backend("readable")):
        h, dense_cache, cache = backend.dropout_dense_forward(x, mask, W, 0.5)
        e_below, G = backend.dense_dropout_backward(delta, cache, R, mask)
        _check((h, e_below, G), _reference(x, mask, W, R, delta), mask, backend.name)
        assert backend.dense_dropout_backward(delta, cache, None, mask)[0] is None


# --- whole networks ------------------------------------------------------------------------------------------
NETWORKS = {  # (architecture, input shape): a flattening between dropout and dense, or none; two drop dense steps
    "flattened": ("conv3:4 ramp pool2 drop0.5 dense12 ramp drop0.3 out", (2, 6, 6)),
    "flat input": ("drop0.4 dense12 ramp drop0.5 out", (30,)),  # the first dense layer sends nothing down
}


def _forcing(monkeypatch, path):
    """The numba backend's ``drop dense`` by ``path`` on all threads, every other plan the default."""
    block = plan.BLOCKS[path][2][1] if path in plan.BLOCKS else None  # a small panel: several in a layer
    chosen = plan.Plan(path, plan.numba.get_num_threads(), block=block)
    monkeypatch.setattr(tuned, "choose", lambda eq, *a: chosen if eq == EQUATION else plan.default_plan(eq, a))


def _batch(input_shape, n=11, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n,) + input_shape) * 2).astype(np.float32), rng.integers(0, 4, size=n)


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("rule", ["bp", "urfb", "frfb", "dfa"])
@pytest.mark.parametrize("path", ["kept", "blas"])
def test_a_network_takes_the_step_and_learns_what_the_reference_learns(network, rule, path, monkeypatch):
    _forcing(monkeypatch, path)
    architecture, input_shape = NETWORKS[network]
    nets = [hebbref.build_network(architecture, input_shape, 4, rule=rule, backend=backend, seed=6, dtype="float32")
            for backend in ("numpy", "numba")]
    x, y = _batch(input_shape)
    for _ in range(3):
        for net in nets:
            net.train_step(x, y, lr=0.05, loss="hinge")
    for net in nets:
        assert all(d.dropout_below is not None for d in net.parameters() if isinstance(d, hebbref.modules.Dense))
    for p, q in zip(*(net.parameters() for net in nets)):
        assert_close(q.W, p.W, 1e-4, f"{network} {rule} {path} {p.name} W")
        assert_close(q.R, p.R, 1e-4, f"{network} {rule} {path} {p.name} R")
        assert_close(q.G, p.G, 1e-4, f"{network} {rule} {path} {p.name} G")


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_network_learns_through_the_step_what_it_learns_layer_by_layer(network, backend, monkeypatch):
    """The step's wiring in Network and Dense, which every backend shares, against the layers one at a time."""
    _forcing(monkeypatch, "kept")
    architecture, input_shape = NETWORKS[network]
    x, y = _batch(input_shape)
    nets = [hebbref.build_network(architecture, input_shape, 4, rule="urfb", backend=backend, seed=2, dtype="float32")
            for _ in "ab"]
    below = Network._dropout_below
    for net, taken in zip(nets, (True, False)):
        monkeypatch.setattr(Network, "_dropout_below", below if taken else (lambda self, i: None))
        for _ in range(2):
            net.train_step(x, y, lr=0.05, loss="hinge")
        dense = [d for d in net.parameters() if isinstance(d, hebbref.modules.Dense)]
        assert all((d.dropout_below is not None) == taken for d in dense)
    tight = 0 if backend == "numpy" else 1e-4  # the reference's step is its functions in a row: the same numbers
    for p, q in zip(*(net.parameters() for net in nets)):
        for what in ("W", "R", "delta"):
            assert_close(getattr(p, what), getattr(q, what), tight, f"{network} {backend} {p.name} {what}")


def test_evaluation_and_a_forward_pass_of_the_layer_alone_leave_the_step(monkeypatch):
    _forcing(monkeypatch, "kept")
    architecture, input_shape = NETWORKS["flattened"]
    net = hebbref.build_network(architecture, input_shape, 4, backend="numba", seed=1, dtype="float32")
    x, y = _batch(input_shape)
    net.train_step(x, y, lr=0.05)
    dense = net.parameters()[1]
    assert dense.dropout_below is not None
    net.forward(x)  # evaluation: no mask drawn
    assert dense.dropout_below is None and dense.dropped_cache is None
    net.train_step(x, y, lr=0.05)
    dense.forward(np.ones((3, dense.W.shape[1]), np.float32))
    assert dense.dropout_below is None


def test_probes_read_the_layer_after_the_step(monkeypatch):
    """A probe sends δ down through other matrices with the layer's own functions, which read x (the dense cache)."""
    _forcing(monkeypatch, "kept")
    architecture, input_shape = NETWORKS["flattened"]
    nets = [hebbref.build_network(architecture, input_shape, 4, rule="urfb", backend=backend, seed=3, dtype="float32")
            for backend in ("numpy", "numba")]
    x, y = _batch(input_shape)
    for net in nets:
        net.train_step(x, y, lr=0.05, loss="hinge")
    got, want = probe(nets[1], x, y), probe(nets[0], x, y)
    for layer_name, values in want.items():
        for key, value in values.items():
            assert np.isclose(got[layer_name][key], value, rtol=1e-3, atol=1e-5), (layer_name, key)
