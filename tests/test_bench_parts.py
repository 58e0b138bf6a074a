"""benchmarks/bench_training_step.py's tables 4b and 6 (where a step goes): their timing leaves the step as it was.

The table's figures go into BENCHMARKS.md, so the machinery under them is held here: the
timed backend computes exactly what the plain one does, and the parts of a step add up
to no more than it.
These run on the NumPy reference backend, a small batch, and no PyTorch. Last, a run
states the pace of the machine at its start and its end (the steps themselves left out).
Then the parts of benchmarks/find_gathers.py that read machine code, and
benchmarks/avx2_stand_in.sh's settings (the AVX2 features the tests compile for), and
benchmarks/compile_costs.py's bookkeeping of Numba's nested compilations.
"""
import collections
import importlib.util
import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import hebbref
from hebbref import backends

from kernel_checks import AVX2_FEATURES, SSE4_FEATURES

BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "bench_training_step.py"


@pytest.fixture(scope="module")
def bench():
    with pytest.MonkeyPatch.context() as patch:  # what the script's import changes is put back after it
        patch.setenv("OPENBLAS_THREAD_TIMEOUT", "4")  # the script sets it by default
        patch.setattr(sys, "path", list(sys.path))  # and puts benchmarks/ first
        spec = importlib.util.spec_from_file_location("bench_training_step", BENCH)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def _script(name):
    """benchmarks/<name>.py, imported as a module; the ``sys.path`` it changes as it loads is put back after it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "path", list(sys.path))
        spec = importlib.util.spec_from_file_location(name, BENCH.parent / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def _batch(seed=0, n=8):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 28, 28)), rng.integers(0, 10, size=n)


def _weights(net):
    return [layer.W.copy() for layer in net.parameters()] + [layer.R.copy() for layer in net.parameters()]


def test_a_timed_step_is_the_plain_step(bench):
    """The same weights after two urfb steps, timed or not, and every kind of part is counted."""
    x, y = _batch()
    plain = hebbref.build_network("simple", (1, 28, 28), 10, rule="urfb", backend="numpy", seed=3)
    spent = collections.defaultdict(float)
    timed = hebbref.build_network("simple", (1, 28, 28), 10, rule="urfb", seed=3,
                                  backend=bench.timed_backend(backends.get_backend("numpy"), spent))
    for _ in range(2):
        plain.train_step(x, y, lr=0.05)
        timed.train_step(x, y, lr=0.05)
    for a, b in zip(_weights(plain), _weights(timed)):
        np.testing.assert_array_equal(a, b)
    dropout_draw = "backend: dropout_draw 8×32×14×14"  # its backward pass is drop dense's, a dense product
    assert {bench.DENSE_PRODUCTS, bench.WEIGHT_UPDATES, dropout_draw} <= set(spent)
    assert any(label.startswith("backend: conv_ramp_maxpool_forward 8×1×28×28, 32×1×5×5") for label in spent)
    assert all(seconds > 0 for seconds in spent.values())


def test_the_parts_of_a_step_add_up_to_no_more_than_it(bench):
    ran = []
    steps, parts, theirs = bench.step_parts("simple", (1, 28, 28), False, 8, 3, backend="numpy",
                                            against=lambda: ran.append(1))
    assert len(steps) == len(parts) == len(theirs) == 3
    assert len(ran) == 4  # after the warm-up step too, which is not kept
    for step, spent in zip(steps, parts):
        assert spent and all(seconds >= 0 for seconds in spent.values())
        assert sum(spent.values()) <= step


def test_a_timed_step_of_each_rule_is_that_rule(bench):
    """Under urfb the feedback weights move with W's increment; under bp they stay as drawn."""
    for rule, moves in (("bp", False), ("urfb", True)):
        net, step, spent = bench.timed_step("simple", (1, 28, 28), False, 8, rule, backend="numpy", grouped=False)
        before = [layer.R.copy() for layer in net.parameters()]
        step()
        assert any(label.startswith("backend: dense_dropout_backward 8×10") for label in spent)  # one part per call
        assert all(np.array_equal(a, layer.R) for a, layer in zip(before, net.parameters())) != moves, rule


def test_the_price_of_the_feedback_update_is_taken_from_a_step_of_each_rule_in_turn(bench, monkeypatch, capsys):
    """Table 4b: a bp, a frfb and a urfb step per round, every part on its own row or summed, the steps' medians
    and the three differences."""
    rules = []
    timed_step = bench.timed_step

    def recorded(net_name, input_shape, untied, batch, rule, *args, **kwargs):
        rules.append(rule)
        return timed_step(net_name, input_shape, untied, 8, rule, "numpy", *args[1:], **kwargs)

    found = bench.price_parts("simple", (1, 28, 28), False, 8, 2, backend="numpy")
    assert list(found) == ["bp", "frfb", "urfb"]
    for steps, parts in found.values():
        assert len(steps) == len(parts) == 2
        assert all(0 <= sum(p.values()) <= step for step, p in zip(steps, parts))
    monkeypatch.setattr(bench, "timed_step", recorded)
    bench.price_table(8, 2, least_ms=0.0)
    assert rules == ["bp", "frfb", "urfb"] * 3  # the three networks of tables 1 to 3
    text = capsys.readouterr().out
    assert text.count("| **the step** |") == 3 and text.count("| the rest |") == 3
    assert "| backend: weight_update 10×500, 10×500 |" in text  # each call on a row of its own (none under 0 ms)
    assert "| part | bp (ms) | frfb (ms) | urfb (ms) | frfb − bp (ms) | urfb − frfb (ms) | urfb − bp (ms) |" in text


def test_the_price_table_splits_urfb_minus_bp_by_frfb_round_by_round(bench, monkeypatch, capsys):
    """Each difference is the median of the within-round differences, in the order bp → frfb → urfb; parts under the
    line (by urfb − bp) are summed, the rest is the step less its parts."""
    ms = 1e-3
    a, b, c = {"a": 4 * ms, "b": 1 * ms}, {"a": 6 * ms, "b": 1 * ms}, {"a": 7 * ms, "b": 1 * ms, "c": 1 * ms}
    found = {"bp": ([10 * ms, 30 * ms, 20 * ms], [a, a, a]),  # frfb 1, 2, 3 ms longer within the rounds
             "frfb": ([11 * ms, 32 * ms, 23 * ms], [b, b, b]),
             "urfb": ([13 * ms, 33 * ms, 26 * ms], [c, c, dict(c, b=1.04 * ms)])}
    monkeypatch.setattr(bench, "price_parts", lambda *args, **kwargs: found)
    bench.price_table(8, 3, least_ms=0.1)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert "| **the step** | 20.00 | 23.00 | 26.00 | +2.00 | +2.00 | +3.00 |" in rows  # not +1.00: bp sorted
    assert "| a | 4.00 | 6.00 | 7.00 | +2.00 | +1.00 | +3.00 |" in rows
    assert "| c | 0.00 | 0.00 | 1.00 | +0.00 | +1.00 | +1.00 |" in rows  # a part only urfb calls
    assert "| 1 other parts, together | 1.00 | 1.00 | 1.00 | +0.00 | +0.00 | +0.00 |" in rows  # b: under 0.1 ms
    assert "| the rest | 15.00 | 16.00 | 16.96 | +0.00 | +0.00 | -1.00 |" in rows  # 5, 25, 15; 4, 25, 16; 4, 24, 16.96
    assert [row.split(" |")[0] for row in rows].count("| a") == 3  # the three networks


def test_a_run_gives_the_pace_of_the_machine_at_its_start_and_end(bench, monkeypatch, capsys):
    """The matmul rate before and after the tables: runs on a shared host compare only at the same pace."""
    monkeypatch.setenv(bench.plan.CACHE_VARIABLE, "unused")  # main points it at a fresh folder; put back after
    paces = []
    real_pace = bench.machine_pace
    monkeypatch.setattr(bench, "machine_pace", lambda repeats: paces.append(repeats) or real_pace(repeats, size=64))
    monkeypatch.setattr(bench, "network_tables", lambda *args: print("### 4. (the steps, left out here)"))
    bench.main(["--batch", "2", "--repeats", "1", "--skip-compile", "--tables", "4"])
    out = capsys.readouterr().out
    assert paces == [1, 1]
    head, tail = out.split("### 4.", 1)
    assert "- pace: NumPy float32 matmul 2048×2048 at " in head and " GFLOP/s at the start" in head
    assert tail.rstrip().endswith("GFLOP/s at the end")
    assert 0 < real_pace(2, size=64) < 1e5


def test_each_target_is_judged_on_its_side_of_its_line(bench):
    """Table 7: a time ratio meets its line from below, a share of the matmul limit from above; a best that meets
    it while the median does not is said so; a target whose table did not run is not judged."""
    simple, untied, deep = bench.TARGET_NETWORKS
    results = {simple: (0.45, 0.49, (0.4, 0.5)), untied: (0.3, 0.31, None), deep: (0.71, 0.69, (0.6, 0.69)),
               "deep 2b, every kernel": (0.8, 0.5, (0.5, 0.9)), "deep 3, every kernel": (0.49, 0.6, (0.3, 0.49))}
    verdicts = {row[0]: row[-1] for row in bench.target_rows(results)}
    intervals = {row[0]: row[-2] for row in bench.target_rows(results)}
    assert intervals[simple] == "0.400 to 0.500, all on the line's side"  # at most 0.5: 0.5 is on the line
    assert intervals[untied] == "none (under 6 rounds)"
    assert intervals["deep 2b, every kernel"] == "0.500 to 0.900, all on the line's side"  # at least 0.5
    assert intervals["deep 3, every kernel"] == "0.300 to 0.490, all past the line"
    assert verdicts[simple] == "met"
    assert verdicts[untied] == "met by the best only"  # at most 0.3: 0.3 itself is on the line
    assert verdicts[deep] == "met by the median only"
    assert verdicts["deep 2b, every kernel"] == "met"  # at least 0.5: 0.5 itself is on the line
    assert verdicts["deep 3, every kernel"] == "met by the median only"
    assert verdicts["urfb / bp, `deep`"] == "not measured (table 4)"
    results[simple] = (0.51, 0.52, (0.49, 0.55))
    assert {row[0]: row[-1] for row in bench.target_rows(results)}[simple] == "**not met**"
    assert {row[0]: row[-2] for row in bench.target_rows(results)}[simple] == "0.490 to 0.550, across the line"
    assert [row[0] for row in bench.target_rows({})] == [target[0] for target in bench.TARGETS]


def test_the_tables_record_every_ratio_a_target_names(bench, monkeypatch):
    """Tables 1 to 5 fill ``results`` under the very names of ``TARGETS`` (the runs here are stand-ins): no target
    is left unjudged by a name that does not match, and a wide layer keeps its lowest kernel."""
    monkeypatch.setattr(bench, "torch", object())  # PyTorch's columns, as where it is installed
    monkeypatch.setattr(bench, "hebbref_step", lambda *args, **kwargs: (lambda: None))
    monkeypatch.setattr(bench, "torch_step", lambda *args, **kwargs: (lambda: None))
    shares = iter([0.9, 0.7, 0.8] * 12)  # one kernel a layer below the rest

    def race(contenders, repeats, seed=0):
        if "matmul" in contenders:  # table 5: the kernel's time against the matmul's, flops apart
            return {"numba": [1.0], "matmul": [next(shares)]}
        return {name: [0.1 * (i + 1)] for i, name in enumerate(contenders)}
    monkeypatch.setattr(bench, "race", race)
    monkeypatch.setattr(bench, "kernel_call", lambda *args: (lambda: None))
    monkeypatch.setattr(bench, "best_seconds", lambda f, repeats: 1.0)
    monkeypatch.setattr(bench.backends, "get_backend", lambda name: None)
    results = {}
    bench.network_tables(2, 1, {1, 2, 3, 4}, results)
    bench.kernel_table(2, 1, results)
    assert {target[0] for target in bench.TARGETS} <= set(results)
    flops_2b, flops_matmul = 2.0 * 2 * 64 * 64 * 9 * 11 * 11, 2 * 2048 ** 3
    assert results["deep 2b, every kernel"][0] == pytest.approx(flops_2b * 0.7 / flops_matmul)
    assert results[bench.TARGET_NETWORKS[0]] == (0.5, 0.5, None)  # hebbref 0.1 against PyTorch 0.2, one round


def _binomial_below(n, k):
    """P(Binomial(n, 1/2) < k), summed term by term."""
    return sum(math.comb(n, i) for i in range(k)) / 2 ** n


@pytest.mark.parametrize("n", [6, 7, 9, 21, 41, 61])
def test_the_median_interval_takes_the_widest_order_statistics_a_95_percent_interval_needs(bench, n):
    """The k-th smallest and largest of n ratios, k the largest with P(Binomial(n, 1/2) < k) ≤ 2.5 %: one step
    narrower and the chance of missing the median on either side passes 2.5 %."""
    ratios = [float(i) for i in np.random.default_rng(n).permutation(n)]  # 0 .. n-1, shuffled
    low, high = bench.median_interval(ratios)
    k = int(low) + 1
    assert high == n - k  # the k-th largest: symmetric
    assert _binomial_below(n, k) <= 0.025 < _binomial_below(n, k + 1)
    assert bench.median_interval(ratios[:5]) is None  # five rounds: even (min, max) misses 2 × 1/32 of the time


def test_the_median_interval_holds_the_median_as_often_as_it_says(bench):
    """Drawn from a skewed law whose median is known (an exponential's, ln 2), 41 rounds at a time: the interval
    holds it in at least 95 % of the draws (97.2 % by the binomial sum), and not in every draw."""
    rng = np.random.default_rng(7)
    held = sum(low <= math.log(2) <= high for low, high in
               (bench.median_interval(list(rng.exponential(size=41))) for _ in range(4000)))
    assert 0.955 <= held / 4000 <= 0.985


def test_table_4_runs_the_rounds_it_is_given_and_the_other_tables_theirs(bench, monkeypatch):
    """``--price-rounds`` reaches table 4's race alone; tables 1 to 3 keep ``--repeats``."""
    monkeypatch.setattr(bench, "torch", None)
    monkeypatch.setattr(bench, "hebbref_step", lambda *args, **kwargs: (lambda: None))
    asked = []

    def race(contenders, repeats):
        asked.append((tuple(contenders), repeats))
        return {name: [0.1] * repeats for name in contenders}
    monkeypatch.setattr(bench, "race", race)
    results = {}
    bench.network_tables(2, 3, {1, 2, 3, 4}, results, price_rounds=9)
    assert [repeats for names, repeats in asked if "bp" in names] == [9, 9, 9]
    assert [repeats for names, repeats in asked if "bp" not in names] == [3, 3, 3]
    assert results["urfb / bp, `simple`"] == (1.0, 1.0, (0.1 / 0.1, 0.1 / 0.1))


def test_find_gathers_tells_masked_loads_from_masked_stores():
    """benchmarks/find_gathers.py's count of what it lists (AT&T operands, the memory operand last in a store), and
    the kernels it searches."""
    module = _script("find_gathers")
    assembly = "\n".join([
        "\tvmaskmovps\t%ymm2, %ymm1, (%r10,%rdx,4)",  # a store
        "\tvmaskmovps\t%ymm2, %ymm1, 32(%r10,%rdx,4)",  # a store
        "\tvmaskmovps\t%ymm0, %ymm1, -64(%rsp)",  # a store
        "\tvmaskmovps\t(%rbp,%rdx,4), %ymm1, %ymm0",  # a load
        "\tvpmaskmovd\t64(%rax), %ymm3, %ymm4",  # a load of int32
        "\tvgatherdps\t%ymm5, (%rax,%ymm6,4), %ymm7",
        "\tvscatterdps\t%zmm0, (%rax,%zmm1,4) {%k1}",
        "\tvmovups\t%zmm0, (%rax) {%k1}",  # AVX-512's masked store: not counted
        "\tvmaxps\t%ymm0, %ymm1, %ymm2",
    ])
    assert module.slow_moves(assembly) == {"masked store": 3, "masked load": 2, "gather": 1, "scatter": 1}
    assert module.slow_moves("\tvmovups\t%ymm0, (%rax)\n\tvfmadd231ps\t%ymm1, %ymm2, %ymm3") == {}
    calls = "\tmovabsq\t$fmaf, %rax\n\tcallq\t*%rax\n\tcallq\tfmaf@PLT\n\tmulps\t%xmm1, %xmm2\n\taddps\t%xmm2, %xmm3"
    assert module.fmaf_calls(calls) == 2 and module.fmaf_calls(calls.replace("fmaf", "fmafx")) == 0
    import types

    from hebbref.kernels import tuned_untied_registers
    listed = dict(module.kernels_of(tuned_untied_registers))
    assert listed["pool_cell"] is tuned_untied_registers.pool_cell
    assert listed["ramp_maxpool_sums"] is tuned_untied_registers.ramp_maxpool_sums
    four, eight = tuned_untied_registers.pool_cell, tuned_untied_registers.ramp_maxpool_sums
    builds = types.ModuleType("builds")  # a dict of kernels is searched entry by entry, after the globals
    builds.BUILDS, builds.kernel = {4: four, 8: eight}, four
    found = [(name, kernel) for name, kernel in module.kernels_of(builds) if kernel is four or kernel is eight]
    assert found == [("kernel", four), ("BUILDS[8]", eight)]  # four, a global and a dict's entry: listed once


def test_find_gathers_counts_the_innermost_loops_that_keep_sums_on_the_stack():
    """A loop of fused multiply-adds of vectors (or, built for SSE alone, packed multiplies and adds) that stores a
    vector register to the stack is counted once; a store to the stack outside such a loop, a load from it (a
    constant reloaded), a loop with no multiply-add, a loop with a loop inside and a scalar loop are not."""
    module = _script("find_gathers")
    spilled = "\n".join([
        ".LBB6_149:",
        "\tvmovups\t%ymm0, 16(%rsp)",  # a sum stored ...
        "\tvmovups\t(%r15,%r11), %ymm12",
        "\tvfmadd231ps\t%ymm0, %ymm12, %ymm1",
        "\tvmovups\t16(%rsp), %ymm0",  # ... and loaded again
        "\tcmpq\t%r11, %rbp",
        "\tjne\t.LBB6_149",
    ])
    clean = "\n".join([
        ".LBB6_147:",
        "\tvmovups\t(%rax,%rsi), %ymm12",
        "\tvbroadcastss\t-64(%rsp), %ymm15",  # a load from the stack only
        "\tvfmadd231ps\t%ymm12, %ymm15, %ymm11",
        "\tjne\t.LBB6_147",
    ])
    no_fma = "\n".join([".LBB1_2:", "\tvmovups\t%ymm0, 16(%rsp)", "\tvaddps\t%ymm1, %ymm2, %ymm3", "\tjne\t.LBB1_2"])
    outer = "\n".join([".LBB2_1:", "\tvmovaps\t%zmm3, -128(%rsp)", "\tvfnmadd213ps\t%zmm1, %zmm2, %zmm3",
                       ".LBB2_5:", "\tvfmadd231ps\t%zmm1, %zmm2, %zmm4", "\tjne\t.LBB2_5", "\tjne\t.LBB2_1"])
    forward_jump = "\n".join(["\tjne\t.LBB3_9", "\tvmovups\t%ymm0, 16(%rsp)", "\tvfmadd231ps\t%ymm0, %ymm1, %ymm2",
                              ".LBB3_9:"])
    assert module.spilled_sums(spilled) == 1
    assert module.spilled_sums(spilled.replace("LBB6_149", "LBB7_1") + "\n" + spilled) == 2
    assert module.spilled_sums("\n".join([clean, no_fma, outer, forward_jump])) == 0
    assert module.spilled_sums(spilled.replace("%ymm0, 16(%rsp)", "%zmm0, 16(%rsp)")) == 1
    scalar = "\n".join([".LBB4_7:", "\tvmovaps\t%xmm23, 16(%rsp)", "\tvmovss\t(%rbx,%r15,4), %xmm0",
                        "\tvfmadd231ss\t%xmm0, %xmm7, %xmm8", "\tjne\t.LBB4_7"])  # the scalar loop after the vectors
    assert module.spilled_sums(scalar) == 0
    assert module.spilled_sums(scalar.replace("%xmm23, 16", "%ymm23, 16")) == 0  # scalar sums, a vector stored
    assert module.spilled_sums(spilled.replace("%ymm0, 16(%rsp)", "%xmm0, 16(%rsp)")) == 0  # a scalar stored
    # built for SSE alone: no VEX, no FMA, a multiply-add is a packed multiply and an add, a vector is an xmm register
    sse = "\n".join([".LBB5_3:", "\tmovaps\t%xmm4, 32(%rsp)", "\tmovups\t(%rax,%rcx), %xmm5", "\tmulps\t%xmm6, %xmm5",
                     "\taddps\t%xmm5, %xmm1", "\tmovaps\t32(%rsp), %xmm4", "\tjne\t.LBB5_3"])
    assert module.spilled_sums(sse) == 1
    assert module.spilled_sums(sse.replace("movaps\t%xmm4", "movups\t%xmm4")) == 1
    assert module.spilled_sums(sse.replace("mulps", "mulss").replace("addps", "addss")) == 0  # the scalar loop
    assert module.spilled_sums(sse.replace("\tmulps\t%xmm6, %xmm5", "\tsubps\t%xmm6, %xmm5")) == 0  # no multiply
    assert module.spilled_sums(sse.replace("movaps\t%xmm4, 32(%rsp)", "movaps\t%xmm4, %xmm9")) == 0  # no store


STAND_INS = {"avx2": (BENCH.parent / "avx2_stand_in.sh", "skylake", "haswell"),
             "sse4": (BENCH.parent / "sse4_stand_in.sh", "nehalem", "westmere")}
HELD = {"avx2": {"NUMBA_CPU_FEATURES": AVX2_FEATURES, "ATEN_CPU_CAPABILITY": "avx2", "OPENBLAS_CORETYPE": "Haswell",
                 "MKL_CBWR": None},
        "sse4": {"NUMBA_CPU_FEATURES": SSE4_FEATURES, "ATEN_CPU_CAPABILITY": "default", "OPENBLAS_CORETYPE": "Nehalem",
                 "MKL_CBWR": "COMPATIBLE"}}


@pytest.mark.parametrize("level", sorted(STAND_INS))
def test_a_stand_in_holds_numba_to_the_features_the_tests_compile_for(tmp_path, level):
    """benchmarks/avx2_stand_in.sh and sse4_stand_in.sh (both through stand_in.sh): Numba told the CPU name given and
    the level's features (the same list as the tests' build for it), a cache of its own, PyTorch, MKL and OpenBLAS
    held to the level, OPENBLAS_L2_SIZE unset."""
    script, first, second = STAND_INS[level]
    names = ["NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "NUMBA_CACHE_DIR", "ATEN_CPU_CAPABILITY", "OPENBLAS_CORETYPE",
             "MKL_CBWR", "OPENBLAS_L2_SIZE"]
    show = f"import json, os; print(json.dumps({{k: os.environ.get(k) for k in {names!r}}}))"
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "MKL_CBWR")}
    env["OPENBLAS_L2_SIZE"] = "1024K"
    done = subprocess.run(["bash", str(script), first, sys.executable, "-c", show], env=env,
                          capture_output=True, text=True, check=True)
    seen = json.loads(done.stdout)
    assert seen == {"NUMBA_CPU_NAME": first, "NUMBA_CACHE_DIR": f"/tmp/hebbref-{first}", "OPENBLAS_L2_SIZE": None,
                    **HELD[level]}
    env["NUMBA_CACHE_DIR"] = str(tmp_path)  # a cache named by the caller is kept
    done = subprocess.run(["bash", str(script), second, sys.executable, "-c", show], env=env,
                          capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["NUMBA_CACHE_DIR"] == str(tmp_path)
    missing = subprocess.run(["bash", str(script), first], capture_output=True, text=True)
    assert missing.returncode == 2 and "usage" in missing.stderr
    unknown = subprocess.run(["bash", str(BENCH.parent / "stand_in.sh"), "avx3", first, "true"], capture_output=True,
                             text=True)
    assert unknown.returncode == 2 and "usage" in unknown.stderr


def test_compile_costs_counts_each_function_s_own_time_once():
    """benchmarks/compile_costs.py: a function's compile time less that of the functions it calls, builds counted."""
    import time as clock

    import numba

    costs = _script("compile_costs")

    @numba.njit
    def inner(a):
        return a * 2 + 1

    @numba.njit
    def outer(a):
        return inner(a) - inner(a)

    def step():
        outer(3)
        outer(np.float32(3))  # a second build of each
        clock.sleep(0.05)  # not compiling

    seconds, functions = costs.own_compile_times(step)
    mine = {name.rsplit(".", 1)[-1]: value for name, value in functions.items() if "<locals>" in name}
    assert mine["outer"][0] == 2 and mine["inner"][0] == 2
    assert all(0 < llvm < own for _, own, llvm in functions.values())  # LLVM's part of each, and Numba's
    # nested compilations are not counted twice: the own times add up to at most the step, less its sleep
    assert sum(own for _, own, _ in functions.values()) <= seconds - 0.05


def test_rounds_take_the_contenders_in_orders_of_their_own_unless_told_not_to():
    """benchmarks/rounds.py: every contender once a round, after one warm-up; no contender always after the same
    other one, the orders repeat with the seed, and ``seed=None`` keeps the order given."""
    rounds = _script("rounds")
    runs = []
    calls = {name: (lambda name=name: runs.append(name)) for name in "abcd"}
    times = rounds.race(calls, 12)
    assert runs[:4] == list("abcd") and all(len(seconds) == 12 for seconds in times.values())
    orders = [runs[4 + 4 * r: 8 + 4 * r] for r in range(12)]
    assert all(sorted(order) == list("abcd") for order in orders)
    before = {name: {order[order.index(name) - 1] for order in orders if order.index(name) > 0} for name in "abcd"}
    assert all(len(others) > 1 for others in before.values())
    runs.clear()
    rounds.race(calls, 12)
    assert [runs[4 + 4 * r: 8 + 4 * r] for r in range(12)] == orders
    runs.clear()
    rounds.race(calls, 12, seed=1)
    assert [runs[4 + 4 * r: 8 + 4 * r] for r in range(12)] != orders
    runs.clear()
    rounds.race(calls, 5, seed=None)
    assert runs == list("abcd") * 6


def test_round_ratios_pair_each_round_with_its_own():
    """benchmarks/rounds.py: a ratio is taken within a round, and the median is over the rounds' ratios."""
    rounds = _script("rounds")
    assert rounds.round_ratios([2.0, 9.0, 4.0], [1.0, 3.0, 8.0]) == [2.0, 3.0, 0.5]
    assert rounds.median_round_ratio([2.0, 9.0, 4.0], [1.0, 3.0, 8.0]) == 2.0


def test_the_scripts_time_in_rounds(bench, monkeypatch):
    """bench_training_step.py races with rounds.race; bench_conv_paths.py's times are the same rounds in ms."""
    paths = _script("bench_conv_paths")
    assert bench.race is paths.race is sys.modules["rounds"].race
    monkeypatch.setattr(paths, "race", lambda calls, repeats, seed: {name: [0.25] * repeats for name in calls})
    assert paths.interleaved_times({"a": None, "b": None}, 3) == {"a": [250.0] * 3, "b": [250.0] * 3}
    assert bench.paired_ratio([2.0, 9.0, 4.0], [1.0, 3.0, 8.0]) == "2.00"
