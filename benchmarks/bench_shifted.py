"""Shifted products (no im2col) against im2col + BLAS on the deep network's narrow conv layers.

    python benchmarks/bench_shifted.py [--batch 500] [--repeats 5] [--threads 2]

For each layer shape of ``deep`` on 32×32×3 that goes through im2col in
``hebbref.kernels.numba_conv`` and each of its three equations (forward h, input error
e = Bᵀδ, weight increment G), times ``numba_conv`` (current) and
``numba_conv_shifted`` interleaved in one process (A, B, A, B, ...), float32, Numba on
2 threads, with the settings the ``numba`` backend makes when it loads (idle threads
sleep, freed memory is kept), and prints a Markdown table: best of ``--repeats`` in ms,
and GFLOP/s counting the useful multiply-adds N·H·W·C_out·C_in·k² as 2 flops each (the shifted
path also computes the padding positions, which are not counted).

A third contender, ``numba_conv`` with NumPy's OpenBLAS held to one thread, shows how
much of the current path's time is its BLAS threads waiting for each other (on a
2-core machine shared with other work, a threaded product's synchronisations can cost
a scheduler slice each). Above the table: NumPy's 2048² float32 product, the machine's
limit at the time of the run.
"""
import argparse
import contextlib
import ctypes
import glob
import os
import time

import hebbref  # first, before NumPy loads: hebbref/_threads.py tells OpenBLAS's idle threads to sleep
import numba
import numpy as np
from hebbref import backends
from hebbref.kernels import numba_conv, numba_conv_shifted

# (name, C_in, C_out, H = W, k) of deep's layers on 32×32×3 that take the im2col path
LAYERS = [("deep 2a", 16, 64, 11, 3), ("deep 2b", 64, 64, 11, 3), ("deep 3", 64, 64, 6, 2)]
KERNELS = {"current": numba_conv, "current, BLAS 1 thread": numba_conv, "shifted": numba_conv_shifted}


def numpy_openblas():
    """NumPy's bundled OpenBLAS (ILP64 names), to hold its thread count; None if not found."""
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in glob.glob(os.path.join(libs, "libscipy_openblas64_*.so*")):
        library = ctypes.CDLL(path)
        if hasattr(library, "scipy_openblas_set_num_threads64_"):
            return library
    return None


NUMPY_OPENBLAS = numpy_openblas()


@contextlib.contextmanager
def numpy_blas_threads(threads):
    """NumPy's matrix products on ``threads`` threads inside the block (no change if its library is not found)."""
    if NUMPY_OPENBLAS is None:
        yield
        return
    before = NUMPY_OPENBLAS.scipy_openblas_get_num_threads64_()
    NUMPY_OPENBLAS.scipy_openblas_set_num_threads64_(threads)
    try:
        yield
    finally:
        NUMPY_OPENBLAS.scipy_openblas_set_num_threads64_(before)


def with_numpy_blas_on_one_thread(call):
    """``call`` with NumPy's matrix products held to one thread."""
    def call_on_one_thread():
        with numpy_blas_threads(1):
            return call()
    return call_on_one_thread


def equations(module, x, W, delta):
    """The three calls of one conv layer, each a no-argument callable; the cache comes from one forward."""
    _, cache = module.conv_forward(x, W)
    return {
        "forward h": lambda: module.conv_forward(x, W),
        "input error e": lambda: module.conv_input_error(delta, cache, W),
        "weight increment G": lambda: module.conv_weight_increment(delta, cache),
    }


def best_times(calls, repeats):
    """Best wall time in ms of each callable, run in turn (A, B, A, B, ...) ``repeats`` times."""
    best = {name: float("inf") for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            best[name] = min(best[name], 1e3 * (time.perf_counter() - start))
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    backends.get_backend("numba")  # as in training: idle Numba threads sleep, freed memory is kept
    numba.set_num_threads(args.threads)
    rng = np.random.default_rng(0)

    print(f"batch {args.batch}, float32, Numba {args.threads} threads, best of {args.repeats}, interleaved\n")
    square = rng.standard_normal((2048, 2048), dtype=np.float32)
    matmul = best_times({"matmul": lambda: square @ square}, args.repeats)["matmul"]
    print(f"NumPy float32 2048² matmul (its BLAS threads): {2 * 2048**3 / matmul / 1e6:.0f} GFLOP/s\n")
    print("| layer (N, C_in->C_out, HxW, k) | equation | current ms | current, BLAS 1 thread ms | shifted ms "
          "| current GFLOP/s | shifted GFLOP/s | shifted speed-up over current |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, c_in, c_out, size, k in LAYERS:
        x = rng.standard_normal((args.batch, c_in, size, size), dtype=np.float32)
        W = rng.standard_normal((c_out, c_in, k, k), dtype=np.float32)
        delta = rng.standard_normal((args.batch, c_out, size, size), dtype=np.float32)
        flops = 2 * args.batch * size * size * c_out * c_in * k * k
        per_module = {label: equations(module, x, W, delta) for label, module in KERNELS.items()}
        one_thread = per_module["current, BLAS 1 thread"]
        per_module["current, BLAS 1 thread"] = {
            equation: with_numpy_blas_on_one_thread(call) for equation, call in one_thread.items()}
        totals = dict.fromkeys(KERNELS, 0.0)
        shape = f"{name} ({args.batch}, {c_in}->{c_out}, {size}x{size}, {k})"
        for equation in per_module["current"]:
            calls = {label: per_module[label][equation] for label in KERNELS}
            for call in calls.values():  # compile and warm up
                call()
            best = best_times(calls, args.repeats)
            for label in KERNELS:
                totals[label] += best[label]
            print(f"| {shape} | {equation} | {best['current']:.1f} | {best['current, BLAS 1 thread']:.1f} "
                  f"| {best['shifted']:.1f} | {flops / best['current'] / 1e6:.0f} "
                  f"| {flops / best['shifted'] / 1e6:.0f} | {best['current'] / best['shifted']:.2f} |")
        print(f"| {shape} | all three (sum of bests) | {totals['current']:.1f} "
              f"| {totals['current, BLAS 1 thread']:.1f} | {totals['shifted']:.1f} "
              f"| {3 * flops / totals['current'] / 1e6:.0f} | {3 * flops / totals['shifted'] / 1e6:.0f} "
              f"| {totals['current'] / totals['shifted']:.2f} |")


if __name__ == "__main__":
    main()
