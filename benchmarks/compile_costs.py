"""Where the first step's time goes with an empty cache: each compiled function's own compile time.

    python benchmarks/compile_costs.py [--net simple] [--untied] [--batch 8] [--top 25]

Runs, in a fresh process with an empty Numba cache and no plan on file (both in a
temporary folder), what the compile table of ``bench_training_step.py`` times: the build
of the network and its first urfb training step in float32 on the ``numba`` backend, the
plans measured, so every candidate path of every layer is compiled. Numba reports each
compilation as an event (``numba:compile``, ``numba.core.event``), opened when a
function is compiled for a new signature and closed when that is done, around the
compilations of the functions it calls; here each function's own time is its events'
time less that of the compilations nested in them, and of that the time LLVM held its
lock (``numba:llvm_lock``), the rest being Numba's own passes. Prints the step's time, the
sum of the compile times, and the functions that took longest, with how many builds
(signatures, spans, block sizes) each took. Compile times vary between runs by a few per
cent, and more on a busy host.
"""
import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = "--child"


def own_compile_times(step):
    """Run ``step()`` with listeners on Numba's events: -> (seconds of the step, {name: [builds, own s, own LLVM s]}).

    A function's own LLVM time is the time LLVM held its lock (``numba:llvm_lock``: building,
    optimising and emitting machine code) while the function, and none nested in it, was
    being compiled; the rest of its own time is Numba's (typing, its passes, lowering).
    """
    from numba.core import event

    open_events = []  # [name, start, seconds of the compilations nested in it, own LLVM seconds]
    totals = collections.defaultdict(lambda: [0, 0.0, 0.0])
    llvm = [0, 0.0]  # depth of the LLVM lock, when it was taken

    class Compiles(event.Listener):
        def on_start(self, ev):
            function = ev.data["dispatcher"].py_func
            open_events.append([f"{function.__module__}.{function.__qualname__}", time.perf_counter(), 0.0, 0.0])

        def on_end(self, ev):
            name, start, nested, own_llvm = open_events.pop()
            seconds = time.perf_counter() - start
            totals[name][0] += 1
            totals[name][1] += seconds - nested
            totals[name][2] += own_llvm
            if open_events:
                open_events[-1][2] += seconds

    class LLVM(event.Listener):
        def on_start(self, ev):
            llvm[0] += 1
            if llvm[0] == 1:
                llvm[1] = time.perf_counter()

        def on_end(self, ev):
            llvm[0] -= 1
            if llvm[0] == 0 and open_events:
                open_events[-1][3] += time.perf_counter() - llvm[1]

    listeners = {"numba:compile": Compiles(), "numba:llvm_lock": LLVM()}
    for kind, listener in listeners.items():
        event.register(kind, listener)
    try:
        start = time.perf_counter()
        step()
        return time.perf_counter() - start, dict(totals)
    finally:
        for kind, listener in listeners.items():
            event.unregister(kind, listener)


def child(net, untied, batch):
    import numpy as np

    import hebbref

    shape = (3, 32, 32) if net == "deep" else (1, 28, 28)

    def step():
        network = hebbref.build_network(net, shape, 10, rule="urfb", dtype="float32", backend="numba", untied=untied)
        x = np.random.default_rng(0).random((batch,) + shape, dtype=np.float32)
        network.train_step(x, np.arange(batch) % 10)

    seconds, totals = own_compile_times(step)
    print(json.dumps({"step": seconds, "functions": totals}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--net", default="simple", choices=["simple", "deep"])
    parser.add_argument("--untied", action="store_true", help="every conv layer locally connected")
    parser.add_argument("--batch", type=int, default=8, help="images in the step (default 8, as the compile table)")
    parser.add_argument("--top", type=int, default=25, help="functions listed (default 25)")
    parser.add_argument(CHILD, action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.net, args.untied, args.batch)
    with tempfile.TemporaryDirectory() as folder:
        env = dict(os.environ, NUMBA_CACHE_DIR=folder, HEBBREF_CACHE=folder, HEBBREF_TUNE="1")
        command = [sys.executable, __file__, CHILD, "--net", args.net, "--batch", str(args.batch)]
        result = subprocess.run(command + (["--untied"] if args.untied else []), env=env, capture_output=True,
                                text=True)
    if result.returncode != 0:  # the step failed: say why
        sys.stderr.write(result.stderr)
        return result.returncode
    report = json.loads(result.stdout.strip().splitlines()[-1])
    functions = sorted(report["functions"].items(), key=lambda item: -item[1][1])
    compiling = sum(seconds for _, seconds, _ in report["functions"].values())
    in_llvm = sum(seconds for _, _, seconds in report["functions"].values())
    name = f"{args.net}{' untied' if args.untied else ''}"
    print(f"`{name}`: build and first urfb step at batch {args.batch}, empty cache, plans measured: "
          f"{report['step']:.1f} s, of which compiling {compiling:.1f} s ({len(functions)} functions; LLVM "
          f"{in_llvm:.1f} s of it)\n")
    print("| function | builds | own compile time (s) | of which LLVM (s) | share of the step |")
    print("|---|---:|---:|---:|---:|")
    for function, (builds, seconds, llvm_seconds) in functions[:args.top]:
        print(f"| `{function}` | {builds} | {seconds:.2f} | {llvm_seconds:.2f} | {seconds / report['step']:.1%} |")
    rest = functions[args.top:]
    if rest:
        builds, seconds, llvm_seconds = (sum(values[i] for _, values in rest) for i in range(3))
        print(f"| {len(rest)} others | {builds} | {seconds:.2f} | {llvm_seconds:.2f} | {seconds / report['step']:.1%} |")


if __name__ == "__main__":
    sys.exit(main())
