"""Shifted products (no im2col) against ``numba_conv`` on the deep network's narrow conv layers.

    python benchmarks/bench_shifted.py [--batch 500] [--repeats 5] [--threads 2]

For each conv layer of ``deep`` on 32×32×3 with many channels on a small image and each
of its three equations (forward h, input error e = Bᵀδ, weight increment G), times in
one process, interleaved (A, B, C, D, A, B, ...), float32, Numba on ``--threads``
threads, with the settings the ``numba`` backend makes when it loads (idle threads sleep,
freed memory is kept):

- ``current``: ``hebbref.kernels.numba_conv`` as it is (its thresholds pick the direct
  loops or im2col + BLAS; the table says which);
- ``im2col``: ``numba_conv`` held to its im2col + BLAS path, NumPy's OpenBLAS on its
  threads (as many as cores);
- ``im2col, BLAS 1 thread``: the same with NumPy's OpenBLAS held to one thread. On a
  2-core machine shared with other work, each synchronisation of a threaded product
  can wait a scheduler slice, and some shapes stall for hundreds of ms;
- ``shifted``: ``hebbref.kernels.numba_conv_shifted``.

The table gives the best of ``--repeats`` in ms, and GFLOP/s counting the useful
multiply-adds N·H·W·C_out·C_in·k² as 2 flops each (the shifted path also computes the
padding positions, which are not counted). Above it: NumPy's 2048² float32 product, the
machine's limit at the time of the run.
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

# (name, C_in, C_out, H = W, k) of deep's conv layers after the first pooling
LAYERS = [("deep 2a", 16, 64, 11, 3), ("deep 2b", 64, 64, 11, 3), ("deep 3", 64, 64, 6, 2)]
CONTENDERS = ["current", "im2col", "im2col, BLAS 1 thread", "shifted"]


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


@contextlib.contextmanager
def im2col_path():
    """``numba_conv`` takes im2col + BLAS for every layer with enough terms per output, whatever the width."""
    before = numba_conv.DIRECT_FROM_WIDTH
    numba_conv.DIRECT_FROM_WIDTH = 10**9
    try:
        yield
    finally:
        numba_conv.DIRECT_FROM_WIDTH = before


@contextlib.contextmanager
def im2col_path_blas_on_one_thread():
    """The im2col + BLAS path with NumPy's matrix products on one thread."""
    with im2col_path(), numpy_blas_threads(1):
        yield


# contender: (module, the setting its calls run under)
SETTINGS = {
    "current": (numba_conv, contextlib.nullcontext),
    "im2col": (numba_conv, im2col_path),
    "im2col, BLAS 1 thread": (numba_conv, im2col_path_blas_on_one_thread),
    "shifted": (numba_conv_shifted, contextlib.nullcontext),
}


def equations(contender, x, W, delta):
    """The three calls of one conv layer under ``contender``, each a no-argument callable.

    The cache comes from one forward pass under the same settings (the im2col path
    keeps its rows for the weight increment).
    """
    module, setting = SETTINGS[contender]
    with setting():
        _, cache = module.conv_forward(x, W)

    def under_setting(call):
        def run():
            with setting():
                return call()
        return run

    return {
        "forward h": under_setting(lambda: module.conv_forward(x, W)),
        "input error e": under_setting(lambda: module.conv_input_error(delta, cache, W)),
        "weight increment G": under_setting(lambda: module.conv_weight_increment(delta, cache)),
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
    print("| layer (N, C_in->C_out, HxW, k) | equation | current path | current ms | im2col ms "
          "| im2col, BLAS 1 thread ms | shifted ms | current GFLOP/s | shifted GFLOP/s | shifted speed-up "
          "over current | over the best other |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, c_in, c_out, size, k in LAYERS:
        x = rng.standard_normal((args.batch, c_in, size, size), dtype=np.float32)
        W = rng.standard_normal((c_out, c_in, k, k), dtype=np.float32)
        delta = rng.standard_normal((args.batch, c_out, size, size), dtype=np.float32)
        flops = 2 * args.batch * size * size * c_out * c_in * k * k
        path = "im2col" if numba_conv.uses_gemm(c_in * k * k, size) else "direct"
        per_contender = {contender: equations(contender, x, W, delta) for contender in CONTENDERS}
        totals = dict.fromkeys(CONTENDERS, 0.0)
        shape = f"{name} ({args.batch}, {c_in}->{c_out}, {size}x{size}, {k})"

        def row(equation, best, count):
            others = min(best[contender] for contender in CONTENDERS if contender != "shifted")
            times = " | ".join(f"{best[contender]:.1f}" for contender in CONTENDERS)
            print(f"| {shape} | {equation} | {path} | {times} | {count * flops / best['current'] / 1e6:.0f} "
                  f"| {count * flops / best['shifted'] / 1e6:.0f} | {best['current'] / best['shifted']:.2f} "
                  f"| {others / best['shifted']:.2f} |")

        for equation in per_contender["current"]:
            calls = {contender: per_contender[contender][equation] for contender in CONTENDERS}
            for call in calls.values():  # compile and warm up
                call()
            best = best_times(calls, args.repeats)
            for contender in CONTENDERS:
                totals[contender] += best[contender]
            row(equation, best, 1)
        row("all three (sum of bests)", totals, 3)


if __name__ == "__main__":
    main()
