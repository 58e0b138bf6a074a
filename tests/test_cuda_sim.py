"""The numba.cuda kernels equal the NumPy reference, under the CUDA simulator.  # SPEC §2, §3, §5

The simulator must be switched on before numba.cuda is first imported, so this file
runs in a pytest process of its own:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/test_cuda_sim.py

In the ordinary ``pytest`` run (no NUMBA_ENABLE_CUDASIM) it is skipped. The simulator
runs every GPU thread in Python, so the shapes are tiny.
"""
import os

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("CUDA kernels are tested in their own process: NUMBA_ENABLE_CUDASIM=1 pytest "
                "tests/test_cuda_sim.py", allow_module_level=True)

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import hebbref  # noqa: E402
from hebbref import layers  # noqa: E402
from hebbref.kernels import cuda_conv, cuda_locally_connected  # noqa: E402

from comparisons import assert_close, tolerance  # noqa: E402
from kernel_checks import check_locally_connected_module  # noqa: E402
from strategies import SEEDS, conv_shapes, random_batch  # noqa: E402

pytestmark = pytest.mark.cudasim
DTYPES = st.sampled_from([np.float32, np.float64])
TINY = conv_shapes(max_batch=2, max_channels=2, max_size=4, max_kernel=3)


def check(ours, reference, what):
    assert ours.dtype == reference.dtype, f"{what}: dtype {ours.dtype} vs reference {reference.dtype}"
    assert_close(ours, reference, 10 * tolerance(reference.dtype), what)


@settings(max_examples=10, deadline=None)
@given(shape=TINY, dtype=DTYPES, seed=SEEDS)
def test_cuda_conv_kernels_equal_the_reference(shape, dtype, seed):
    n, c_in, c_out, h, w, k = shape
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c_in, h, w)).astype(dtype)
    W, R = (rng.normal(size=(c_out, c_in, k, k)).astype(dtype) for _ in range(2))
    delta = rng.normal(size=(n, c_out, h, w)).astype(dtype)
    h_ours, cache = cuda_conv.conv_forward(x, W)
    h_ref, cache_ref = layers.conv_forward(x, W)
    check(h_ours, h_ref, f"cuda conv_forward {shape}")
    for name, B in (("W", W), ("R", R)):
        check(cuda_conv.conv_input_error(delta, cache, B), layers.conv_input_error(delta, cache_ref, B),
              f"cuda conv_input_error through {name} {shape}")
    check(cuda_conv.conv_weight_increment(delta, cache), layers.conv_weight_increment(delta, cache_ref),
          f"cuda conv_weight_increment {shape}")


@settings(max_examples=10, deadline=None)
@given(shape=TINY, dtype=DTYPES, seed=SEEDS)
def test_cuda_locally_connected_kernels_equal_the_reference(shape, dtype, seed):
    check_locally_connected_module(cuda_locally_connected, shape, dtype, seed,
                                   10 * tolerance(np.dtype(dtype)), "cuda ")


@pytest.mark.parametrize("net", ["conv3:2 ramp pool2 dense3 ramp out", "lc2:2 ramp pool2s1 drop0.5 out"])
@pytest.mark.parametrize("rule", ["bp", "urfb"])
def test_training_steps_agree_between_numpy_and_cuda(net, rule):
    kwargs = dict(input_shape=(1, 4, 4), n_classes=3, rule=rule, seed=2)
    reference = hebbref.build_network(net, backend="numpy", **kwargs)
    simulated = hebbref.build_network(net, backend="cuda", **kwargs)
    assert simulated.backend.name == "cuda"
    rng = np.random.default_rng(5)
    for step in range(2):
        x, y = random_batch(rng, (1, 4, 4), 3, batch=2)
        assert_close(simulated.train_step(x, y, lr=0.3), reference.train_step(x, y, lr=0.3), 1e-9,
                     f"{net} {rule}: loss at step {step}")
    for ours, ref in zip(simulated.parameters(), reference.parameters()):
        for which in ("W", "R"):
            assert_close(getattr(ours, which), getattr(ref, which), 1e-9, f"{net} {rule}: {ref.name}.{which}")


def test_the_simulator_is_never_the_default_backend(monkeypatch):
    monkeypatch.delenv(hebbref.backends.ENVIRONMENT_VARIABLE, raising=False)
    assert hebbref.backends.default_backend_name() != "cuda"


@pytest.mark.parametrize("net", ["conv2:2 ramp conv3:2 ramp out", "conv1:1 ramp lc2:2 ramp out",
                                 "conv1:1 ramp sum[conv2:1,lc3:1] out"])
@pytest.mark.parametrize("rule", ["bp", "frfb", "usf", "frsf", "dfa"])
def test_the_cuda_backend_is_wired_as_the_rule_says(net, rule):
    """The wiring property of tests/test_rules_wiring.py, on the simulated GPU kernels."""
    from test_rules_wiring import check_wiring

    check_wiring(net, (1, 3, 3), 2, rule, seed=7, backend="cuda")
