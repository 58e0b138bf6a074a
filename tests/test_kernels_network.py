"""Whole training steps agree between the ``numpy`` and ``numba`` backends; backend choice.

The paper's two presets (``simple`` tied and untied, ``deep``) on small inputs, for the
three rules: after a few SGD steps every W and R, and every loss, is the same up to
rounding. Dropout masks come from the network's own generator, so both backends draw
the same masks.
"""
import numpy as np
import pytest

import hebbref
from hebbref import backends
from hebbref.errors import ConfigError

from comparisons import assert_close, tolerance
from strategies import random_batch

CASES = [  # (preset, untied, input shape)
    ("simple", False, (1, 9, 9)),
    ("simple", True, (1, 8, 8)),
    ("deep", False, (3, 12, 12)),
]


@pytest.mark.parametrize("rule", ["bp", "frfb", "urfb", "dfa"])
@pytest.mark.parametrize("net_name,untied,shape", CASES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_training_steps_agree_between_numpy_and_numba(net_name, untied, shape, rule, dtype):
    kwargs = dict(input_shape=shape, n_classes=4, rule=rule, untied=untied, seed=7, dtype=dtype)
    reference = hebbref.build_network(net_name, backend="numpy", **kwargs)
    compiled = hebbref.build_network(net_name, backend="numba", **kwargs)
    rng = np.random.default_rng(11)
    # a few steps compound the rounding differences: allow 100 × one operation's
    rtol = 100 * tolerance(dtype)
    for step in range(3):
        x, y = random_batch(rng, shape, 4, batch=6, dtype=dtype)
        loss_ref = reference.train_step(x, y, lr=0.2)
        loss_ours = compiled.train_step(x, y, lr=0.2)
        assert_close(loss_ours, loss_ref, rtol, f"{net_name} untied={untied} {rule}: loss at step {step}")
    for ours, ref in zip(compiled.parameters(), reference.parameters()):
        for which in ("W", "R"):
            assert_close(getattr(ours, which), getattr(ref, which), rtol,
                         f"{net_name} untied={untied} {rule} {dtype}: {ref.name}.{which} after 3 steps")


def test_numba_is_registered_and_is_the_default_with_or_without_a_gpu(monkeypatch):
    """cuda only on request: measured slower than numba on an H200 machine (BENCHMARKS.md)."""
    monkeypatch.delenv(backends.ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    assert {"numpy", "numba", "cuda"} <= set(backends.backend_names())
    assert backends.get_backend("numba").name == "numba"
    assert backends.default_backend_name() == "numba"
    net = hebbref.build_network("simple", (1, 8, 8), 3, backend=None)
    assert net.backend.name == "numba"


def test_environment_variable_overrides_the_default(monkeypatch):
    monkeypatch.setenv(backends.ENVIRONMENT_VARIABLE, "numpy")
    assert hebbref.build_network("simple", (1, 8, 8), 3).backend.name == "numpy"


def test_asking_for_cuda_without_a_gpu_is_a_clear_config_error(monkeypatch):
    from numba import cuda

    if cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    with pytest.raises(ConfigError, match="GPU"):
        hebbref.build_network("simple", (1, 8, 8), 3, backend="cuda")


def test_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown backend"):
        backends.get_backend("fortran")


def test_the_readable_backend_trains_like_the_reference():
    """The readable tier as a backend: one urfb step of a small untied-and-tied network, same weights."""
    kwargs = dict(input_shape=(1, 6, 6), n_classes=3, rule="urfb", seed=3)
    reference = hebbref.build_network("conv3:2 ramp pool2 lc2:2 ramp out", backend="numpy", **kwargs)
    loops = hebbref.build_network("conv3:2 ramp pool2 lc2:2 ramp out", backend="readable", **kwargs)
    x, y = random_batch(np.random.default_rng(1), (1, 6, 6), 3, batch=4)
    assert_close(loops.train_step(x, y, lr=0.2), reference.train_step(x, y, lr=0.2), 1e-9, "readable: loss")
    for ours, ref in zip(loops.parameters(), reference.parameters()):
        for which in ("W", "R"):
            assert_close(getattr(ours, which), getattr(ref, which), 1e-9, f"readable: {ref.name}.{which}")


def test_loading_numba_applies_the_runtime_settings_once():
    """The numba backend asks hebbref.runtime for its process settings, once per process."""
    from hebbref import runtime

    backends.get_backend("numba")
    changes = list(runtime.CHANGES)
    assert changes, "the tuned backend recorded what it changed (or why not)"
    backends.get_backend("numba")
    assert runtime.CHANGES == changes
