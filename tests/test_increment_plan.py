"""The conv weight increment's own plan, after a forward pass whose cache is its input x.  # SPEC §3

``plan.increment_after``: after a forward pass by "winograd", "winograd-4x4", "rows" or
"channels" (``plan.KEEPS_INPUT``) the increment G = Σ δ xᵀ is planned on (δ, x, k) among the
paths of ``plan.PATHS["conv_weight_increment"]``; after "direct" or "shifted" it follows
the forward pass's path. Every pair of such a forward path and increment path gives the
reference's G, on odd and even kernels; the candidates are the paths that apply to the
kernel width and dtype; the numba backend asks for the plan with the forward pass's
input; and a plan measured while the forward pass's plan is measured is keyed by, and
times its candidates on, all of Numba's threads.
"""
import json

import numba
import numpy as np
import pytest

from hebbref import layers
from hebbref.kernels import plan, tuned

from comparisons import tolerance

INCREMENT = "conv_weight_increment"
# (N, C_in, C_out, H, W, k): even and odd kernels, an image narrower than the channel path's span
SHAPES = [(3, 4, 5, 6, 7, 2), (2, 3, 6, 5, 5, 3), (2, 2, 3, 6, 4, 5)]


def case(shape, dtype=np.float32, seed=0):
    N, C_in, C_out, H, W, k = shape
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(N, C_in, H, W)).astype(dtype), rng.normal(size=(C_out, C_in, k, k)).astype(dtype),
            rng.normal(size=(N, C_out, H, W)).astype(dtype))


def reference(x, W, delta):
    return layers.conv_weight_increment(delta.astype(np.float64), layers.conv_forward(x.astype(np.float64), W)[1])


def applying(equation, arguments):
    return [path for path in plan.PATHS[equation] if plan.applies(equation, path, arguments)]


@pytest.mark.parametrize("shape", SHAPES)
def test_every_increment_path_after_every_forward_path_that_keeps_x_gives_the_reference(shape):
    x, W, delta = case(shape)
    G_ref = reference(x, W, delta)
    scale = np.abs(G_ref).max()
    k = W.shape[-1]
    forward_paths = [path for path in applying("conv_forward", (x, W)) if path in plan.KEEPS_INPUT]
    increment_paths = applying(INCREMENT, (delta, x, k))
    assert "channels" in forward_paths and "channels" in increment_paths
    every = numba.get_num_threads()
    for forward_path in forward_paths:
        _, (tag, cache) = plan.PATHS["conv_forward"][forward_path](x, W)
        x_kept, k_kept = cache[:2]  # (x, k, ...)
        np.testing.assert_array_equal(x_kept, x)
        assert k_kept == k
        for path in increment_paths:
            for block in plan.BLOCKS[path][2]:
                chosen = plan.Plan(path, every, block=block)
                G = plan.increment_after(tag, cache, every, delta, lambda equation, *arguments: chosen)
                np.testing.assert_allclose(G, G_ref, rtol=10 * tolerance(np.float32), atol=1e-4 * scale,
                                           err_msg=f"forward {forward_path}, increment {path}:{block}")


def test_after_the_direct_loops_or_the_shifted_products_the_increment_follows_their_path():
    x, W, delta = case(SHAPES[1])
    G_ref = reference(x, W, delta)
    for forward_path in ("direct", "shifted"):
        _, (tag, cache) = plan.PATHS["conv_forward"][forward_path](x, W)
        G = plan.increment_after(tag, cache, numba.get_num_threads(), delta,  # the forward pass's threads
                                 lambda *a: pytest.fail("a plan asked for after " + tag))
        np.testing.assert_allclose(G, G_ref, rtol=10 * tolerance(np.float32), atol=1e-4 * np.abs(G_ref).max())


@pytest.mark.parametrize("k, dtype, paths", [
    (3, np.float32, ["channels", "rows", "winograd", "winograd-4x4"]),
    (2, np.float32, ["channels", "rows", "winograd"]),
    (5, np.float32, ["channels", "rows"]),
    (3, np.float64, ["winograd", "winograd-4x4"]),  # the register paths compute in float32 only
])
def test_the_candidates_are_the_paths_that_apply_and_the_default_is_the_first(k, dtype, paths):
    delta, x = np.zeros((2, 3, 6, 6), dtype), np.zeros((2, 4, 6, 6), dtype)
    assert sorted({c.path for c in plan.candidates(INCREMENT, (delta, x, k)).values()}) == sorted(paths)
    assert plan.default_plan(INCREMENT, (delta, x, k)).path == paths[0]


def test_the_numba_backend_plans_the_increment_on_the_forward_pass_input(monkeypatch):
    x, W, delta = case(SHAPES[0])
    asked = []
    every = numba.get_num_threads()

    def choose(equation, *arguments):
        if equation == "conv_forward":
            return plan.Plan("channels", every, block=8)
        if equation == INCREMENT:
            asked.append(arguments)
            return plan.Plan("rows", 1, block=4)
        return plan.default_plan(equation, arguments)

    monkeypatch.setattr(tuned, "choose", choose)
    _, cache = tuned.conv_forward(x, W)
    G = tuned.conv_weight_increment(delta, cache)
    G_ref = reference(x, W, delta)
    np.testing.assert_allclose(G, G_ref, rtol=10 * tolerance(np.float32), atol=1e-4 * np.abs(G_ref).max())
    (d, x_asked, k), = asked
    assert x_asked is cache[1][0] and k == W.shape[-1]
    np.testing.assert_array_equal(x_asked, x)
    np.testing.assert_array_equal(d, delta)


def test_a_plan_made_while_the_forward_pass_is_measured_is_made_on_all_threads(monkeypatch, tmp_path):
    """The increment's plan is asked for before the forward candidates are timed, some of them on one thread."""
    monkeypatch.setenv(plan.TUNE_VARIABLE, "1")
    monkeypatch.setenv(plan.CACHE_VARIABLE, str(tmp_path))
    threads = [2]  # Numba's thread count as the plan sees it: two to time, whatever the machine
    monkeypatch.setattr(numba, "get_num_threads", lambda: threads[-1])
    monkeypatch.setattr(numba, "set_num_threads", threads.append)
    plan.forget()
    try:
        x, W, _ = case(SHAPES[1])
        plan.choose("conv_forward", x, W)
        stored = json.loads((tmp_path / "plans.json").read_text())
        assert list(stored) == [plan.machine()] and plan.machine().endswith(", 2 threads")
        increments = [entry for key, entry in stored[plan.machine()].items() if key.startswith(INCREMENT)]
        assert len(increments) == 1
        assert {name.rsplit("/", 1)[1] for name in increments[0]["measured_ms"]} == {"1", "2"}
    finally:
        plan.forget()
