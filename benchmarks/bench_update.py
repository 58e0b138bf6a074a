"""urfb's SGD steps on W and R: two passes over G against one (``tuned_update.paired_update``).

    python benchmarks/bench_update.py [--shape 500 6272] [--repeats 41] [--dtype float32]

urfb and kp give R the very increment G that W gets. Taken as two steps (the backend's
``weight_update`` on W, then on R) G is read twice; ``paired_update`` reads it once and
writes W and R in the same pass, with the same bits. This script times, interleaved in one
process on Numba's threads, for arrays of ``--shape`` (by default the dense layer of
``simple``, 6272 → 500):

- ``two steps``: ``tuned_update.weight_update`` on W, then on R;
- ``one pass``: ``tuned_update.paired_update`` on both;
- ``NumPy's two steps``: the reference, ``hebbref.rules.paired_update``.

Before each timed call a buffer of ``--flush-mib`` MiB (512 by default, more than the
last-level cache of the CPUs measured so far) is written, so that the arrays come from memory, as they do in a training step, where the whole
network's forward and backward passes run between two updates of a layer. Printed: the
CPU, the best and the median of each in ms, and the median over rounds of each one's
ratio to ``two steps`` within a round.
"""
import argparse
import statistics
import time

import numba
import numpy as np

from hebbref import rules, runtime
from hebbref.kernels import tuned_update


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[500, 6272])
    parser.add_argument("--repeats", type=int, default=41)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--eta", type=float, default=0.01)
    parser.add_argument("--flush-mib", type=int, default=512)
    args = parser.parse_args()
    runtime.prepare()
    rng = np.random.default_rng(0)
    shape = tuple(args.shape)
    W = rng.standard_normal(shape).astype(args.dtype)
    R = rng.standard_normal(shape).astype(args.dtype)
    G = rng.standard_normal(shape).astype(args.dtype) * 1e-6  # small steps: the weights stay where they are
    flush = np.zeros(args.flush_mib << 20, dtype=np.uint8)

    def two_steps():
        tuned_update.weight_update(W, G, args.eta)
        tuned_update.weight_update(R, G, args.eta)

    contenders = {"two steps": two_steps,
                  "one pass": lambda: tuned_update.paired_update(W, R, G, args.eta),
                  "NumPy's two steps": lambda: rules.paired_update(W, R, G, args.eta)}
    times = {name: [] for name in contenders}
    for round_ in range(args.repeats + 1):  # the first round compiles and warms up, untimed
        for name, run in contenders.items():
            flush += 1
            start = time.perf_counter()
            run()
            seconds = time.perf_counter() - start
            if round_:
                times[name].append(seconds)
    megabytes = W.nbytes / 2**20
    print(f"CPU: {runtime.cpu_key()}; Numba threads {numba.get_num_threads()}; W, R and G {shape} {args.dtype}, "
          f"{megabytes:.1f} MiB each; best and median of {args.repeats} interleaved rounds, the arrays out of cache\n")
    print("| W's and R's steps | best (ms) | median (ms) | median of the rounds' ratios to two steps |")
    print("|---|---:|---:|---:|")
    for name, found in times.items():
        ratio = statistics.median(t / s for t, s in zip(found, times["two steps"]))
        print(f"| {name} | {1e3 * min(found):.2f} | {1e3 * statistics.median(found):.2f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
