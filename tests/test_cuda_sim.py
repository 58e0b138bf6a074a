"""The readable tier's bodies compiled as numba.cuda device functions equal the NumPy reference,
under the CUDA simulator.  # SPEC §2, §3, §5

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

from comparisons import assert_close, tolerance  # noqa: E402
from kernel_checks import (  # noqa: E402
    Readable, check_conv_module, check_locally_connected_module, check_maxpool_module, check_ramp_module, pool_cases,
)
from strategies import SEEDS, conv_shapes, random_batch  # noqa: E402

pytestmark = pytest.mark.cudasim
DTYPES = st.sampled_from([np.float32, np.float64])
TINY = conv_shapes(max_batch=2, max_channels=2, max_size=4, max_kernel=3)


GPU = Readable("cuda")


@settings(max_examples=10, deadline=None)
@given(shape=TINY, dtype=DTYPES, seed=SEEDS)
def test_cuda_conv_kernels_equal_the_reference(shape, dtype, seed):
    check_conv_module(GPU, shape, dtype, seed, 10 * tolerance(np.dtype(dtype)), "cuda ")


@pytest.mark.parametrize("k", [2, 3])
def test_cuda_kernels_on_odd_and_even_kernels(k):
    check_conv_module(GPU, (2, 2, 3, 4, 3, k), np.float64, k, 10 * tolerance(np.dtype(np.float64)), f"cuda k={k} ")
    check_locally_connected_module(GPU, (1, 2, 2, 3, 4, k), np.float64, k, 10 * tolerance(np.dtype(np.float64)),
                                   f"cuda k={k} ")


@settings(max_examples=8, deadline=None)
@given(case=pool_cases(), dtype=DTYPES, seed=SEEDS, ties=st.booleans())
def test_cuda_maxpool_equals_the_reference(case, dtype, seed, ties):
    n, c, h, w, k, t = case
    check_maxpool_module(GPU, (1, min(c, 2), min(h, 5), min(w, 5), k, t), dtype, seed, ties, "cuda ")


@pytest.mark.parametrize("slope", [0.5, 0.25])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_ramp_equals_the_reference_bit_for_bit(dtype, slope):
    check_ramp_module(GPU, dtype, 3, slope, "cuda ")


@settings(max_examples=10, deadline=None)
@given(shape=TINY, dtype=DTYPES, seed=SEEDS)
def test_cuda_locally_connected_kernels_equal_the_reference(shape, dtype, seed):
    check_locally_connected_module(GPU, shape, dtype, seed,
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
