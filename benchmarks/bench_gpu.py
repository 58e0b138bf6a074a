"""hebbref's ``cuda`` backend on a GPU, against its ``numba`` backend on the same machine's CPUs and PyTorch.

    python benchmarks/bench_gpu.py [--batch 500] [--repeats 5]

Needs a CUDA GPU that numba finds; PyTorch (with CUDA) is optional. Prints Markdown:
1. a training step (forward, backward, update; bp, float32, hinge loss) of ``simple``,
   ``simple`` untied and ``deep``: hebbref ``cuda``, hebbref ``numba`` on the host CPUs,
   and the PyTorch twins (``torch_models.py``) on the GPU and on the CPUs; the first
   step of each hebbref backend is timed apart (it compiles);
2. each conv and untied equation of the readable CUDA kernels on the networks' layer
   shapes: the kernel alone on arrays already on the GPU, and the call as the ``cuda``
   backend makes it (copy in, kernel, copy out), next to PyTorch's cuDNN.

The ``cuda`` backend is the readable tier compiled for the GPU (one thread per output
element, sums in float64, ``hebbref/kernels/readable_cuda.py``); pooling, the ramp and
the dense layers stay on the CPU, so each conv call copies its operands in and out.
PyTorch runs with TF32 off, so that both sides compute in float32 or better.
"""
import argparse
import math
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from bench_training_step import hebbref_step, race, table, torch_step  # noqa: E402  (sets OPENBLAS_THREAD_TIMEOUT as there)

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import cuda  # noqa: E402

import hebbref  # noqa: E402
from hebbref import runtime  # noqa: E402
from hebbref.kernels import readable  # noqa: E402
from hebbref.kernels.readable_cuda import launch  # noqa: E402
from hebbref.layers.conv import pad_spatial, same_padding  # noqa: E402

try:
    import torch

    TORCH_GPU = torch.cuda.is_available()
except ImportError:
    torch, TORCH_GPU = None, False

NETWORKS = [("`simple`, 28×28×1, tied", "simple", (1, 28, 28), False),
            ("`simple`, 28×28×1, untied", "simple", (1, 28, 28), True),
            ("`deep`, 32×32×3, tied", "deep", (3, 32, 32), False)]
LAYERS = [("simple conv", 1, 32, 28, 5), ("deep 1a", 3, 16, 32, 3), ("deep 1b", 16, 16, 32, 3),
          ("deep 2a", 16, 64, 11, 3), ("deep 2b", 64, 64, 11, 3), ("deep 3", 64, 64, 6, 2)]


def first_call_seconds(step):
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def network_tables(batch, repeats):
    for title, net_name, shape, untied in NETWORKS:
        contenders = {"hebbref cuda": hebbref_step(net_name, shape, "bp", "cuda", untied, batch),
                      "hebbref numba (CPU)": hebbref_step(net_name, shape, "bp", "numba", untied, batch)}
        first = {name: first_call_seconds(step) for name, step in contenders.items()}
        if TORCH_GPU:
            contenders["PyTorch GPU"] = torch_step(net_name, shape, untied, batch, device="cuda")
        if torch:
            contenders["PyTorch CPU"] = torch_step(net_name, shape, untied, batch)
        times = race(contenders, repeats)
        baseline = "PyTorch GPU" if TORCH_GPU else "hebbref numba (CPU)"
        table(f"1. training step, {title}, bp, batch {batch}", times, baseline,
              "First step (compiles, and for numba times the plans): "
              + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in first.items()))


def gpu_seconds(f, repeats):
    """Best wall time of ``f`` followed by a wait for the GPU, after one warm-up call."""
    f()
    cuda.synchronize()
    if TORCH_GPU:
        torch.cuda.synchronize()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        cuda.synchronize()
        if TORCH_GPU:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def kernel_alone(compiled, out_shape, dtype, A, B, params=readable.NO_PARAMS):
    """The readable CUDA kernel on operands already on the GPU: a callable that launches it."""
    A_d, B_d = cuda.to_device(readable.row_major(A)), cuda.to_device(readable.row_major(B))
    out = cuda.device_array(out_shape, dtype=dtype)
    return lambda: launch(compiled.cuda, out, A_d, B_d, params)


def kernel_table(batch, repeats):
    print(f"\n### 2. the readable CUDA kernels, float32, batch {batch}: GFLOP/s (one multiply-add = 2 flops)\n")
    print("'kernel' is the launch alone on arrays already on the GPU; 'backend call' is what the `cuda` "
          "backend does per call (pad on the CPU, copy in, kernel, copy out).\n")
    print("| layer (N, C_in→C_out, H×W, k) | equation | kernel | backend call | PyTorch cuDNN |")
    print("|---|---|---:|---:|---:|")
    rng = np.random.default_rng(0)
    for label, c_in, c_out, size, k in LAYERS:
        x = rng.random((batch, c_in, size, size), dtype=np.float32)
        delta = rng.random((batch, c_out, size, size), dtype=np.float32)
        W = rng.random((c_out, c_in, k, k), dtype=np.float32)
        flops = 2.0 * batch * c_out * c_in * k * k * size * size
        before, after = same_padding(k)
        xp = pad_spatial(x, before, after)
        padding, W_flipped = readable.transposed_convolution(W)
        delta_p = pad_spatial(delta, *padding)
        alone = {
            "forward": kernel_alone(readable.CONV_FORWARD, delta.shape, np.float32, xp, W),
            "input_error": kernel_alone(readable.CONV_FORWARD, x.shape, np.float32, delta_p, W_flipped),
            "weight_increment": kernel_alone(readable.CONV_WEIGHT_INCREMENT, W.shape, np.float32, delta, xp),
        }
        call = {
            "forward": lambda: readable.conv_forward(x, W, how="cuda"),
            "input_error": lambda: readable.conv_input_error(delta, xp, W, how="cuda"),
            "weight_increment": lambda: readable.conv_weight_increment(delta, xp, how="cuda"),
        }
        theirs = torch_conv_calls(x, delta, W) if TORCH_GPU else {}
        rows = [("conv", equation, alone[equation], call[equation], theirs.get(equation))
                for equation in ("forward", "input_error", "weight_increment")]
        if label == "simple conv":  # the same layer untied (PyTorch has no untied conv of its own)
            rows += untied_rows(x, xp, delta, rng)
        for kind, equation, kernel, backend_call, torch_call in rows:
            rates = [f"{flops / gpu_seconds(f, repeats) / 1e9:.0f}" if f else "n/a"
                     for f in (kernel, backend_call, torch_call)]
            print(f"| {label}{' untied' if kind != 'conv' else ''} ({batch}, {c_in}→{c_out}, {size}×{size}, {k}) | "
                  f"{kind}_{equation} | {' | '.join(rates)} |")


def untied_rows(x, xp, delta, rng):
    """(kind, equation, kernel alone, backend call, None) for the untied layer of the same shape."""
    N, C_in, H, Wd = x.shape
    C_out, k = delta.shape[1], xp.shape[-1] - Wd + 1
    W = rng.random((H, Wd, C_out, C_in, k, k), dtype=np.float32)
    kind = "locally_connected"
    alone = [kernel_alone(readable.UNTIED_FORWARD, delta.shape, np.float32, xp, W),
             kernel_alone(readable.UNTIED_INPUT_ERROR, x.shape, np.float32, delta, W),
             kernel_alone(readable.UNTIED_WEIGHT_INCREMENT, (H, Wd, C_out, C_in * k * k), np.float32, delta, xp,
                          (k,))]
    call = [lambda: readable.locally_connected_forward(x, W, how="cuda"),
            lambda: readable.locally_connected_input_error(delta, xp, W, how="cuda"),
            lambda: readable.locally_connected_weight_increment(delta, xp, how="cuda")]
    return [(kind, equation, a, c, None) for equation, a, c in zip(("forward", "input_error", "weight_increment"),
                                                                     alone, call)]


def torch_conv_calls(x, delta, W):
    """PyTorch's forward, input gradient and weight gradient of the same "same" conv, on the GPU."""
    from torch.nn.grad import conv2d_input, conv2d_weight

    k = W.shape[-1]
    before = (k - 1) // 2
    pad = (before, k - 1 - before, before, k - 1 - before)
    xt = torch.nn.functional.pad(torch.from_numpy(x).cuda(), pad)
    dt, Wt = torch.from_numpy(delta).cuda(), torch.from_numpy(W).cuda()
    return {"forward": lambda: torch.nn.functional.conv2d(xt, Wt),
            "input_error": lambda: conv2d_input(xt.shape, Wt, dt),
            "weight_increment": lambda: conv2d_weight(xt, Wt.shape, dt)}


def gpu():
    """(name, compute capability) of the GPU numba uses; the simulator has neither."""
    device = cuda.get_current_device() if hasattr(cuda, "get_current_device") else None
    name = getattr(device, "name", "the CUDA simulator")
    capability = getattr(device, "compute_capability", None)
    return (name.decode() if isinstance(name, bytes) else name), (".".join(map(str, capability)) if capability else "-")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-steps", action="store_true", help="leave out the training-step tables")
    args = parser.parse_args(argv)
    if not cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA GPU that numba finds (numba.cuda.is_available() is False here)")
    hebbref.backends.get_backend("numba")  # applies hebbref.runtime's process settings, as in training
    threads = numba.get_num_threads()
    if torch:
        torch.set_num_threads(threads)
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    name, capability = gpu()
    print(f"## hebbref GPU benchmark: batch {args.batch}, float32, best and median of {args.repeats} runs\n")
    print(f"- GPU: {name}, compute capability {capability}")
    print(f"- CPU: {runtime.cpu_model()} ({platform.machine()}), {os.cpu_count()} CPUs visible; "
          f"Numba threads {threads}, PyTorch threads {torch.get_num_threads() if torch else 'absent'}")
    print(f"- versions: hebbref {hebbref.__version__}, numpy {np.__version__}, numba {numba.__version__}, "
          f"torch {torch.__version__ if torch else 'not installed'} (CUDA {torch.version.cuda if torch else '-'}), "
          f"Python {platform.python_version()}")
    if not args.skip_steps:
        network_tables(args.batch, args.repeats)
    kernel_table(args.batch, args.repeats)


if __name__ == "__main__":
    main()
