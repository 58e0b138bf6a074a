"""The tied conv kernels' two paths, direct loops and shifted products, on every conv layer of ``simple`` and ``deep``.

    python benchmarks/bench_conv_paths.py [--batch 500] [--repeats 5] [--threads 2]

``hebbref.kernels.numba_conv`` computes a conv layer either by direct loops or by k·k
matrix products on shifted views of the channel-major input (``numba_conv_shifted``),
choosing by the number of terms per output (``SHIFTED_FROM``). This script times both paths on each layer and each equation
(forward h, input error e = Bᵀδ, weight increment G), interleaved in one process,
float32, Numba on ``--threads`` threads with the settings the ``numba`` backend makes
when it loads, and prints which path the thresholds pick. GFLOP/s count the useful
multiply-adds N·H·W·C_out·C_in·k² as 2 flops each. Above the table: NumPy's 2048²
float32 product, the machine's limit at the time of the run.
"""
import argparse
import contextlib
import time

import hebbref  # first, before NumPy loads: hebbref/_threads.py tells OpenBLAS's idle threads to sleep
import numba
import numpy as np
from hebbref import backends
from hebbref.kernels import numba_conv

# (name, C_in, C_out, H = W, k): simple on 28×28×1 and deep on 32×32×3
LAYERS = [("simple conv", 1, 32, 28, 5), ("deep 1a", 3, 16, 32, 3), ("deep 1b", 16, 16, 32, 3),
          ("deep 2a", 16, 64, 11, 3), ("deep 2b", 64, 64, 11, 3), ("deep 3", 64, 64, 6, 2)]
PATHS = ("direct", "shifted")


@contextlib.contextmanager
def path_forced(path):
    """``numba_conv`` takes ``path`` for every layer inside the block."""
    before = numba_conv.SHIFTED_FROM
    numba_conv.SHIFTED_FROM = 1 if path == "shifted" else 10**9
    try:
        yield
    finally:
        numba_conv.SHIFTED_FROM = before


def equations(path, x, W, delta):
    """The three calls of one conv layer on ``path``, each a no-argument callable."""
    with path_forced(path):
        _, cache = numba_conv.conv_forward(x, W)

    def forced(call):
        def run():
            with path_forced(path):
                return call()
        return run

    return {
        "forward h": forced(lambda: numba_conv.conv_forward(x, W)),
        "input error e": forced(lambda: numba_conv.conv_input_error(delta, cache, W)),
        "weight increment G": forced(lambda: numba_conv.conv_weight_increment(delta, cache)),
    }


def best_times(calls, repeats):
    """Best wall time in ms of each callable, run in turn (A, B, A, B, ...) ``repeats`` times."""
    for call in calls.values():  # compile and warm up
        call()
    best = dict.fromkeys(calls, float("inf"))
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
    backends.get_backend("numba")  # as in training: idle threads sleep, freed memory is kept
    numba.set_num_threads(args.threads)
    rng = np.random.default_rng(0)

    print(f"batch {args.batch}, float32, Numba {args.threads} threads, best of {args.repeats}, interleaved\n")
    square = rng.standard_normal((2048, 2048), dtype=np.float32)
    matmul = best_times({"matmul": lambda: square @ square}, args.repeats)["matmul"]
    print(f"NumPy float32 2048² matmul: {2 * 2048**3 / matmul / 1e6:.0f} GFLOP/s\n")
    print("| layer (N, C_in→C_out, H×W, k) | equation | path taken | direct ms | shifted ms "
          "| direct GFLOP/s | shifted GFLOP/s | direct / shifted |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for name, c_in, c_out, size, k in LAYERS:
        x = rng.standard_normal((args.batch, c_in, size, size), dtype=np.float32)
        W = rng.standard_normal((c_out, c_in, k, k), dtype=np.float32)
        delta = rng.standard_normal((args.batch, c_out, size, size), dtype=np.float32)
        flops = 2 * args.batch * size * size * c_out * c_in * k * k
        calls = {path: equations(path, x, W, delta) for path in PATHS}
        taken = {"forward h": numba_conv.uses_shifted(c_in * k * k),
                 "input error e": numba_conv.uses_shifted(c_out * k * k)}
        taken["weight increment G"] = taken["forward h"]  # G follows the forward pass's cache
        for equation in calls["direct"]:
            best = best_times({path: calls[path][equation] for path in PATHS}, args.repeats)
            print(f"| {name} ({args.batch}, {c_in}→{c_out}, {size}×{size}, {k}) | {equation} "
                  f"| {'shifted' if taken[equation] else 'direct'} | {best['direct']:.1f} | {best['shifted']:.1f} "
                  f"| {flops / best['direct'] / 1e6:.0f} | {flops / best['shifted'] / 1e6:.0f} "
                  f"| {best['direct'] / best['shifted']:.2f} |")


if __name__ == "__main__":
    main()
