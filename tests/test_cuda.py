"""The readable tier's bodies compiled as numba.cuda device functions equal the NumPy reference,
on a CUDA GPU or under the CUDA simulator.  # SPEC §2, §3, §5

Where numba finds a GPU, the ordinary ``pytest`` run runs this file on it, with larger
shapes and more examples, plus the layer shapes of ``simple`` at a real batch size. Where
it finds none, the file runs under the simulator, which must be switched on before
numba.cuda is first imported, so in a pytest process of its own:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/test_cuda.py

(``./run tests`` does both). The simulator runs every GPU thread in Python, so its shapes
are tiny.
"""
import os

import numpy as np
import pytest

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
if not SIMULATED:
    try:
        from numba import cuda

        ON_GPU = cuda.is_available()
    except ImportError:
        ON_GPU = False
    if not ON_GPU:
        pytest.skip("no CUDA GPU here: the CUDA kernels are tested on the simulator, in their own process: "
                    "NUMBA_ENABLE_CUDASIM=1 pytest tests/test_cuda.py", allow_module_level=True)

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import hebbref  # noqa: E402

from comparisons import assert_close, tolerance  # noqa: E402
from kernel_checks import (  # noqa: E402
    Readable, check_conv_module, check_locally_connected_module, check_maxpool_module, check_ramp_module, pool_cases,
)
from strategies import SEEDS, conv_shapes, random_batch  # noqa: E402

# numba warns of "low occupancy" when a small case launches few blocks: expected here
pytestmark = [pytest.mark.cudasim if SIMULATED else pytest.mark.gpu,
              pytest.mark.filterwarnings("ignore:.*Grid size .* under-utilization")]
DTYPES = st.sampled_from([np.float32, np.float64])
# the simulator runs one Python thread per GPU thread; a GPU takes realistic sizes
SHAPES = (conv_shapes(max_batch=2, max_channels=2, max_size=4, max_kernel=3) if SIMULATED
          else conv_shapes(max_batch=4, max_channels=6, max_size=13, max_kernel=5))
EXAMPLES = 10 if SIMULATED else 60
only_on_a_gpu = pytest.mark.skipif(SIMULATED, reason="realistic shapes: too slow on the simulator")


GPU = Readable("cuda")


@settings(max_examples=EXAMPLES, deadline=None)
@given(shape=SHAPES, dtype=DTYPES, seed=SEEDS)
def test_cuda_conv_kernels_equal_the_reference(shape, dtype, seed):
    check_conv_module(GPU, shape, dtype, seed, 10 * tolerance(np.dtype(dtype)), "cuda ")


@pytest.mark.parametrize("k", [2, 3])
def test_cuda_kernels_on_odd_and_even_kernels(k):
    check_conv_module(GPU, (2, 2, 3, 4, 3, k), np.float64, k, 10 * tolerance(np.dtype(np.float64)), f"cuda k={k} ")
    check_locally_connected_module(GPU, (1, 2, 2, 3, 4, k), np.float64, k, 10 * tolerance(np.dtype(np.float64)),
                                   f"cuda k={k} ")


@pytest.mark.parametrize("c_in, c_out", [(1, 3), (3, 1), (1, 1)])
def test_cuda_1x1_filters_with_one_channel_on_a_side(c_in, c_out):
    """B flipped in space keeps a negative stride on its axes of length 1 here; a real GPU refused
    to take it until ``readable.row_major`` (the simulator never did)."""
    check_conv_module(GPU, (2, c_in, c_out, 4, 3, 1), np.float64, 1, 10 * tolerance(np.dtype(np.float64)),
                      f"cuda 1x1 {c_in}->{c_out} ")


@settings(max_examples=EXAMPLES, deadline=None)
@given(case=pool_cases(), dtype=DTYPES, seed=SEEDS, ties=st.booleans())
def test_cuda_maxpool_equals_the_reference(case, dtype, seed, ties):
    n, c, h, w, k, t = case
    shape = (1, min(c, 2), min(h, 5), min(w, 5), k, t) if SIMULATED else (n, c, h, w, k, t)
    check_maxpool_module(GPU, shape, dtype, seed, ties, "cuda ")


@pytest.mark.parametrize("slope", [0.5, 0.25])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_ramp_equals_the_reference_bit_for_bit(dtype, slope):
    check_ramp_module(GPU, dtype, 3, slope, "cuda ")


@settings(max_examples=EXAMPLES, deadline=None)
@given(shape=SHAPES, dtype=DTYPES, seed=SEEDS)
def test_cuda_locally_connected_kernels_equal_the_reference(shape, dtype, seed):
    check_locally_connected_module(GPU, shape, dtype, seed,
                                   10 * tolerance(np.dtype(dtype)), "cuda ")


def check_training_steps_agree(net, input_shape, n_classes, batch, steps, lr, label, **kwargs):
    """``steps`` training steps of ``net`` on the cuda backend give the numpy backend's losses, W and R."""
    kwargs = dict(input_shape=input_shape, n_classes=n_classes, **kwargs)
    reference = hebbref.build_network(net, backend="numpy", **kwargs)
    gpu = hebbref.build_network(net, backend="cuda", **kwargs)
    assert gpu.backend.name == "cuda"
    rng = np.random.default_rng(5)
    for step in range(steps):
        x, y = random_batch(rng, input_shape, n_classes, batch=batch)
        assert_close(gpu.train_step(x, y, lr=lr), reference.train_step(x, y, lr=lr), 1e-9,
                     f"{label}: loss at step {step}")
    for ours, ref in zip(gpu.parameters(), reference.parameters()):
        for which in ("W", "R"):
            assert_close(getattr(ours, which), getattr(ref, which), 1e-9, f"{label}: {ref.name}.{which}")


@pytest.mark.parametrize("net", ["conv3:2 ramp pool2 dense3 ramp out", "lc2:2 ramp pool2s1 drop0.5 out"])
@pytest.mark.parametrize("rule", ["bp", "urfb"])
def test_training_steps_agree_between_numpy_and_cuda(net, rule):
    check_training_steps_agree(net, (1, 4, 4), 3, batch=2, steps=2, lr=0.3, label=f"{net} {rule}", rule=rule, seed=2)


@only_on_a_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(8, 1, 32, 28, 28, 5), (4, 3, 16, 32, 32, 3), (4, 64, 64, 11, 11, 3),
                                   (4, 64, 64, 6, 6, 2)], ids=["simple", "deep-1a", "deep-2b", "deep-3"])
def test_cuda_kernels_on_the_layer_shapes_of_the_networks(shape, dtype):
    rtol = 10 * tolerance(np.dtype(dtype))
    check_conv_module(GPU, shape, dtype, 1, rtol, "cuda ")
    if shape[-1] == 5:
        check_locally_connected_module(GPU, shape, dtype, 1, rtol, "cuda untied ")


@only_on_a_gpu
@pytest.mark.parametrize("untied", [False, True])
@pytest.mark.parametrize("rule", ["bp", "urfb"])
def test_training_steps_of_simple_agree_between_numpy_and_cuda(rule, untied):
    check_training_steps_agree("simple", (1, 28, 28), 10, batch=16, steps=3, lr=0.1,
                               label=f"simple {rule} untied={untied}", rule=rule, seed=3, untied=untied)


def test_cuda_is_never_the_default_backend(monkeypatch):
    """Neither the simulator nor a real GPU: the cuda backend runs only when asked for."""
    monkeypatch.delenv(hebbref.backends.ENVIRONMENT_VARIABLE, raising=False)
    assert hebbref.backends.default_backend_name() == "numba"


@pytest.mark.parametrize("net", ["conv2:2 ramp conv3:2 ramp out", "conv1:1 ramp lc2:2 ramp out",
                                 "conv1:1 ramp sum[conv2:1,lc3:1] out"])
@pytest.mark.parametrize("rule", ["bp", "frfb", "usf", "frsf", "dfa"])
def test_the_cuda_backend_is_wired_as_the_rule_says(net, rule):
    """The wiring property of tests/test_rules_wiring.py, on the simulated GPU kernels."""
    from test_rules_wiring import check_wiring

    check_wiring(net, (1, 3, 3), 2, rule, seed=7, backend="cuda")


def test_the_gpu_benchmark_prints_a_rate_for_every_kernel(monkeypatch, capsys):
    """benchmarks/bench_gpu.py's kernel table, on two tiny layers (tiny on the simulator, small on a GPU)."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)  # the benchmark sets it: unset again after
    import bench_gpu

    monkeypatch.setattr(bench_gpu, "LAYERS", [("simple conv", 1, 2, 4, 3), ("even", 2, 2, 3, 2)])
    bench_gpu.main(["--batch", "2", "--repeats", "1", "--skip-steps"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "GFLOP" not in line]
    rows = [row for row in rows if "equation" not in row and "---" not in row]
    # three tied equations per layer, and the three untied ones on the layer called "simple conv"
    assert len(rows) == 9, rows
    for row in rows:
        kernel, backend_call = row.split("|")[3:5]
        float(kernel), float(backend_call)  # a number for each, not "n/a"
