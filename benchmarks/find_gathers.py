"""The compiled kernels whose machine code holds gathers, scatters or AVX masked moves, on this CPU.

    python benchmarks/find_gathers.py [--batch 32]

A loop that moves a run of numbers should compile to plain vector loads and stores.
Where LLVM cannot prove a run contiguous (a signed index that Numba wraps around when
negative, a row of a view whose stride is known only at run time), it moves the run with
gathers and scatters instead, a vector of addresses each, slower than the numbers they
move. And compiled for AVX2 (no AVX-512), a number read only where a select needs it, or
a select between a new number and the one just read from the same place, becomes a
masked load or store (``vmaskmovps``, ``vpmaskmovd``), slow on AMD's CPUs: the kernels
read every number before the select instead (``tuned_activations``,
``tuned_pooling.keep_larger_of_ramp``, ``tuned_untied_registers.pool_cell``). AVX-512's
masked moves (through a mask register) are not counted: they are not slow.

This script compiles every kernel afresh, into an empty Numba cache of its own (Numba
cannot show the machine code of a cached kernel). It runs one training step of
`simple`, untied `simple` and `deep` at ``--batch`` in float32 with the plans measured, so
every candidate path of every layer is compiled. Then it lists each compiled kernel of
``hebbref.kernels`` whose assembly holds a gather, a scatter, a masked load or a masked
store, with how many. ``tests/test_kernels_vector_moves.py`` holds the loops that move
runs to none. To see a CPU with AVX2 alone from one with AVX-512, run it with Numba told
to compile for one: ``NUMBA_CPU_NAME=znver3 NUMBA_CPU_FEATURES=...`` (the features of
``tests/kernel_checks.AVX2_FEATURES``).
"""
import argparse
import collections
import importlib
import os
import pkgutil
import re
import sys
import tempfile


def slow_moves(assembly):
    """How many gathers, scatters, AVX masked loads and AVX masked stores ``assembly`` (AT&T syntax) holds."""
    counts = collections.Counter(re.findall(r"\bv\w*(gather|scatter)\w*", assembly))
    for operands in re.findall(r"\bvp?maskmov\w*\s+([^\n]*)", assembly):  # the memory operand last: a store
        counts["masked store" if operands.rstrip().endswith(")") else "masked load"] += 1
    return counts


def kernels_of(module):
    """(name, object) for each global of ``module``, and for each entry of a dict of them (as
    ``tuned_untied_registers.SUMS``, one compiled kernel per group size), sorted by name."""
    for name, value in sorted(vars(module).items()):
        if isinstance(value, dict):
            yield from ((f"{name}[{key}]", entry) for key, entry in sorted(value.items(), key=str))
        else:
            yield name, value


def slow_kernels():
    """(module, kernel, signatures, counts) for each kernel of ``hebbref.kernels`` compiled in this process whose
    assembly holds a gather, a scatter or an AVX masked move (``slow_moves``); a kernel loaded from Numba's cache
    has no assembly to show, so the cache should have been empty."""
    import hebbref.kernels

    found = []
    for info in pkgutil.iter_modules(hebbref.kernels.__path__):
        module = importlib.import_module(f"hebbref.kernels.{info.name}")
        for name, kernel in kernels_of(module):
            if getattr(kernel, "__module__", None) != module.__name__ or not hasattr(kernel, "inspect_asm"):
                continue
            counts = collections.Counter()
            for signature in getattr(kernel, "signatures", ()):
                counts.update(slow_moves(kernel.inspect_asm(signature)))
            if counts:
                found.append((info.name, name, len(kernel.signatures), counts))
    return found


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

    from hebbref import runtime
    from hebbref.network import build_network

    for net, shape, untied in (("simple", (1, 28, 28), False), ("simple", (1, 28, 28), True),
                               ("deep", (3, 32, 32), False)):
        model = build_network(net, shape, 10, rule="urfb", untied=untied, backend="numba", seed=0, dtype="float32")
        x = np.random.default_rng(0).standard_normal((args.batch,) + shape).astype(np.float32)
        model.train_step(x, np.arange(args.batch) % 10)
    print(f"CPU: {runtime.cpu_key()}; one step of simple, untied simple and deep at batch {args.batch}\n")
    print("| module | kernel | signatures | gathers | scatters | masked loads | masked stores |")
    print("|---|---|---:|---:|---:|---:|---:|")
    found = slow_kernels()
    for module, name, signatures, counts in found:
        print(f"| {module} | {name} | {signatures} | {counts['gather']} | {counts['scatter']} "
              f"| {counts['masked load']} | {counts['masked store']} |")
    print(f"\n{len(found)} compiled kernels hold gathers, scatters or AVX masked moves")


if __name__ == "__main__":
    main()
