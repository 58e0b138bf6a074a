"""Every path of the tuned conv kernels on every conv layer of ``simple`` and ``deep``, and what the plan picks.

    python benchmarks/bench_conv_paths.py [--batch 500] [--repeats 5] [--threads 2] [--untied] [--together] [--block]
                                          [--pools] [--dropout] [--winograd] [--skip-paths] [--against REV]

``hebbref.kernels.plan`` lists the candidate paths of each conv equation: the forward
pass (with the weight increment it implies, which reads its cache) by direct loops, by
k·k matrix products on shifted views or by Winograd's tiles (for the kernel widths they
apply to, ``plan.APPLIES``), and the input error e = Bᵀδ by direct loops, by the shifted
correlation, by the shifted scatter or by Winograd's tiles; the direct loops at each number
of terms per pass the plan measures (``direct:8``, ``direct:4``). This script times every path on
each layer, interleaved in one process, float32, Numba on ``--threads`` threads with
the process settings of the ``numba`` backend (``hebbref.runtime``), and prints next to
them what ``plan.choose`` picks here: the measured plan (timing on), and the default
from the shape (what ``HEBBREF_TUNE=0`` and the tests use). The rows here time each path's
forward pass with its own increment; the plan times a forward pass by Winograd's tiles, rows
or channels with whichever of those paths' increments is fastest (``plan.increment_after``). GFLOP/s count the useful
multiply-adds N·H·W·C_out·C_in·k² as 2 flops each (the forward row: forward and weight
increment, twice that). Above the table: the CPU (``runtime.cpu_key``) and NumPy's 2048² float32
product, the machine's limit at the time of the run.

``--untied`` adds a table of the untied (locally connected) layer's paths on the same
layer shapes, every path at every block size ``plan.BLOCKS`` lists, interleaved in the
same way, with each path's best time over the best time of the equation's other path.

``--against REV`` adds a table that times the conv paths by direct loops, shifted products,
rows and channels of this working tree and of git revision REV side by side (interleaved,
in this process; the direct loops at each terms-per-pass the plan measures, REV's at the
same one, or at its only one where REV's loops take none; the rows at each group size the
plan measures, where REV has them; the channels at each number of positions per pass the
plan measures, REV's at the same one or at its only one), best against best and the median
over rounds of the ratio within a round:
REV's ``hebbref/kernels/tuned_conv_direct.py``, ``tuned_conv_shifted.py``, ``tuned_conv_rows.py`` and
``tuned_conv_channels.py`` are
imported from a copy of REV's package (``git archive``) under another name. With
``--untied`` too, a second table does the same for the untied layer's functions that
REV has (``tuned_locally_connected.py``). A kernel change is judged by the ratio of the
two columns, which a busy host disturbs far less than it does either column.

``--pools`` adds a table that times every candidate of the max pool's forward pass (of the
ramp and the pool above it, for ``simple``'s; and of each of ``deep``'s pools again as it
reads its sum block's output σ(h) + a) on all threads, on the pools of ``simple`` and
``deep``, interleaved; with ``--against REV`` too, REV's paths of the same names
(``tuned_pooling.py``, each at the block size of the row) run in the same rounds, and
each row gives this tree's time over REV's.

``--dropout`` adds a table that times every candidate of dropout's draw (the mask and
the output, ``plan.candidates("dropout_draw", ...)``) on all threads, on the dropout
layers of ``simple`` and ``deep``, interleaved; with ``--against REV`` too, REV's paths
of the same names (``tuned_dropout.py``) run in the same rounds, and each row gives the
median over rounds of this tree's time over REV's.

``--winograd`` adds a table that times Winograd's paths (``tuned_conv_winograd``: "winograd"
and "winograd-4x4", at every number of images per block the plan times) on the layers
they apply to, the forward pass with its weight increment and the input error, on all
threads, interleaved; with ``--against REV`` too, REV's ``tuned_conv_winograd`` runs the
same calls in the same rounds, and each row gives the median over rounds of this tree's
time over REV's.

``--skip-paths`` leaves out the first table (every path of every layer), for a run of the
other tables alone.

``--together`` adds a table that times, on each conv layer, the ``numba`` backend's
input error and weight increment of one δ called one after the other against
``conv_backward``, which computes them together where ``plan.conv_backward_together``
finds a kernel for the layer's two plans (else it calls the same two functions):
interleaved, with the best and median of each and the median over rounds of the ratio
within a round.

``--block`` adds a table that times a conv layer, its ramp and the pool above
(``conv ramp pool``: ``simple``'s first block, and ``deep``'s first conv layer under a
3×3 pool at stride 3), and the same with an untied layer (``lc ramp pool``), forward
pass and backward pass to δ and G, by every candidate ``plan.candidates`` lists for
``conv_ramp_maxpool_forward`` and ``locally_connected_ramp_maxpool_forward`` on all
threads: interleaved, with the best and median of each and the median over rounds of
the ratio within a round to the ``in-turn`` path (the backend's functions one after
the other). With ``--against REV`` too, REV's path of the same name and block size (from
REV's ``plan``; a path REV ran at one size only, at that size) runs in the same rounds,
and each row gives the median over rounds of this tree's time over REV's.
"""
import argparse
import atexit
import functools
import importlib
import inspect
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import numba
import numpy as np

from hebbref import backends, runtime
from hebbref.kernels import plan

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rounds import median_round_ratio, race  # noqa: E402  (benchmarks/rounds.py)

# (name, C_in, C_out, H = W, k): simple on 28×28×1 and deep on 32×32×3
LAYERS = [("simple conv", 1, 32, 28, 5), ("deep 1a", 3, 16, 32, 3), ("deep 1b", 16, 16, 32, 3),
          ("deep 2a", 16, 64, 11, 3), ("deep 2b", 64, 64, 11, 3), ("deep 3", 64, 64, 6, 2)]


def interleaved_times(calls, repeats, seed=0):
    """{name: [ms, ...]}: each callable once per round, ``repeats`` rounds, after one warm-up call each.

    ``rounds.race``, in milliseconds: each round in an order of its own, drawn from ``seed``.
    """
    return {name: [1e3 * t for t in ts] for name, ts in race(calls, repeats, seed).items()}


def best_and_median(ms, digits=1):
    """"best / median" of one call's times in ms, for a table cell."""
    return f"{min(ms):.{digits}f} / {statistics.median(ms):.{digits}f}"


def best_times(calls, repeats):
    """Best wall time in ms of each callable over ``repeats`` rounds (``interleaved_times``)."""
    return {name: min(ts) for name, ts in interleaved_times(calls, repeats).items()}


def forward_and_increment(path, x, W, delta, **block):
    def call():
        _, (tag, cache) = plan.PATHS["conv_forward"][path](x, W, **block)
        plan.CONV_WEIGHT_INCREMENT[tag](delta, cache)
    return call


def direct_widths(calls, make):
    """``calls`` with its "direct" entry timed at every terms-per-pass the plan measures ("direct:8", "direct:4")."""
    if "direct" not in calls:
        return calls
    out = {}
    for path, call in calls.items():
        if path != "direct":
            out[path] = call
            continue
        for width in plan.BLOCKS["direct"][2]:
            out[f"direct:{width}"] = make(width)
    return out


def modules_at(revision, modules=("tuned_conv_direct", "tuned_conv_shifted", "tuned_locally_connected")):
    """``tuned_conv_direct``, ``tuned_conv_shifted`` and ``tuned_locally_connected`` as of git ``revision``.

    Imported from a copy of that revision's package, under another name.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    name = "hebbref_at_" + "".join(ch if ch.isalnum() else "_" for ch in revision)
    if name in sys.modules:  # copied already by an earlier table
        return tuple(importlib.import_module(f"{name}.kernels.{module}") for module in modules)
    where = tempfile.mkdtemp(prefix="hebbref-against-")
    atexit.register(shutil.rmtree, where, True)  # the copy, and the kernels Numba cached beside it, go at exit
    archive = subprocess.run(["git", "archive", revision, "hebbref"], cwd=root, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", where], input=archive, check=True)
    os.rename(os.path.join(where, "hebbref"), os.path.join(where, name))
    sys.path.insert(0, where)
    return tuple(importlib.import_module(f"{name}.kernels.{module}") for module in modules)


def has_module(revision, module):
    """Whether git ``revision`` has ``hebbref/kernels/<module>.py``."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run(["git", "cat-file", "-e", f"{revision}:hebbref/kernels/{module}.py"], cwd=root,
                          capture_output=True).returncode == 0


def registers_calls(module, label, x, W, delta, **block):
    """One revision's row or channel path (``tuned_conv_rows``, ``tuned_conv_channels``, named ``label``) at the block
    size given (``group=``, ``span=``; none for a revision whose path takes none): forward + increment, and the
    input error."""
    def forward_and_increment():
        _, cache = module.forward(x, W, **block)
        module.weight_increment(delta, cache)
    return {f"{label}: forward h + increment G": forward_and_increment,
            f"{label}: input error e": lambda: module.input_error(delta, W, **block)}


def takes(module, block):
    """Whether a revision's ``module.forward`` takes the block size ``block`` (the direct loops' ``width``, the
    channels' ``span``); an earlier one fixed it."""
    return block in inspect.signature(module.forward).parameters


def path_calls(direct, shifted, x, W, delta, **width):
    """Every path of one revision's modules: forward + increment and the input error, direct and shifted.

    ``width``: the direct loops' terms per pass, for a revision whose direct loops take it.
    """
    def direct_forward_and_increment():
        _, xp = direct.forward(x, W, **width)
        direct.weight_increment(delta, xp)

    def shifted_forward_and_increment():
        _, cache = shifted.forward(x, W)
        shifted.weight_increment(delta, cache)
    return {"direct: forward h + increment G": direct_forward_and_increment,
            "direct: input error e": lambda: direct.input_error(delta, W, **width),
            "shifted: forward h + increment G": shifted_forward_and_increment,
            "shifted: input error e, correlation": lambda: shifted.input_error_correlation(delta, W),
            "shifted: input error e, scatter": lambda: shifted.input_error_scatter(delta, W)}


def against_table(revision, batch, repeats, rng):
    """This tree's conv paths against ``revision``'s, interleaved: ms and the ratio this / revision."""
    from hebbref.kernels import tuned_conv_channels, tuned_conv_direct, tuned_conv_rows, tuned_conv_shifted
    base = modules_at(revision)[:2]
    base_rows = modules_at(revision, ("tuned_conv_rows",))[0] if has_module(revision, "tuned_conv_rows") else None
    base_channels = (modules_at(revision, ("tuned_conv_channels",))[0]
                     if has_module(revision, "tuned_conv_channels") else None)
    print(f"\n### every conv path: this tree against {revision}, best of {repeats}, interleaved\n")
    print(f"| layer (N, C_in→C_out, H×W, k) | path | {revision} (ms) | this tree (ms) | this / {revision} "
          f"| median of the rounds' ratios |")
    print("|---|---|---:|---:|---:|---:|")
    for name, c_in, c_out, size, k in LAYERS:
        x = rng.standard_normal((batch, c_in, size, size), dtype=np.float32)
        W = rng.standard_normal((c_out, c_in, k, k), dtype=np.float32)
        delta = rng.standard_normal((batch, c_out, size, size), dtype=np.float32)
        theirs = {(p, ""): f for p, f in path_calls(*base, x, W, delta).items()}
        ours = {(p, ""): f for p, f in path_calls(tuned_conv_direct, tuned_conv_shifted, x, W, delta).items()
                if not p.startswith("direct")}
        for width in plan.BLOCKS["direct"][2]:  # this tree's direct loops at each terms-per-pass the plan measures
            calls = path_calls(tuned_conv_direct, tuned_conv_shifted, x, W, delta, width=width)
            ours.update({(p, f", {width} terms per pass"): f for p, f in calls.items() if p.startswith("direct")})
            if takes(base[0], "width"):  # and the revision's at the same width, where its loops take one
                calls = path_calls(*base, x, W, delta, width=width)
                theirs.update({(p, f", {width} terms per pass"): f for p, f in calls.items() if p.startswith("direct")})
        for group in plan.BLOCKS["rows"][2] if base_rows is not None else ():  # the rows, where REV has them
            variant = f", {group} output channels per group"
            calls = registers_calls(tuned_conv_rows, "rows", x, W, delta, group=group)
            ours.update({(p, variant): f for p, f in calls.items()})
            calls = registers_calls(base_rows, "rows", x, W, delta, group=group)
            theirs.update({(p, variant): f for p, f in calls.items()})
        if base_channels is not None and not takes(base_channels, "span"):  # REV's channels at their only span
            theirs.update({(p, ""): f for p, f in registers_calls(base_channels, "channels", x, W, delta).items()})
        for span in plan.BLOCKS["channels"][2] if base_channels is not None else ():  # the channels, where REV has them
            variant = f", {span} positions per pass"
            calls = registers_calls(tuned_conv_channels, "channels", x, W, delta, span=span)
            ours.update({(p, variant): f for p, f in calls.items()})
            if takes(base_channels, "span"):  # and REV's at the same span
                calls = registers_calls(base_channels, "channels", x, W, delta, span=span)
                theirs.update({(p, variant): f for p, f in calls.items()})
        times = interleaved_times({**{("base", p): f for p, f in theirs.items()},
                                   **{("this", p): f for p, f in ours.items()}}, repeats)
        for path, variant in ours:
            before = times[("base", (path, variant if (path, variant) in theirs else ""))]
            after = times[("this", (path, variant))]
            ratio = median_round_ratio(after, before)
            print(f"| {name} ({batch}, {c_in}→{c_out}, {size}×{size}, {k}) | {path}{variant} | {min(before):.1f} "
                  f"| {min(after):.1f} | {min(after) / min(before):.2f} | {ratio:.2f} |")


# (name, C, H = W, window, stride, what is pooled: "ramp" σ(h), "sum" a sum block's σ(h) + a, else x itself)
POOLS = [("simple: ramp, pool3s2", 32, 28, 3, 2, "ramp"), ("deep: pool3s3", 16, 32, 3, 3, "x"),
         ("deep: pool2s2", 64, 11, 2, 2, "x"), ("deep: pool2s2, last", 64, 6, 2, 2, "x"),
         ("deep: sum block, pool3s3", 16, 32, 3, 3, "sum"), ("deep: sum block, pool2s2", 64, 11, 2, 2, "sum"),
         ("deep: sum block, pool2s2, last", 64, 6, 2, 2, "sum")]
def candidate_calls(equation, arguments, base=None):
    """{("this", path): call, ("base", path): call}: every candidate of ``equation`` on all threads, on ``arguments``.

    A path's name carries its block size ("lanes:64"). With ``base`` (a revision's kernel
    module, ``modules_at``), its function of the same name, at the candidate's block
    size, where it has one.
    """
    calls = {}
    for label, candidate in plan.candidates(equation, arguments).items():
        if candidate.threads != numba.get_num_threads():
            continue
        path_name = label.rsplit("/", 1)[0]
        calls[("this", path_name)] = lambda f=plan.path_function(equation, candidate): f(*arguments)
        function = getattr(base, plan.PATHS[equation][candidate.path].__name__, None) if base else None
        if function is not None:
            if candidate.block is not None:
                function = functools.partial(function, **{plan.BLOCKS[candidate.path][1]: candidate.block})
            calls[("base", path_name)] = lambda f=function: f(*arguments)
    return calls


# the equation that pools each kind, and its arguments after the pooled array(s)
POOL_EQUATIONS = {"ramp": "ramp_maxpool_forward", "sum": "ramp_plus_maxpool_forward", "x": "maxpool_forward"}


def pools_table(batch, repeats, rng, revision=None):
    """Every candidate of the pool's forward pass (and of the ramp and pool's, and the sum block and pool's) on all threads, interleaved.

    With ``revision``, that revision's paths of the same equation (its ``tuned_pooling``,
    each at the block size of the row) run in the same rounds, and each row gives the best
    time over the best time of the same path and size at ``revision``, and over that of
    the fastest path ``revision`` has.
    """
    base = modules_at(revision, ("tuned_pooling",))[0] if revision else None
    against = f" | {revision} (ms) | this / {revision} | this / fastest at {revision}" if revision else ""
    print(f"\n### the max pool's forward pass, every path, best of {repeats}, interleaved\n")
    print(f"| pool (N, C, H×W) | path | ms{against} |")
    print("|---|---|---:" + ("|---:|---:|---:|" if revision else "|"))
    for name, C, size, k, t, kind in POOLS:
        x = (rng.standard_normal((batch, C, size, size)) * 3).astype(np.float32)
        equation = POOL_EQUATIONS[kind]
        a = rng.random((batch, C, size, size), dtype=np.float32)  # a sum block's first ramp's output
        arguments = {"ramp": (x, k, t, 0.5), "sum": (x, a, k, t, 0.5), "x": (x, k, t)}[kind]
        best = best_times(candidate_calls(equation, arguments, base), repeats)
        fastest_before = min((ms for (tree, _), ms in best.items() if tree == "base"), default=None)
        for (tree, label), ms in best.items():
            if tree != "this":
                continue
            row = f"| {name} ({batch}, {C}, {size}×{size}) | {label} | {ms:.1f}"
            if base is not None:
                before = best.get(("base", label))
                row += f" | {before:.1f} | {ms / before:.2f}" if before else " | | "
                row += f" | {ms / fastest_before:.2f}"
            print(row + " |")


# (name, shape, p): the dropout layers of simple (after its pool, after its dense layer) and of deep
DROPOUTS = [("simple, after the pool", (32, 14, 14), 0.8), ("simple, after dense500", (500,), 0.3),
            ("deep, after pool3s3", (16, 11, 11), 0.5), ("deep, after the last pool", (64, 3, 3), 0.5)]


def dropout_table(batch, repeats, rng, revision=None):
    """Every candidate of dropout's draw on all threads, on the dropout layers of simple and deep, interleaved.

    Each call draws from a generator of its own, seeded 0 (as the plan times them). With
    ``revision``, that revision's paths of the same names (its ``tuned_dropout``, at the
    block size of the row) run in the same rounds, and each row gives the median over
    rounds of this tree's time over the revision's.
    """
    base = modules_at(revision, ("tuned_dropout",))[0] if revision else None
    against = f" | {revision}: best / median (ms) | median of the rounds' ratios this / {revision}" if base else ""
    print(f"\n### dropout's draw (mask and output), every path, best / median of {repeats}, interleaved\n")
    print(f"| layer (shape, p) | path | this tree: best / median (ms){against} |")
    print("|---|---|---:" + ("|---:|---:|" if base else "|"))
    for name, shape, p in DROPOUTS:
        x = rng.standard_normal((batch,) + shape, dtype=np.float32)
        times = interleaved_times(candidate_calls("dropout_draw", (x, p), base), repeats)
        for (tree, label), ms in times.items():
            if tree != "this":
                continue
            row = f"| {name} ({batch}, {', '.join(map(str, shape))}; {p}) | {label} | {best_and_median(ms, 2)}"
            before = times.get(("base", label))
            if before is not None:
                row += f" | {best_and_median(before, 2)} | {median_round_ratio(ms, before):.2f}"
            elif base is not None:
                row += " | | "
            print(row + " |")


def paths_table(batch, repeats, rng):
    """Every path of each conv equation on every layer, interleaved, with the plan's choice and the default."""
    print("| layer (N, C_in→C_out, H×W, k) | equation | path | ms | GFLOP/s | plan's choice | default |")
    print("|---|---|---|---:|---:|---|---|")
    for name, c_in, c_out, size, k in LAYERS:
        x = rng.standard_normal((batch, c_in, size, size), dtype=np.float32)
        W = rng.standard_normal((c_out, c_in, k, k), dtype=np.float32)
        delta = rng.standard_normal((batch, c_out, size, size), dtype=np.float32)
        flops = 2 * batch * size * size * c_out * c_in * k * k
        error_direct = plan.PATHS["conv_input_error"]["direct"]
        rows = {
            "forward h + increment G": (direct_widths({path: forward_and_increment(path, x, W, delta)
                                                       for path in plan.PATHS["conv_forward"]
                                                       if plan.applies("conv_forward", path, (x, W))},
                                                      lambda width: forward_and_increment("direct", x, W, delta,
                                                                                          width=width)),
                                        2 * flops, ("conv_forward", (x, W))),
            "input error e": (direct_widths({path: (lambda f=f: f(delta, None, W))
                                             for path, f in plan.PATHS["conv_input_error"].items()
                                             if plan.applies("conv_input_error", path, (delta, None, W))},
                                            lambda width: lambda: error_direct(delta, None, W, width=width)),
                              flops, ("conv_input_error", (delta, None, W))),
        }
        for equation, (calls, work, (plan_name, arguments)) in rows.items():
            best = best_times(calls, repeats)
            chosen = plan.choose(plan_name, *arguments)
            default = plan.default_plan(plan_name, arguments)
            for label, ms in best.items():
                path, _, width = label.partition(":")
                picked = path == chosen.path and (not width or int(width) == chosen.block)
                print(f"| {name} ({batch}, {c_in}→{c_out}, {size}×{size}, {k}) | {equation} | {label} "
                      f"| {ms:.1f} | {work / ms / 1e6:.0f} | {plan.describe(chosen) if picked else ''} "
                      f"| {'default' if path == default.path and (not width or int(width) == default.block) else ''} |")


def winograd_table(batch, repeats, rng, revision=None):
    """Winograd's paths (``tuned_conv_winograd``) on every layer they apply to, at every block size, interleaved.

    For each tile ("winograd", "winograd-4x4") and images per block the plan times: the
    forward pass with the weight increment it implies, and the input error. With
    ``revision``, that revision's ``tuned_conv_winograd`` runs the same calls in the same
    rounds, and each row gives the median over rounds of this tree's time over the revision's.
    """
    from hebbref.kernels import tuned_conv_winograd
    base = modules_at(revision, ("tuned_conv_winograd",))[0] if revision else None
    against = f" | {revision}: best / median (ms) | median of the rounds' ratios this / {revision}" if base else ""
    print(f"\n### Winograd's tiles, every block size, best / median of {repeats}, interleaved\n")
    print(f"| layer (N, C_in→C_out, H×W, k) | equation | path | this tree: best / median (ms){against} |")
    print("|---|---|---|---:" + ("|---:|---:|" if base else "|"))

    def calls_of(module, x, W, delta, m, images):
        def forward_and_increment():
            _, cache = module.forward(x, W, m, images)
            module.weight_increment(delta, cache)
        return {"forward h + increment G": forward_and_increment,
                "input error e": lambda: module.input_error(delta, W, m, images)}

    for name, c_in, c_out, size, k in LAYERS:
        x = rng.standard_normal((batch, c_in, size, size), dtype=np.float32)
        W = rng.standard_normal((c_out, c_in, k, k), dtype=np.float32)
        delta = rng.standard_normal((batch, c_out, size, size), dtype=np.float32)
        calls = {}
        for path, m in (("winograd", 5 - k), ("winograd-4x4", 4)):
            if not plan.applies("conv_forward", path, (x, W)):
                continue
            for images in plan.BLOCKS[path][2]:
                label = f"{path}:{images}"
                for tree, module in (("this", tuned_conv_winograd), ("base", base)):
                    if module is not None:
                        for equation, call in calls_of(module, x, W, delta, m, images).items():
                            calls[(tree, equation, label)] = call
        if not calls:
            continue
        times = interleaved_times(calls, repeats)
        for (tree, equation, label), ms in times.items():
            if tree != "this":
                continue
            row = (f"| {name} ({batch}, {c_in}→{c_out}, {size}×{size}, {k}) | {equation} | {label} "
                   f"| {best_and_median(ms)}")
            before = times.get(("base", equation, label))
            if before is not None:
                row += f" | {best_and_median(before)} | {median_round_ratio(ms, before):.2f}"
            print(row + " |")


UNTIED_EQUATIONS = ("locally_connected_forward", "locally_connected_input_error", "locally_connected_weight_increment")


def untied_table(batch, repeats, rng):
    """Every path and block size of the untied layer's three equations on each layer shape of ``LAYERS``."""
    print("\n| layer, untied (N, C_in→C_out, H×W, k) | equation | path | ms | GFLOP/s | best of the other path / this |")
    print("|---|---|---|---:|---:|---:|")
    with plan.on_threads(numba.get_num_threads()):
        for name, c_in, c_out, size, k in LAYERS:
            x = rng.standard_normal((batch, c_in, size, size), dtype=np.float32)
            W = rng.standard_normal((size, size, c_out, c_in, k, k), dtype=np.float32)
            delta = rng.standard_normal((batch, c_out, size, size), dtype=np.float32)
            _, cache = plan.PATHS["locally_connected_forward"]["loops-tiled"](x, W)
            arguments = {"locally_connected_forward": (x, W), "locally_connected_input_error": (delta, cache, W),
                         "locally_connected_weight_increment": (delta, cache)}
            flops = 2 * batch * size * size * c_out * c_in * k * k
            for equation in UNTIED_EQUATIONS:
                calls = {}
                for label, candidate in plan.candidates(equation).items():
                    if candidate.threads == numba.get_num_threads():
                        function = plan.path_function(equation, candidate)
                        calls[label.rsplit("/", 1)[0]] = lambda f=function, a=arguments[equation]: f(*a)
                best = best_times(calls, repeats)
                fastest = {}  # path -> its best time over its block sizes
                for label, ms in best.items():
                    path = label.split(":")[0]
                    fastest[path] = min(fastest.get(path, ms), ms)
                for label, ms in best.items():
                    path = label.split(":")[0]
                    others = [t for p, t in fastest.items() if p != path]
                    ratio = f"{min(others) / ms:.2f}" if others else ""
                    print(f"| {name} ({batch}, {c_in}→{c_out}, {size}×{size}, {k}) | {equation.split('_', 2)[2]} "
                          f"| {label} | {ms:.1f} | {flops / ms / 1e6:.0f} | {ratio} |")


# (equation, the untied layer's function, its tile sizes to time: None for a path without tiles)
UNTIED_FUNCTIONS = [
    ("forward", "locally_connected_forward_batch_last", (256, 512)),
    ("forward", "locally_connected_forward", (None,)),
    ("input error", "locally_connected_input_error_batch_last", (256, 512)),
    ("input error", "locally_connected_input_error", (None,)),
    ("input error", "locally_connected_input_error_planes", (None,)),
    ("weight increment", "locally_connected_weight_increment_batch_last", (256, 512)),
    ("weight increment", "locally_connected_weight_increment", (None,)),
]


def untied_against_table(revision, batch, repeats, rng):
    """This tree's untied kernels against ``revision``'s (those it has), interleaved: ms and this / revision."""
    from hebbref.kernels import tuned_locally_connected as ours
    theirs = modules_at(revision)[2]
    print(f"\n### every untied path: this tree against {revision}, best of {repeats}, interleaved\n")
    print(f"| layer, untied (N, C_in→C_out, H×W, k) | equation | function, images per tile | {revision} (ms) "
          f"| this tree (ms) | this / {revision} |")
    print("|---|---|---|---:|---:|---:|")
    for name, c_in, c_out, size, k in LAYERS:
        x = rng.standard_normal((batch, c_in, size, size), dtype=np.float32)
        W = rng.standard_normal((size, size, c_out, c_in, k, k), dtype=np.float32)
        delta = rng.standard_normal((batch, c_out, size, size), dtype=np.float32)
        _, xp = ours.locally_connected_forward(x, W)
        arguments = {"forward": (x, W), "input error": (delta, xp, W), "weight increment": (delta, xp)}
        calls, rows = {}, []
        for equation, function, tiles in UNTIED_FUNCTIONS:
            if not hasattr(theirs, function):
                continue
            for tile in tiles:
                row = (equation, function + ("" if tile is None else f", {tile}"))
                rows.append(row)
                for side, module in (("base", theirs), ("this", ours)):
                    f = getattr(module, function)
                    calls[(side, row)] = (lambda f=f, a=arguments[equation], t=tile:
                                          f(*a) if t is None else f(*a, tile_size=t))
        best = best_times(calls, repeats)
        for equation, label in rows:
            before, after = best[("base", (equation, label))], best[("this", (equation, label))]
            print(f"| {name} ({batch}, {c_in}→{c_out}, {size}×{size}, {k}) | {equation} | {label} | {before:.1f} "
                  f"| {after:.1f} | {after / before:.2f} |")


def together_table(batch, repeats, rng):
    """conv_input_error then conv_weight_increment against conv_backward, through the numba backend's plans."""
    ops = backends.get_backend("numba")
    print(f"\n### a conv layer's input error and increment of one δ: one after the other, or together; "
          f"{repeats} interleaved rounds\n")
    print("| layer (N, C_in→C_out, H×W, k) | kernel together | two functions, best / median (ms) "
          "| together, best / median (ms) | median of the rounds' ratios |")
    print("|---|---|---:|---:|---:|")
    for name, c_in, c_out, size, k in LAYERS:
        x = rng.standard_normal((batch, c_in, size, size), dtype=np.float32)
        W = rng.standard_normal((c_out, c_in, k, k), dtype=np.float32)
        delta = rng.standard_normal((batch, c_out, size, size), dtype=np.float32)
        _, cache = ops.conv_forward(x, W)
        kernel = plan.conv_backward_together(cache[0], plan.choose("conv_input_error", delta, None, W))
        calls = {"two": lambda: (ops.conv_input_error(delta, cache, W), ops.conv_weight_increment(delta, cache)),
                 "together": lambda: ops.conv_backward(delta, cache, W)}
        times = interleaved_times(calls, repeats)
        two, together = times["two"], times["together"]
        paired = median_round_ratio(together, two)
        print(f"| {name} ({batch}, {c_in}→{c_out}, {size}×{size}, {k}) | {kernel.__name__ if kernel else 'none'} "
              f"| {best_and_median(two)} | {best_and_median(together)} "
              f"| {paired:.2f} |")


# (name, C_in, C_out, H = W, k of the conv or untied layer, window and stride of the pool)
BLOCKS = [("simple {kind} ramp pool", 1, 32, 28, 5, 3, 2), ("deep 1a as {kind}, ramp, pool3s3", 3, 16, 32, 3, 3, 3)]


def block_table(batch, repeats, rng, revision=None):
    """Every candidate path of the tied and the untied block, forward and backward, against the in-turn path, interleaved.

    With ``revision``, that revision's path of the same name and block size (its
    ``plan.PATHS`` and the backward pass it pairs with each) runs in the same rounds, and
    each row gives its times and the median over rounds of this tree's time over it. A
    path that REV ran at one size only (no ``BLOCKS`` entry) stands, as REV ran it,
    against each of this tree's block sizes.
    """
    base = modules_at(revision, ("plan",))[0] if revision else None
    against = f" | {revision}: best / median (ms) | median of the rounds' ratios this / {revision}" if base else ""
    print(f"\n### a conv or untied layer, its ramp and the pool above, forward and backward (δ and G); "
          f"{repeats} interleaved rounds\n")
    print("| block (N, C_in→C_out, H×W, k; pool) | path | best / median (ms) | median of the rounds' ratios to in-turn"
          f"{against} |")
    print("|---|---|---:|---:|" + ("---:|---:|" if base else ""))
    every = numba.get_num_threads()
    for equation, kind in (("conv_ramp_maxpool_forward", "conv"), ("locally_connected_ramp_maxpool_forward", "lc")):
        for name, c_in, c_out, size, k, window, stride in BLOCKS:
            x = rng.standard_normal((batch, c_in, size, size), dtype=np.float32)
            locations = (size, size) if kind == "lc" else ()
            W = (rng.standard_normal(locations + (c_out, c_in, k, k)) / k).astype(np.float32)

            def block_call(forward, backward):
                def call():
                    y, _, _, cache = forward(x, W, window, stride, 0.5)
                    backward(np.ones_like(y), cache, 0.5)
                return call
            calls = {}
            for label, candidate in plan.candidates(equation).items():
                if candidate.threads != every:
                    continue
                label = label.rsplit("/", 1)[0]
                calls[("this", label)] = block_call(plan.path_function(equation, candidate),
                                                    plan.BLOCK_BACKWARD[equation][candidate.path])
                forward = getattr(base, "PATHS", {}).get(equation, {}).get(candidate.path)
                backward = getattr(base, "BLOCK_BACKWARD", {}).get(equation, {}).get(candidate.path)
                block = getattr(base, "BLOCKS", {}).get(candidate.path)
                if forward is not None and backward is not None:
                    if candidate.block is not None and block:
                        forward = functools.partial(forward, **{block[1]: candidate.block})
                    calls[("base", label)] = block_call(forward, backward)  # a path REV had unblocked: as it was
            times = interleaved_times(calls, repeats)
            in_turn = times[("this", "in-turn")]
            for (tree, label), ts in times.items():
                if tree != "this":
                    continue
                paired = median_round_ratio(ts, in_turn)
                row = (f"| {name.format(kind=kind)} ({batch}, {c_in}→{c_out}, {size}×{size}, {k}; "
                       f"pool{window}s{stride}) | {label} | {best_and_median(ts)} | {paired:.2f}")
                if base is not None:
                    before = times.get(("base", label))
                    row += f" | {best_and_median(before)} | {median_round_ratio(ts, before):.2f}" if before else " | | "
                print(row + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--untied", action="store_true", help="also time every path of the untied layer's kernels")
    parser.add_argument("--against", metavar="REV", help="also time every conv path of git revision REV against this tree's")
    parser.add_argument("--block", action="store_true",
                        help="also time a conv or untied layer, its ramp and the pool above by every path of the block")
    parser.add_argument("--pools", action="store_true",
                        help="also time every path of the max pool's forward pass on the pools of simple and deep")
    parser.add_argument("--dropout", action="store_true",
                        help="also time every path of dropout's draw on the dropout layers of simple and deep")
    parser.add_argument("--skip-paths", action="store_true", help="leave out the first table (every path of every layer)")
    parser.add_argument("--winograd", action="store_true",
                        help="also time Winograd's paths at every block size on the layers they apply to")
    parser.add_argument("--together", action="store_true",
                        help="also time each conv layer's input error and increment one after the other and together")
    args = parser.parse_args()
    backends.get_backend("numba")  # as in training: the runtime's process settings
    numba.set_num_threads(args.threads)
    rng = np.random.default_rng(0)

    print(f"CPU: {runtime.cpu_key()}; batch {args.batch}, float32, Numba {args.threads} threads, "
          f"best of {args.repeats}, interleaved; plans timed: {plan.timing_enabled()}\n")
    square = rng.standard_normal((2048, 2048), dtype=np.float32)
    matmul = best_times({"matmul": lambda: square @ square}, args.repeats)["matmul"]
    print(f"NumPy float32 2048² matmul: {2 * 2048**3 / matmul / 1e6:.0f} GFLOP/s\n")
    if not args.skip_paths:
        paths_table(args.batch, args.repeats, rng)
    if args.untied:
        untied_table(args.batch, args.repeats, rng)
    if args.together:
        together_table(args.batch, args.repeats, rng)
    if args.block:
        block_table(args.batch, args.repeats, rng, args.against)
    if args.pools:
        pools_table(args.batch, args.repeats, rng, args.against)
    if args.dropout:
        dropout_table(args.batch, args.repeats, rng, args.against)
    if args.winograd:
        winograd_table(args.batch, args.repeats, rng, args.against)
    if args.against:
        against_table(args.against, args.batch, args.repeats, rng)
        if args.untied:
            untied_against_table(args.against, args.batch, args.repeats, rng)


if __name__ == "__main__":
    main()
