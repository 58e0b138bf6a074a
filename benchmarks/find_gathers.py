"""The compiled kernels whose machine code holds gathers or scatters, on this CPU.

    python benchmarks/find_gathers.py [--batch 32]

A loop that moves a run of numbers should compile to plain vector loads and stores.
Where LLVM cannot prove a run contiguous (a signed index that Numba wraps around when
negative, a row of a view whose stride is known only at run time), it moves the run with
gathers and scatters instead, a vector of addresses each, slower than the numbers they
move. This script compiles every kernel afresh, into an empty Numba cache of its own
(Numba cannot show the machine code of a cached kernel). It runs one training step of
`simple`, untied `simple` and `deep` at ``--batch`` in float32 with the plans measured, so
every candidate path of every layer is compiled. Then it lists each compiled kernel of
``hebbref.kernels`` whose assembly holds a gather or a scatter, with how many.
``tests/test_kernels_vector_moves.py`` holds the loops that move runs to none.
"""
import argparse
import collections
import importlib
import os
import pkgutil
import re
import sys
import tempfile


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    if "numba" in sys.modules:
        raise SystemExit("numba was imported before its cache could be set")
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="hebbref-gathers-numba-")
    os.environ["HEBBREF_CACHE"] = tempfile.mkdtemp(prefix="hebbref-gathers-plans-")  # plans of their own
    os.environ["HEBBREF_TUNE"] = "1"  # every candidate is timed, so every one is compiled
    import numpy as np

    import hebbref.kernels
    from hebbref import runtime
    from hebbref.network import build_network

    for net, shape, untied in (("simple", (1, 28, 28), False), ("simple", (1, 28, 28), True),
                               ("deep", (3, 32, 32), False)):
        model = build_network(net, shape, 10, rule="urfb", untied=untied, backend="numba", seed=0, dtype="float32")
        x = np.random.default_rng(0).standard_normal((args.batch,) + shape).astype(np.float32)
        model.train_step(x, np.arange(args.batch) % 10)
    print(f"CPU: {runtime.cpu_key()}; one step of simple, untied simple and deep at batch {args.batch}\n")
    print("| module | kernel | signatures | gathers | scatters |")
    print("|---|---|---:|---:|---:|")
    found = 0
    for info in pkgutil.iter_modules(hebbref.kernels.__path__):
        module = importlib.import_module(f"hebbref.kernels.{info.name}")
        for name, kernel in sorted(vars(module).items()):
            if getattr(kernel, "__module__", None) != module.__name__ or not hasattr(kernel, "inspect_asm"):
                continue
            counts = collections.Counter()
            for signature in getattr(kernel, "signatures", ()):
                for op in re.findall(r"\bv\w*(gather|scatter)\w*", kernel.inspect_asm(signature)):
                    counts[op] += 1
            if counts:
                found += 1
                print(f"| {info.name} | {name} | {len(kernel.signatures)} | {counts['gather']} | {counts['scatter']} |")
    print(f"\n{found} compiled kernels hold gathers or scatters")


if __name__ == "__main__":
    main()
