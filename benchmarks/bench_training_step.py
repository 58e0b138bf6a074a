"""Speed of hebbref's compiled backend against PyTorch on the same CPU, and against the machine's limit.

    python benchmarks/bench_training_step.py [--batch 500] [--repeats 7]

Prints one Markdown table per measurement of issue 3:
1. a training step (forward, backward, update) of ``simple`` on 28×28×1, batch 500,
   float32, 10 classes, hinge loss, ``bp``: hebbref ``numba`` vs the same network in PyTorch;
2. the same with the conv layer untied, against PyTorch's unfold + einsum;
3. ``deep`` on 32×32×3, tied, against PyTorch;
4. ``urfb`` vs ``bp`` step time in hebbref (the price of the feedback update), then where it goes: the
   time of each backend call in a bp, a frfb and a urfb step (``price_table``: frfb sends the error
   through R as urfb does, and does not update it);
5. each conv / untied kernel's GFLOP/s next to NumPy's float32 matmul (the arithmetic limit),
   the two raced call by call;
6. where hebbref ``numba``'s step goes, for the three networks of tables 1 to 3: the time of
   each backend call the network makes (the dense layers' products, the dropout layers'
   backward pass and the weight updates among them), each against hebbref's step and
   against PyTorch's step in the same rounds (``step_parts``);
7. issue 16's speed targets on this CPU, each judged on the ratios of tables 1 to 5 that
   ran (``target_rows``): met, met by the best only, or not met; and whether the 95 %
   interval of the median of the rounds' ratios (``median_interval``) lies wholly on the
   line's side, wholly past it, or across it;
and the compile cost (first step in a fresh process, with an empty and with a filled
Numba cache); with ``--plan-cost``, the cost of measuring the plans (the first step at
``--batch`` in a fresh process, every kernel compiled, no plan on file), as
``hebbref.kernels.plan`` races the candidates and with every candidate timed in every
round. Above the tables: the CPU (``runtime.cpu_key``), the versions, the thread counts, the
process settings the ``numba`` backend made (``hebbref.runtime``) and the pace of the
machine (NumPy's float32 matmul, ``machine_pace``; again at the end); below them, the
plan ``hebbref.kernels.plan.choose`` took for every layer shape (measured on this
machine during the warm-up steps, into a fresh plan file, removed at exit, unless ``--reuse-plans``;
the default from the shapes with ``HEBBREF_TUNE=0``).

All contenders run interleaved, one step each in turn, ``--repeats`` times; the table
gives the best (least disturbed) time of each, in milliseconds, the median, the ratio of
the bests, and the median over rounds of the ratio within a round (hebbref numba runs
right before PyTorch in each round, so the two runs of a round meet nearly the same load
of the machine; the bests of a busy machine may come from different moments). Table 4,
which judges a line 5 % from its baseline, runs ``--price-rounds`` rounds (default 41)
rather than ``--repeats``: on a shared host the median of 7 rounds' ratios moves by a few
per cent from run to run, and table 7 gives each median's 95 % interval. PyTorch
(``pip install torch==2.13.0``, a benchmark-only extra, never a hebbref dependency)
runs with as many threads as Numba; without it the PyTorch columns say so.
"""
import argparse
import atexit
import collections
import dataclasses
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

# NumPy's OpenBLAS reads this once, as NumPy loads: its idle threads then sleep at once instead
# of spinning ~0.1 s against Numba's after every product (hebbref/runtime.py). Importing hebbref
# no longer sets it, so this script does, for its own process, as BENCHMARKS.md's earlier runs had
# it; --no-blas-timeout leaves the environment as it is (a value already set always wins).
if "--no-blas-timeout" not in sys.argv:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numba  # noqa: E402
import numpy as np  # noqa: E402

import hebbref  # noqa: E402
import hebbref.modules  # noqa: E402
import hebbref.rules  # noqa: E402
from hebbref import backends, runtime  # noqa: E402
from hebbref.kernels import plan  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rounds import median_round_ratio, race, round_ratios  # noqa: E402  (benchmarks/rounds.py)

try:
    import torch
    import torch_models
except ImportError:  # the PyTorch columns are left out
    torch = None


def hebbref_step(net_name, input_shape, rule, backend, untied, batch, seed=0):
    """A callable doing one hebbref training step on a fixed random batch."""
    net = hebbref.build_network(net_name, input_shape, 10, rule=rule, dtype="float32", backend=backend,
                                untied=untied, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.random((batch,) + input_shape, dtype=np.float32)
    y = rng.integers(0, 10, size=batch)
    return lambda: net.train_step(x, y, lr=0.01, loss="hinge")


def torch_step(net_name, input_shape, untied, batch, seed=0, device="cpu"):
    """A callable doing one step of the PyTorch twin, its tensors on ``device`` (drawn on the CPU)."""
    model = (torch_models.Simple(input_shape, 10, untied=untied, seed=seed) if net_name == "simple"
             else torch_models.Deep(input_shape, 10, seed=seed)).to(device)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((batch,) + input_shape, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    return lambda: torch_models.train_step(model, x, y, lr=0.01)  # .item() waits for a GPU


def table(title, times, baseline, note=""):
    print(f"\n### {title}\n")
    if note:
        print(note + "\n")
    print(f"| contender | best (ms) | median (ms) | best / {baseline} | median of the rounds' ratios |")
    print("|---|---:|---:|---:|---:|")
    base = min(times[baseline]) if baseline in times else None
    for name, ts in times.items():
        ratio = f"{min(ts) / base:.2f}" if base else "n/a"
        print(f"| {name} | {1e3 * min(ts):.1f} | {1e3 * statistics.median(ts):.1f} | {ratio} | "
              f"{paired_ratio(ts, times[baseline]) if base else 'n/a'} |")


def paired_ratio(ts, baseline_ts):
    """The median over rounds of ``rounds.round_ratios``, as the tables print it."""
    return f"{median_round_ratio(ts, baseline_ts):.2f}"


def median_interval(ratios, confidence=0.95):
    """(low, high): a distribution-free ``confidence`` interval for the median of the law the ratios are drawn from.

    The k-th smallest and the k-th largest of the n ratios, k the largest with
    P(Binomial(n, 1/2) < k) ≤ (1 − confidence) / 2: the median lies below the k-th
    smallest only if fewer than k of the n draws fell below it, each with chance 1/2, so
    the interval holds the median with chance at least ``confidence`` whatever the law
    (the rounds taken as independent draws of one law; a host whose load drifts during
    the run breaks that). None under 6 ratios at 95 %, where even (min, max) is too narrow.
    """
    ordered, n = sorted(ratios), len(ratios)
    k, tail = 0, 1 / 2 ** n  # tail = P(Binomial(n, 1/2) < k + 1); it passes 1/2 before k reaches n / 2
    while tail <= (1 - confidence) / 2:
        k += 1
        tail += math.comb(n, k) / 2 ** n
    return (ordered[k - 1], ordered[n - k]) if k else None


def network_tables(batch, repeats, tables=(1, 2, 3, 4), results=None, price_rounds=None):
    """Tables 1 to 4; each ratio a target is judged by goes into ``results`` (``record``) when given.

    Table 4 (urfb against bp, a line 5 % from the baseline) runs ``price_rounds`` rounds (default ``repeats``).
    """
    no_torch = "" if torch else "PyTorch is not installed (`pip install torch==2.13.0`): its column is left out."
    cases = [
        ("1. `simple`, 28×28×1, tied, bp", "simple", (1, 28, 28), False),
        ("2. `simple`, 28×28×1, untied (PyTorch: unfold + einsum), bp", "simple", (1, 28, 28), True),
        ("3. `deep`, 32×32×3, tied, bp", "deep", (3, 32, 32), False),
    ]
    for number, (title, net_name, shape, untied) in enumerate(cases, 1):
        if number not in tables:
            continue
        contenders = {"hebbref numba": hebbref_step(net_name, shape, "bp", "numba", untied, batch)}
        if torch:  # right after hebbref numba in each round: the two runs a ratio compares meet the same load
            contenders["PyTorch"] = torch_step(net_name, shape, untied, batch)
        contenders["hebbref numpy (reference)"] = hebbref_step(net_name, shape, "bp", "numpy", untied, batch)
        times = race(contenders, repeats)
        table(title, times, "PyTorch" if torch else "hebbref numpy (reference)", no_torch)
        if torch and results is not None:
            record(results, f"{net_label(net_name, untied)} / PyTorch", times["hebbref numba"], times["PyTorch"])
    for net_name, shape, untied in [("simple", (1, 28, 28), False), ("simple", (1, 28, 28), True),
                                    ("deep", (3, 32, 32), False)] if 4 in tables else []:
        rounds = price_rounds or repeats
        times = race({rule: hebbref_step(net_name, shape, rule, "numba", untied, batch)
                      for rule in ("bp", "frfb", "urfb")}, rounds)
        table(f"4. the price of the feedback update: `{net_name}`{' untied' if untied else ''}, hebbref numba, "
              f"{rounds} rounds", times, "bp")
        if results is not None:
            record(results, f"urfb / bp, {net_label(net_name, untied)}", times["urfb"], times["bp"])


# the dense layers' three products (the backend's dense_forward, dense_input_error and
# dense_weight_increment, and for a dense layer above dropout dropout_dense_forward and
# dense_dropout_backward, which takes dropout's backward pass too), summed in one part of table 6
DENSE_CALLS = ("dense_forward", "dense_input_error", "dense_weight_increment", "dropout_dense_forward",
               "dense_dropout_backward")
DENSE_PRODUCTS = "dense products (the backend's dense_*, and drop dense's two with dropout's e ⊙ m)"
# every SGD step on W and R (the backend's weight_update), summed in one part
WEIGHT_UPDATES = "weight updates, W and R (the backend's weight_update)"


def timed(label, fn, spent):
    """``fn``, adding the seconds each call takes to ``spent[label]``."""
    def call(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[label] += time.perf_counter() - start
    return call


def _shape(a):
    return "×".join(map(str, a.shape)) if hasattr(a, "shape") else ""


def timed_backend(backend, spent, grouped=True):
    """A copy of ``backend`` whose every function adds its time to ``spent``, under its name and its arrays' shapes.

    Only the calls the network makes are timed: a backend function's own calls of the
    others go to the untimed ``backend``, so that no time is counted twice. ``grouped``:
    the dense products in one part (``DENSE_PRODUCTS``), the weight updates in another
    (``WEIGHT_UPDATES``); else every function and shapes a part of its own.
    """
    def by_shape(name, fn):
        def call(*args, **kwargs):
            shapes = ", ".join(_shape(a) for a in args if hasattr(a, "shape"))
            label = f"backend: {name} {shapes}".rstrip()
            if grouped:
                label = (DENSE_PRODUCTS if name in DENSE_CALLS else WEIGHT_UPDATES if name == "weight_update"
                         else label)
            return timed(label, fn, spent)(*args, **kwargs)
        return call
    functions = {field.name: by_shape(field.name, getattr(backend, field.name))
                 for field in dataclasses.fields(backend) if callable(getattr(backend, field.name))}
    return dataclasses.replace(backend, **functions)


def timed_step(net_name, input_shape, untied, batch, rule="bp", backend="numba", seed=0, grouped=True):
    """-> (net, step, spent): a network whose backend calls add their seconds to ``spent`` (``timed_backend``), and a
    callable doing one training step of it on a fixed random batch (``spent`` cleared first)."""
    spent = collections.defaultdict(float)
    net = hebbref.build_network(net_name, input_shape, 10, rule=rule, dtype="float32", untied=untied, seed=seed,
                                backend=timed_backend(backends.get_backend(backend), spent, grouped))
    rng = np.random.default_rng(seed)
    x = rng.random((batch,) + input_shape, dtype=np.float32)
    y = rng.integers(0, 10, size=batch)

    def step():
        spent.clear()
        net.train_step(x, y, lr=0.01, loss="hinge")

    return net, step, spent


def step_parts(net_name, input_shape, untied, batch, repeats, backend="numba", seed=0, against=None):
    """Where a hebbref step goes: -> (steps, parts, against_times), each a list with one entry per round.

    ``steps``: the seconds of each timed step; ``parts``: per round, {part: seconds}. The
    parts are the backend calls the network makes (by name and the shapes of the arrays
    each is given); what is left (the loss, the Python between
    the calls, a deferred δ formed by whoever reads it) is the step less the parts. ``against``: a
    callable run right after each timed step (PyTorch's), its seconds in ``against_times``.
    """
    _, step, spent = timed_step(net_name, input_shape, untied, batch, "bp", backend, seed)
    steps, parts, against_times = [], [], []
    for round_ in range(repeats + 1):  # the first round warms up, untimed
        start = time.perf_counter()
        step()
        seconds = time.perf_counter() - start
        if against is not None:
            start = time.perf_counter()
            against()
            other = time.perf_counter() - start
        if round_:
            steps.append(seconds)
            parts.append(dict(spent))
            if against is not None:
                against_times.append(other)
    return steps, parts, against_times


def parts_table(batch, repeats, least_share=0.01):
    """Table 6: the parts of hebbref numba's step (``step_parts``), each a median over rounds."""
    cases = [("`simple`, tied", "simple", (1, 28, 28), False), ("`simple`, untied", "simple", (1, 28, 28), True),
             ("`deep`", "deep", (3, 32, 32), False)]
    print("\n### 6. where hebbref numba's step goes (bp, the networks of tables 1 to 3): each part's time in a "
          f"step, median of {repeats} rounds\n")
    print("Each round times one hebbref step with every part timed, then one PyTorch step (where PyTorch is "
          "installed). A part's shares are the medians over rounds of its time over hebbref's step and over "
          f"PyTorch's step of the same round. Parts under {least_share:.0%} of the step are summed in one row; \"the rest\" is the "
          "step less every part (the loss, the Python between the calls, a deferred δ formed where it is "
          "read).\n")
    for title, net_name, shape, untied in cases:
        against = torch_step(net_name, shape, untied, batch) if torch else None
        if against is not None:
            against()  # its warm-up
        steps, parts, theirs = step_parts(net_name, shape, untied, batch, repeats, against=against)
        labels = sorted({label for p in parts for label in p},
                        key=lambda label: -statistics.median(p.get(label, 0.0) for p in parts))
        rows = []
        small = [0.0] * len(steps)
        for label in labels:
            seconds = [p.get(label, 0.0) for p in parts]
            if statistics.median(s / t for s, t in zip(seconds, steps)) >= least_share:
                rows.append((label, seconds))
            else:
                small = [a + b for a, b in zip(small, seconds)]
        if len(rows) < len(labels):
            rows.append((f"{len(labels) - len(rows)} parts under {least_share:.0%} each, together", small))
        rows.append(("the rest", [t - sum(p.values()) for t, p in zip(steps, parts)]))
        rows.append(("**the step**", steps))
        print(f"\n{title}: hebbref's step {1e3 * statistics.median(steps):.1f} ms"
              + (f", PyTorch's {1e3 * statistics.median(theirs):.1f} ms (medians)" if theirs else "") + "\n")
        print("| part | ms | share of hebbref's step | over PyTorch's step |")
        print("|---|---:|---:|---:|")
        for label, seconds in rows:
            share = statistics.median(s / t for s, t in zip(seconds, steps))
            over = f"{statistics.median(s / t for s, t in zip(seconds, theirs)):.3f}" if theirs else "n/a"
            print(f"| {label} | {1e3 * statistics.median(seconds):.1f} | {share:.3f} | {over} |")


def price_parts(net_name, input_shape, untied, batch, repeats, rules=("bp", "frfb", "urfb"), backend="numba", seed=0):
    """{rule: (steps, parts)}: ``step_parts`` for each rule, every backend call timed on its own (no groups), one
    step of each rule in turn per round (the first round warms up, untimed)."""
    runs = {rule: timed_step(net_name, input_shape, untied, batch, rule, backend, seed, grouped=False)
            for rule in rules}
    found = {rule: ([], []) for rule in rules}
    for round_ in range(repeats + 1):
        for rule, (_, step, spent) in runs.items():
            start = time.perf_counter()
            step()
            seconds = time.perf_counter() - start
            if round_:
                found[rule][0].append(seconds)
                found[rule][1].append(dict(spent))
    return found


def price_table(batch, repeats, least_ms=0.1):
    """Table 4's second part: the parts of the step in which urfb's time differs from bp's (``price_parts``), split
    by frfb's step into the error sent through R and R's update."""
    print("\n### 4b. where urfb's step differs from bp's: each backend call's time in a step, median of "
          f"{repeats} rounds, hebbref numba\n")
    print("Each round times one bp step, one frfb step and one urfb step, every backend call timed on its own. "
          "urfb sends the error down through R rather than W and adds R's update (the backend's weight_update "
          "with R); frfb does the first and not the second, so frfb − bp is the price of sending the error "
          "through a matrix the forward pass did not read, and urfb − frfb that of R's update. A difference is "
          "the median over rounds of the difference within a round; the parts where urfb − bp is less than "
          f"{least_ms} ms are summed in one row.\n")
    for net_name, shape, untied in (("simple", (1, 28, 28), False), ("simple", (1, 28, 28), True),
                                    ("deep", (3, 32, 32), False)):
        found = price_parts(net_name, shape, untied, batch, repeats)
        rules = list(found)
        steps = {rule: found[rule][0] for rule in rules}
        parts = {rule: found[rule][1] for rule in rules}
        labels = sorted({label for rule in rules for p in parts[rule] for label in p})
        columns = {label: {rule: [p.get(label, 0.0) for p in parts[rule]] for rule in rules} for label in labels}

        def difference(times, a, b):
            return statistics.median(y - x for x, y in zip(times[a], times[b]))

        gap = {label: abs(difference(columns[label], "bp", "urfb")) for label in labels}  # |urfb − bp|, the rows' order
        rows = [(label, columns[label]) for label in sorted(labels, key=lambda label: -gap[label])
                if gap[label] >= least_ms / 1e3]
        others = [label for label in labels if gap[label] < least_ms / 1e3]
        if others:
            rows.append((f"{len(others)} other parts, together",
                         {rule: [sum(columns[label][rule][r] for label in others) for r in range(len(steps[rule]))]
                          for rule in rules}))
        rows.append(("the rest", {rule: [t - sum(p.values()) for t, p in zip(steps[rule], parts[rule])]
                                  for rule in rules}))
        rows.append(("**the step**", steps))
        print(f"\n{net_label(net_name, untied)}\n")
        print("| part | bp (ms) | frfb (ms) | urfb (ms) | frfb − bp (ms) | urfb − frfb (ms) | urfb − bp (ms) |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for label, times in rows:
            medians = " | ".join(f"{1e3 * statistics.median(times[rule]):.2f}" for rule in rules)
            changes = " | ".join(f"{round(1e3 * difference(times, a, b), 2) or 0.0:+.2f}"  # no "-0.00"
                                 for a, b in (("bp", "frfb"), ("frfb", "urfb"), ("bp", "urfb")))
            print(f"| {label} | {medians} | {changes} |")


def best_seconds(f, repeats):
    f()
    ts = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        ts.append(time.perf_counter() - start)
    return min(ts)


def machine_pace(repeats, size=2048):
    """GFLOP/s of NumPy's float32 size×size matmul, best of ``repeats``: the pace of the machine at that moment.

    Printed at the start and at the end of a run (and at the start of table 5): on a shared
    host it moves from run to run, and with it every time in the tables, so two runs compare
    best at the same pace.
    """
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    return 2 * size**3 / best_seconds(lambda: a @ a, repeats) / 1e9


def kernel_call(table_, kind, which, x, W, delta):
    """A call of one backend's ``{kind}_{which}`` on (x, W, δ), its forward pass's cache made first."""
    forward = getattr(table_, f"{kind}_forward")
    _, cache = forward(x, W)
    if which == "forward":
        return lambda: forward(x, W)
    if which == "input_error":
        return lambda: getattr(table_, f"{kind}_input_error")(delta, cache, W)
    return lambda: getattr(table_, f"{kind}_weight_increment")(delta, cache)


def kernel_table(batch, repeats, results=None):
    """GFLOP/s of every conv and untied kernel on the layer shapes of ``simple`` and ``deep``, next to the matmul's.

    Each numba kernel races NumPy's float32 matmul (2048×2048), one call of each per
    round (``race``), so that a kernel's fraction of the limit compares two calls that met
    nearly the same load of the machine: the last column is the median over rounds of
    (kernel GFLOP/s / matmul GFLOP/s) within a round; the one before it, best against best.
    """
    numba_backend = backends.get_backend("numba")
    rng = np.random.default_rng(0)
    a = rng.random((2048, 2048), dtype=np.float32)
    matmul_flops = 2 * 2048**3

    def matmul():
        a @ a

    print("\n### 5. kernels: achieved GFLOP/s (one multiply-add = 2 flops), each numba kernel raced against NumPy's "
          f"float32 matmul 2048×2048 (the limit), {repeats} rounds\n")
    print(f"NumPy float32 matmul 2048×2048 at the start: **{machine_pace(repeats):.0f} GFLOP/s**.\n")
    print("| layer (N, C_in→C_out, H×W, k) | kernel | numba GFLOP/s, best | numpy GFLOP/s | matmul GFLOP/s in the "
          "same rounds, best | numba / matmul, best / best | median of the rounds' ratios |")
    print("|---|---|---:|---:|---:|---:|---:|")
    shapes = [("simple conv", 1, 32, 28, 5), ("deep 1a", 3, 16, 32, 3), ("deep 1b", 16, 16, 32, 3),
              ("deep 2a", 16, 64, 11, 3), ("deep 2b", 64, 64, 11, 3), ("deep 3", 64, 64, 6, 2)]
    for label, c_in, c_out, size, k in shapes:
        x = rng.random((batch, c_in, size, size), dtype=np.float32)
        delta = rng.random((batch, c_out, size, size), dtype=np.float32)
        flops = 2.0 * batch * c_out * c_in * k * k * size * size
        for kind in ("conv", "locally_connected") if label == "simple conv" else ("conv",):
            W = rng.random(((size, size) if kind != "conv" else ()) + (c_out, c_in, k, k), dtype=np.float32)
            for which in ("forward", "input_error", "weight_increment"):
                calls = [kernel_call(table_, kind, which, x, W, delta)
                         for table_ in (numba_backend, backends.get_backend("numpy"))]
                # in the order given, as in every run before: each kernel right after the round before's matmul,
                # which leaves the caches cold (a kernel ran about a tenth slower there than right after itself,
                # twelfth session): shares as conservative as before, and comparable with every earlier run's
                times = race({"numba": calls[0], "matmul": matmul}, repeats, seed=None)
                numba_rate, matmul_rate = flops / min(times["numba"]) / 1e9, matmul_flops / min(times["matmul"]) / 1e9
                numpy_rate = flops / best_seconds(calls[1], max(2, repeats // 2)) / 1e9
                shares = [flops * m / (matmul_flops * t)  # (flops / t) / (matmul_flops / m), round by round
                          for t, m in zip(times["numba"], times["matmul"])]
                rounds = statistics.median(shares)
                if results is not None and label in WIDE_LAYERS:  # the target: a wide layer's every kernel
                    best, median, interval = results.get(f"{label}, every kernel", (math.inf, math.inf, None))
                    if rounds < median:  # the lowest median, with its own interval
                        median, interval = rounds, median_interval(shares)
                    results[f"{label}, every kernel"] = (min(best, numba_rate / matmul_rate), median, interval)
                name = f"{label}{' untied' if kind != 'conv' else ''} ({batch}, {c_in}→{c_out}, {size}×{size}, {k})"
                print(f"| {name} | {kind}_{which} | {numba_rate:.1f} | {numpy_rate:.1f} | {matmul_rate:.0f} | "
                      f"{numba_rate / matmul_rate:.2f} | {rounds:.2f} |")


def net_label(net_name, untied):
    """"`simple`", "`simple` untied", "`deep`": a network as the tables name it."""
    return f"`{net_name}`" + (" untied" if untied else "")


# issue 16's speed targets, as ratios this benchmark measures: (what, line, "at most" or "at least", the table)
TARGET_CASES = (("simple", False), ("simple", True), ("deep", False))  # (network, untied) of tables 1 to 3 and 4
TARGET_NETWORKS = tuple(f"{net_label(*case)} / PyTorch" for case in TARGET_CASES)
WIDE_LAYERS = ("deep 2b", "deep 3")
TARGETS = ([(TARGET_NETWORKS[0], 0.5, "at most", 1), (TARGET_NETWORKS[1], 0.3, "at most", 2),
            (TARGET_NETWORKS[2], 0.7, "at most", 3)]
           + [(f"urfb / bp, {net_label(*case)}", 1.05, "at most", 4) for case in TARGET_CASES]
           + [(f"{layer}, every kernel", 0.5, "at least", 5) for layer in WIDE_LAYERS])


def record(results, what, times, baseline_times):
    """results[what] = (best / best of the baseline, median over rounds of the ratio within a round, that median's
    95 % interval or None: ``median_interval``)."""
    ratios = round_ratios(times, baseline_times)
    results[what] = (min(times) / min(baseline_times), statistics.median(ratios), median_interval(ratios))


def verdict(value, line, side):
    """Whether a ratio meets its line: ``side`` "at most" (a time ratio) or "at least" (a share of the limit)."""
    return value <= line if side == "at most" else value >= line


def interval_words(interval, line, side):
    """Where the median's interval lies against the line: "1.020 to 1.040, all on the line's side", "… across the
    line", "… all past the line", or that there were too few rounds for one."""
    if interval is None:
        return "none (under 6 rounds)"
    low, high = interval
    inside = (verdict(low, line, side), verdict(high, line, side))
    where = "all on the line's side" if all(inside) else "across the line" if any(inside) else "all past the line"
    return f"{low:.3f} to {high:.3f}, {where}"


def target_rows(results):
    """[(target, line, best, median, interval, verdict)]: each of ``TARGETS`` judged on the ratios ``results`` holds.

    Met: both the best against the best and the median of the rounds' ratios meet the line;
    "by the best only" where the median does not (a busy host moves the medians more); a
    target whose table did not run (or ran without PyTorch) is said to be not measured.
    A wide layer's value is the lowest of its three kernels (forward, input error, increment).
    The interval (``median_interval``, 95 %) says whether the run's rounds settle the
    median's side of the line: a verdict whose interval lies across the line could go the
    other way in the next run.
    """
    rows = []
    for what, line, side, number in TARGETS:
        if what not in results:
            rows.append((what, f"{side} {line}", "", "", "", f"not measured (table {number})"))
            continue
        best, median, interval = results[what]
        met = (verdict(best, line, side), verdict(median, line, side))
        word = "met" if all(met) else "met by the best only" if met[0] else "met by the median only" if met[1] \
            else "**not met**"
        rows.append((what, f"{side} {line}", f"{best:.2f}", f"{median:.3f}", interval_words(interval, line, side),
                     word))
    return rows


def targets_table(results):
    """Table 7: issue 16's targets on this CPU, from the ratios of tables 1 to 5 (``target_rows``)."""
    print("\n### 7. the speed targets on this CPU (issue 16), from the tables above\n")
    print(f"CPU: {runtime.cpu_key()}; Numba threads {numba.get_num_threads()}. A wide layer's value is the lowest of "
          "its three kernels' (table 5).\n")
    print("| target | line | best / best | median of the rounds' ratios | its 95 % interval | verdict |")
    print("|---|---|---:|---:|---|---|")
    for row in target_rows(results):
        print("| " + " | ".join(row) + " |")


FIRST_STEP = """
import time, numpy as np, hebbref
t = time.perf_counter()
net = hebbref.build_network("{net}", {shape}, 10, rule="urfb", dtype="float32", backend="numba", untied={untied})
x = np.random.default_rng(0).random((8,) + {shape}, dtype=np.float32)
net.train_step(x, np.arange(8) % 10)
print(time.perf_counter() - t)
"""


def plans_table():
    """The plan of every equation and shape this process met: path and threads, measured or default."""
    print("\n### plans taken (hebbref.kernels.plan.choose), this machine\n")
    print("| equation and argument shapes | plan | candidates timed: best ms, fastest first |")
    print("|---|---|---|")
    for key, chosen in plan.plans_in_this_process().items():
        timed = sorted((chosen.measured_ms or {}).items(), key=lambda item: item[1])
        print(f"| `{key}` | {plan.describe(chosen)} | {', '.join(f'{name} {ms:.1f}' for name, ms in timed) or '-'} |")


PLANNED_STEP = """
import time, numpy as np, hebbref
from hebbref.kernels import plan
if {every_round}:
    plan.RACED_AFTER = plan.REPEATS + 1  # no race: every candidate timed in every round
x = np.random.default_rng(0).random(({batch},) + {shape}, dtype=np.float32)
net = hebbref.build_network("{net}", {shape}, 10, rule="urfb", dtype="float32", backend="numba", untied={untied})
t = time.perf_counter()
net.train_step(x, np.arange({batch}) % 10)
print(time.perf_counter() - t)
"""


def plan_cost_table(batch):
    """The first step's cost of measuring the plans: kernels compiled already, no plan on file; raced and not."""
    print(f"\n### the cost of measuring the plans: first training step (batch {batch}, urfb, float32) in a fresh "
          "process, every kernel compiled already, no plan on file\n")
    print("| network | plans raced, as hebbref measures them (s) | every candidate in every round (s) | raced / every |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for net_name, shape, untied in [("simple", (1, 28, 28), False), ("simple", (1, 28, 28), True),
                                        ("deep", (3, 32, 32), False)]:
            def first_step(plans, every_round):
                code = PLANNED_STEP.format(net=net_name, shape=shape, untied=untied, batch=batch,
                                           every_round=every_round)
                env = dict(os.environ, HEBBREF_CACHE=os.path.join(folder, plans))  # a plan folder of its own
                return float(subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                                            text=True).stdout)

            name = f"{net_name}{' untied' if untied else ''}"
            first_step(f"{name} warm-up", True)  # every candidate compiled into the Numba cache, if it was not
            raced, every = first_step(f"{name} raced", False), first_step(f"{name} every", True)
            print(f"| `{name}` | {raced:.1f} | {every:.1f} | {raced / every:.2f} |")
    print("\n(each column's step in a fresh process with a plan folder of its own; the step itself, plans "
          "apart, takes a fraction of a second)")


def compile_table():
    """First step of a fresh process, with an empty Numba cache (compiles) and with the cache filled."""
    print("\n### compile cost: build + first training step (batch 8, urfb, float32) in a fresh process\n")
    print("| network | empty cache (s) | filled cache (s) |")
    print("|---|---:|---:|")
    with tempfile.TemporaryDirectory() as cache_dir:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, HEBBREF_CACHE=cache_dir)  # plans timed in the first
        for net_name, shape, untied in [("simple", (1, 28, 28), False), ("simple", (1, 28, 28), True),
                                        ("deep", (3, 32, 32), False)]:
            code = FIRST_STEP.format(net=net_name, shape=shape, untied=untied)
            seconds = [float(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                            capture_output=True, text=True).stdout) for _ in range(2)]
            print(f"| `{net_name}`{' untied' if untied else ''} | {seconds[0]:.1f} | {seconds[1]:.1f} |")
    print("\n(the caches are shared: the rows after the first reuse kernels the earlier ones compiled; the "
          "empty-cache column includes timing the plans of the network's layers at batch 8)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--price-rounds", type=int, default=41,
                        help="rounds of table 4, urfb against bp (default 41: its line is 5 %% from its baseline)")
    parser.add_argument("--skip-compile", action="store_true", help="leave out the compile-cost table")
    parser.add_argument("--plan-cost", action="store_true",
                        help="add a table of the first step's cost of measuring the plans, raced and not")
    parser.add_argument("--tables", default="1,2,3,4,5,6",
                        help="the numbered tables to print, comma-separated (default: all six; 'none': none); "
                             "table 7, the targets judged, follows whenever one of 1 to 5 runs")
    parser.add_argument("--no-blas-timeout", action="store_true",
                        help="do not set OPENBLAS_THREAD_TIMEOUT=4 for this process (see the top of this file)")
    parser.add_argument("--reuse-plans", action="store_true",
                        help="take the plans already in the plan file (default: measure them afresh, in this run)")
    args = parser.parse_args(argv)
    try:
        tables = set() if args.tables == "none" else {int(number) for number in args.tables.split(",")}
    except ValueError:
        parser.error(f"--tables takes numbers from 1 to 6 separated by commas, got {args.tables!r}")
    if not tables <= {1, 2, 3, 4, 5, 6}:
        parser.error(f"--tables takes numbers from 1 to 6, got {args.tables!r}")
    if not args.reuse_plans:  # plans measured now, on this machine as it is during the run
        os.environ[plan.CACHE_VARIABLE] = tempfile.mkdtemp(prefix="hebbref-plans-")
        atexit.register(shutil.rmtree, os.environ[plan.CACHE_VARIABLE], True)  # the run's plans go with it
    backends.get_backend("numba")  # loads the kernels and applies hebbref.runtime's process settings
    threads = numba.get_num_threads()
    if torch:
        torch.set_num_threads(threads)
    print(f"## hebbref benchmark: batch {args.batch}, float32, best and median of {args.repeats} interleaved runs\n")
    print(f"- machine: {runtime.cpu_key()} ({platform.machine()}), {os.cpu_count()} CPUs visible, "
          f"load average before the run {os.getloadavg()[0]:.2f}")
    print(f"- threads: Numba {threads}, PyTorch {torch.get_num_threads() if torch else 'absent'}")
    print(f"- versions: hebbref {hebbref.__version__}, numpy {np.__version__}, numba {numba.__version__}, "
          f"torch {torch.__version__ if torch else 'not installed'}, Python {platform.python_version()}")
    print(f"- plans: timed on this machine: {plan.timing_enabled()} (${plan.TUNE_VARIABLE}=0 takes the default "
          f"from the shapes); plan file {plan.cache_file()}{'' if args.reuse_plans else ' (removed at exit)'}")
    print(f"- process settings of the numba backend (hebbref.runtime; ${runtime.ENVIRONMENT_VARIABLE}=0 turns them "
          "off; PyTorch, in the same process, shares the allocator setting):")
    for change in runtime.CHANGES:
        print(f"  - {'applied' if change['applied'] else 'not applied'}: {change['what']} ({change['detail']})")
    blas_environment = {name: os.environ.get(name) for name in
                        ("OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    print(f"- environment: {blas_environment}")
    print(f"- pace: NumPy float32 matmul 2048×2048 at {machine_pace(args.repeats):.0f} GFLOP/s at the start "
          f"(best of {args.repeats}; the end of the run gives it again)")
    results = {}
    network_tables(args.batch, args.repeats, tables, results, args.price_rounds)
    if 4 in tables:
        price_table(args.batch, args.repeats)
    if 5 in tables:
        kernel_table(args.batch, args.repeats, results)
    if 6 in tables:
        parts_table(args.batch, args.repeats)
    if tables & {1, 2, 3, 4, 5}:
        targets_table(results)
    plans_table()
    if args.plan_cost:
        plan_cost_table(args.batch)
    if not args.skip_compile:
        compile_table()
    print(f"\nNumba threading layer: {numba.threading_layer()}; load average after the run: "
          f"{os.getloadavg()[0]:.2f} (above 0: other processes shared the cores); NumPy float32 matmul "
          f"2048×2048 at {machine_pace(args.repeats):.0f} GFLOP/s at the end")


if __name__ == "__main__":
    main()
