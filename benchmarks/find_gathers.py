"""The compiled kernels whose machine code holds gathers, scatters, AVX masked moves, sums kept on the stack or calls to
the C library's fmaf, on this CPU.

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

A register-blocked kernel keeps its sums in vector registers across a loop of fused
multiply-adds: 32 of them with AVX-512, 16 with AVX2. Where a loop needs more, LLVM keeps
some on the stack, and the loop stores a vector there at every step and loads it again,
a store and a load in the chain of that sum's additions (the row increment of four output
channels, the build of ``tuned_conv_rows.increment_group_rows`` for 4, did, compiled for AVX2, until its step held
three input vectors rather than four δ vectors). Such loops are counted here: innermost loops (from a label to a jump back to
it) that hold a fused multiply-add of vectors and a store of a ymm or zmm register to the
stack (a scalar loop that finishes a run after its last whole vector is not counted). The
kernels of eight output channels at a time (the builds of ``tuned_untied_registers.piece_of_windows``
and of ``correlate_group_rows`` and ``increment_group_rows`` of ``tuned_conv_rows`` for 8) and the direct
loops' eight terms per pass, compiled for 16
registers, hold such loops by design: there the plan takes their candidates of four. So
do the channel path's eight positions or terms per pass (the builds of ``correlate_group`` and
``increment_group`` of ``tuned_conv_channels`` for a span of 8), whose candidates of six fit in
16 registers.

Where the CPU has no FMA, a fused multiply-add that LLVM is asked for becomes a call to ``fmaf`` for every lane;
``tuned_simd.vfma`` asks for a multiply-add that LLVM may leave unfused, and such calls are counted here too.

This script compiles every kernel afresh, into an empty Numba cache of its own (Numba
cannot show the machine code of a cached kernel). It runs one training step of
`simple`, untied `simple` and `deep` at ``--batch`` in float32 with the plans measured, so
every candidate path of every layer is compiled. Then it lists each compiled kernel of
``hebbref.kernels`` whose assembly holds a gather, a scatter, a masked load or a masked
store, or a loop with sums on the stack, with how many. ``tests/test_kernels_vector_moves.py``
holds the loops that move runs to none, and ``tests/test_kernels_built_for_avx2.py`` the
pools, ramps, blocks and the kernels 16 registers take by default, compiled for AVX2, to
no masked move and no sum on the stack. To see a CPU with AVX2 alone from one with
AVX-512, run it with Numba told to compile for one, scheduled for an LLVM CPU name:
``benchmarks/avx2_stand_in.sh znver3 python benchmarks/find_gathers.py`` (the features of
``tests/kernel_checks.AVX2_FEATURES``).
"""
import argparse
import atexit
import collections
import importlib
import os
import pkgutil
import re
import shutil
import sys
import tempfile


def slow_moves(assembly):
    """How many gathers, scatters, AVX masked loads and AVX masked stores ``assembly`` (AT&T syntax) holds."""
    counts = collections.Counter(re.findall(r"\bv\w*(gather|scatter)\w*", assembly))
    for operands in re.findall(r"\bvp?maskmov\w*\s+([^\n]*)", assembly):  # the memory operand last: a store
        counts["masked store" if operands.rstrip().endswith(")") else "masked load"] += 1
    return counts


def fmaf_calls(assembly):
    """How many times ``assembly`` names the C library's ``fmaf``: where the CPU has no FMA, LLVM makes a fused
    multiply-add it was asked for (``llvm.fma``) such a call for every lane (``tuned_simd.vfma`` asks for one it
    may leave unfused)."""
    return len(re.findall(r"\bfmaf\b", assembly))


def spilled_sums(assembly):
    """How many innermost loops of ``assembly`` (AT&T syntax) hold a multiply-add of vectors and a store of a
    vector register to the stack: sums that did not fit in the registers. With AVX, a fused multiply-add and a
    ymm or zmm register; built for SSE alone (no VEX encoding, no FMA: ``vfma`` is a ``mulps`` and an ``addps``),
    a packed multiply and an xmm register stored whole. A scalar loop (the few numbers after the last whole vector,
    its sums in scalar lanes of xmm registers) is not counted."""
    lines = assembly.splitlines()
    starts = {}
    loops = 0
    for at, line in enumerate(lines):
        label = re.match(r"(\.\w+):", line)
        if label:
            starts[label.group(1)] = at
            continue
        jump = re.match(r"\s+j\w+\s+(\.\w+)\s*$", line)
        if not jump or jump.group(1) not in starts:  # not a jump back
            continue
        body = lines[starts[jump.group(1)] + 1 : at]
        if any(re.match(r"\.\w+:", b) for b in body):  # a loop with another inside: not innermost
            continue
        if (any(re.match(r"\s+(vfn?m(add|sub)\w*p[sd]|mulp[sd])\s", b) for b in body)
                and any(re.match(r"\s+(vmov\w*\s+%[yz]mm\d+|mov[au]p[sd]\s+%xmm\d+),\s*-?\d*\(%rsp\)", b)
                        for b in body)):
            loops += 1
    return loops


def kernels_of(module):
    """(name, object) for each global of ``module`` by name, then for each entry of a dict of them (one compiled
    kernel per block size, say, as ``BUILDS[8]``); an object met again (a kernel that is a global and a dict's entry)
    only under its first name."""
    globals_, dicts = [], []
    for name, value in sorted(vars(module).items()):
        if isinstance(value, dict):
            dicts.extend((f"{name}[{key}]", entry) for key, entry in sorted(value.items(), key=str))
        else:
            globals_.append((name, value))
    seen = set()
    for name, value in globals_ + dicts:
        if id(value) not in seen:
            seen.add(id(value))
            yield name, value


def slow_kernels():
    """(module, kernel, signatures, counts) for each kernel of ``hebbref.kernels`` compiled in this process whose
    assembly holds a gather, a scatter or an AVX masked move (``slow_moves``), a loop with sums on the stack
    (``spilled_sums``, counted as "sums on the stack") or a call to ``fmaf`` (``fmaf_calls``, "fmaf calls"); a kernel loaded from Numba's cache has no assembly to show,
    so the cache should have been empty."""
    import hebbref.kernels

    found = []
    for info in pkgutil.iter_modules(hebbref.kernels.__path__):
        module = importlib.import_module(f"hebbref.kernels.{info.name}")
        for name, kernel in kernels_of(module):
            if getattr(kernel, "__module__", None) != module.__name__ or not hasattr(kernel, "inspect_asm"):
                continue
            counts = collections.Counter()
            for signature in getattr(kernel, "signatures", ()):
                assembly = kernel.inspect_asm(signature)
                counts.update(slow_moves(assembly))
                counts["sums on the stack"] += spilled_sums(assembly)
                counts["fmaf calls"] += fmaf_calls(assembly)
            counts = +counts  # the zeros dropped
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
    for folder in (os.environ["NUMBA_CACHE_DIR"], os.environ["HEBBREF_CACHE"]):
        atexit.register(shutil.rmtree, folder, True)
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
    print("| module | kernel | signatures | gathers | scatters | masked loads | masked stores | loops with sums on "
          "the stack | fmaf calls |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    found = slow_kernels()
    for module, name, signatures, counts in found:
        print(f"| {module} | {name} | {signatures} | {counts['gather']} | {counts['scatter']} "
              f"| {counts['masked load']} | {counts['masked store']} | {counts['sums on the stack']} "
              f"| {counts['fmaf calls']} |")
    print(f"\n{len(found)} compiled kernels hold gathers, scatters, AVX masked moves, loops with sums on the stack or "
          "calls to fmaf")


if __name__ == "__main__":
    main()
