"""hebbref.kernels.plan: paths chosen by measurement, cached on disk per CPU, a default when timing is off."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numba
import numpy as np
import pytest

from hebbref import runtime
from hebbref.kernels import plan


@pytest.fixture
def timing_on(monkeypatch, tmp_path):
    """Timing on ($HEBBREF_TUNE=1 overrides pytest's default), with the plan file in a temporary folder."""
    monkeypatch.setenv(plan.TUNE_VARIABLE, "1")
    monkeypatch.setenv(plan.CACHE_VARIABLE, str(tmp_path))
    plan.forget()
    yield tmp_path / "plans.json"
    plan.forget()


def conv_arguments(c_in=2, c_out=3, k=3, n=2, size=6):
    rng = np.random.default_rng(0)
    return rng.random((n, c_in, size, size), dtype=np.float32), rng.random((c_out, c_in, k, k), dtype=np.float32)


def test_timing_is_off_under_pytest_and_gives_the_default_without_writing(monkeypatch, tmp_path):
    monkeypatch.delenv(plan.TUNE_VARIABLE, raising=False)
    monkeypatch.setenv(plan.CACHE_VARIABLE, str(tmp_path))
    plan.forget()
    assert not plan.timing_enabled()
    x, W = conv_arguments()
    chosen = plan.choose("conv_forward", x, W)
    assert chosen == plan.default_plan("conv_forward", (x, W)) and chosen.measured_ms is None
    assert not (tmp_path / "plans.json").exists()
    plan.forget()


def test_hebbref_tune_turns_timing_off_and_on(monkeypatch):
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)  # as outside pytest (until the next test phase)
    monkeypatch.delenv(plan.TUNE_VARIABLE, raising=False)
    assert plan.timing_enabled()
    monkeypatch.setenv(plan.TUNE_VARIABLE, "0")
    assert not plan.timing_enabled()
    monkeypatch.setenv(plan.TUNE_VARIABLE, "1")
    assert plan.timing_enabled()


def test_a_measured_plan_is_the_fastest_candidate_and_is_kept_on_disk(timing_on, monkeypatch):
    """Two fake paths, one slower: the faster is chosen, on the thread count that measured fastest."""
    def path(seconds):
        return lambda delta, cache, B: time.sleep(seconds)

    monkeypatch.setitem(plan.PATHS, "conv_input_error", {"slow": path(0.004), "fast": path(0.0005)})
    delta, W = conv_arguments(c_in=3, c_out=2)
    chosen = plan.choose("conv_input_error", delta, None, W)
    assert chosen.path == "fast"
    threads = sorted({1, numba.get_num_threads()})
    assert set(chosen.measured_ms) == {f"{p}/{t}" for p in ("slow", "fast") for t in threads}
    fastest = min(chosen.measured_ms.values())
    assert chosen.measured_ms[f"fast/{chosen.threads}"] <= fastest * (1 + plan.FEWER_THREADS_MARGIN)
    stored = json.loads(timing_on.read_text())
    assert stored[plan.machine()][plan.plan_key("conv_input_error", (delta, None, W))]["path"] == "fast"

    plan.forget()  # a new process: the plan comes from the file, nothing is timed again
    monkeypatch.setattr(plan, "_measure", lambda *a: pytest.fail("measured again although the plan is on disk"))
    assert plan.choose("conv_input_error", delta, None, W).path == "fast"


def test_plans_are_kept_per_cpu_model_and_per_shape(timing_on, monkeypatch):
    measured = []
    real_measure = plan._measure
    monkeypatch.setattr(plan, "_measure", lambda *a: measured.append(a[2]) or real_measure(*a))
    x, W = conv_arguments()
    first = plan.choose("conv_forward", x, W)
    assert first.path in plan.PATHS["conv_forward"] and first.measured_ms
    # the forward pass's paths whose increment is planned on its own measured that plan too, once
    assert measured == ["conv_forward float32[2, 2, 6, 6] float32[3, 2, 3, 3]",
                        "conv_weight_increment float32[2, 3, 6, 6] float32[2, 2, 6, 6] 3"]
    plan.choose("conv_forward", x, W)
    assert len(measured) == 2, "one measurement per shape and process"
    plan.choose("conv_forward", *conv_arguments(n=3))
    assert len(measured) == 4, "another batch size is another shape"
    plan.forget()
    monkeypatch.setattr(runtime, "cpu_model", lambda: "Another CPU(R)")
    plan.choose("conv_forward", x, W)
    assert len(measured) == 6, "another CPU model measures its own plan"
    assert len(json.loads(timing_on.read_text())) == 2


@pytest.mark.parametrize("one_thread_ms, chosen_threads", [(9.0, "all"), (7.0, 1)])
def test_fewer_threads_are_chosen_only_when_they_win_by_more_than_the_margin(one_thread_ms, chosen_threads,
                                                                             monkeypatch):
    """10 ms on all threads: 9 ms on one is within the margin (all threads kept), 7 ms is not."""
    monkeypatch.setattr(numba, "get_num_threads", lambda: 4)
    plans = {"a/1": plan.Plan("a", 1), "a/4": plan.Plan("a", 4), "b/1": plan.Plan("b", 1), "b/4": plan.Plan("b", 4)}
    times = {"a/1": one_thread_ms, "a/4": 10.0, "b/1": 30.0, "b/4": 20.0}
    chosen = plan.pick(plans, times)
    assert chosen.path == "a"
    assert chosen.threads == (4 if chosen_threads == "all" else 1)


def test_the_margin_never_trades_a_path_for_another():
    """One thread of path a is fastest; path b on all threads is within the margin but is another path."""
    every = numba.get_num_threads()
    plans = {"a/1": plan.Plan("a", 1), f"b/{every}": plan.Plan("b", every)}
    assert plan.pick(plans, {"a/1": 10.0, f"b/{every}": 10.5}).path == "a"


def test_a_damaged_plan_file_is_measured_again(timing_on):
    timing_on.parent.mkdir(parents=True, exist_ok=True)
    timing_on.write_text("{not json")
    x, W = conv_arguments()
    assert plan.choose("conv_forward", x, W).measured_ms
    assert json.loads(timing_on.read_text())  # rewritten whole


def test_the_default_plan_from_the_shapes():
    threads = numba.get_num_threads()
    small = conv_arguments(c_in=1, c_out=32, k=5)  # 25 terms per output: direct loops
    assert plan.default_plan("conv_forward", small) == plan.Plan("direct", 1, block=plan.tuned_conv_direct.TERMS_PER_PASS)
    wide = conv_arguments(c_in=64, c_out=64, k=3, n=50, size=11)  # 576 terms, 1.8e8 multiply-adds
    assert plan.default_plan("conv_forward", wide) == plan.Plan("shifted", threads, block=2048)
    x, W = conv_arguments(c_in=16, c_out=64, k=3)
    delta = np.zeros((2, 64, 6, 6), dtype=np.float32)
    assert plan.default_plan("conv_input_error", (delta, None, W)).path == "shifted-scatter"  # C_in < C_out
    x, W = conv_arguments(c_in=64, c_out=16, k=3)
    delta = np.zeros((2, 16, 6, 6), dtype=np.float32)
    assert plan.default_plan("conv_input_error", (delta, None, W)).path == "shifted-correlation"
    x, W = conv_arguments(c_in=3, c_out=4, k=3)
    delta = np.zeros((2, 4, 6, 6), dtype=np.float32)
    assert plan.default_plan("conv_input_error", (delta, None, W)).path == "direct"  # 36 terms
    assert plan.default_plan("ramp", (np.zeros(10), 0.5)).threads == 1
    assert plan.default_plan("ramp", (np.zeros(1 << 18), 0.5)).threads == threads


def test_every_choice_between_paths_is_made_in_plan_py():
    """No tuned module but plan.py sets thread counts or holds a path threshold."""
    folder = Path(plan.__file__).parent
    for module in sorted(folder.glob("tuned*.py")):
        text = module.read_text(encoding="utf-8")
        for forbidden in ("set_num_threads", "SHIFTED_FROM", "PARALLEL_FROM", "if C_in < C_out"):
            assert forbidden not in text, f"{module.name} contains {forbidden!r}: choices belong in plan.choose"


def test_a_blocked_path_is_timed_at_each_block_size_and_runs_at_the_fastest(timing_on, monkeypatch):
    """The block size is part of the plan: measured, stored, and bound to the function that runs."""
    calls = []

    def path(delta, cache, B, columns=None):
        calls.append(columns)
        time.sleep(0.0005 if columns == 100 else 0.004)

    monkeypatch.setitem(plan.PATHS, "conv_input_error", {"shifted-scatter": path})
    monkeypatch.setitem(plan.BLOCKS, "shifted-scatter", ("columns per block", "columns", (40, 100, 400)))
    delta, W = conv_arguments(c_in=3, c_out=2)
    chosen = plan.choose("conv_input_error", delta, None, W)
    assert (chosen.path, chosen.block) == ("shifted-scatter", 100)
    threads = sorted({1, numba.get_num_threads()})
    assert set(chosen.measured_ms) == {f"shifted-scatter:{b}/{t}" for b in (40, 100, 400) for t in threads}
    assert set(calls) == {40, 100, 400}
    calls.clear()
    plan.path_function("conv_input_error", chosen)(delta, None, W)
    assert calls == [100]
    assert "100 columns per block" in plan.describe(chosen)
    plan.forget()  # a new process reads the block size back from the file
    assert plan.choose("conv_input_error", delta, None, W).block == 100


def test_a_stored_plan_measured_among_other_candidates_is_measured_again(timing_on, monkeypatch):
    """A path added since the plan was stored (max-pool's "separable") must get its turn."""
    x = np.zeros((2, 3, 8, 8), dtype=np.float32)
    key = plan.plan_key("maxpool_forward", (x, 3, 2))
    every = numba.get_num_threads()
    before = {f"loops/{t}": 1.0 for t in sorted({1, every})}  # timed when "loops" was the only path
    timing_on.parent.mkdir(parents=True, exist_ok=True)
    timing_on.write_text(json.dumps({plan.machine(): {key: {"path": "loops", "threads": every, "measured_ms": before,
                                                            "block": None, "kernels": plan.kernels_source()}}}))
    measured = []
    real_measure = plan._measure
    monkeypatch.setattr(plan, "_measure", lambda *a: measured.append(a[2]) or real_measure(*a))
    chosen = plan.choose("maxpool_forward", x, 3, 2)
    assert measured == [key]
    assert set(chosen.measured_ms) == set(plan.candidates("maxpool_forward"))
    plan.forget()  # measured among this version's candidates: now it is kept
    monkeypatch.setattr(plan, "_measure", lambda *a: pytest.fail("measured again although nothing changed"))
    assert plan.choose("maxpool_forward", x, 3, 2).path == chosen.path


def test_a_stored_plan_that_lacks_its_block_size_is_measured_again(timing_on, monkeypatch):
    """Plans written before block sizes were measured name a blocked path without one: not trusted."""
    x, W = conv_arguments(c_in=8, c_out=8)
    key = plan.plan_key("conv_forward", (x, W))
    timing_on.parent.mkdir(parents=True, exist_ok=True)
    timing_on.write_text(json.dumps({plan.machine(): {key: {"path": "shifted", "threads": 1, "measured_ms": None,
                                                            "kernels": plan.kernels_source()}}}))
    measured = []
    real_measure = plan._measure
    monkeypatch.setattr(plan, "_measure", lambda *a: measured.append(a[2]) or real_measure(*a))
    chosen = plan.choose("conv_forward", x, W)
    assert measured[0] == key and chosen.measured_ms
    assert measured[1:] == [plan.plan_key("conv_weight_increment", (x, x, 3))]  # the increment's own plan, once
    assert (chosen.block is None) == (chosen.path not in plan.BLOCKS)


def test_a_stored_plan_measured_with_other_kernel_code_is_measured_again(timing_on, monkeypatch):
    """An edit or upgrade of the kernels may change which path is fastest: a plan keeps the source it was timed with."""
    x = np.zeros((2, 3, 8, 8), dtype=np.float32)
    key = plan.plan_key("maxpool_forward", (x, 3, 2))
    every = numba.get_num_threads()
    stored = {"path": "loops", "threads": every, "block": None,
              "measured_ms": {name: 1.0 for name in plan.candidates("maxpool_forward")}}
    timing_on.parent.mkdir(parents=True, exist_ok=True)
    measured = []
    real_measure = plan._measure
    monkeypatch.setattr(plan, "_measure", lambda *a: measured.append(a[2]) or real_measure(*a))
    for kernels in ("0" * 64, None):  # another source's fingerprint; none (a plan file written before)
        entry = dict(stored) if kernels is None else {**stored, "kernels": kernels}
        timing_on.write_text(json.dumps({plan.machine(): {key: entry}}))
        plan.forget()
        plan.choose("maxpool_forward", x, 3, 2)
        assert measured == [key]
        assert json.loads(timing_on.read_text())[plan.machine()][key]["kernels"] == plan.kernels_source()
        measured.clear()
    timing_on.write_text(json.dumps({plan.machine(): {key: {**stored, "kernels": plan.kernels_source()}}}))
    plan.forget()
    assert plan.choose("maxpool_forward", x, 3, 2) == plan.Plan("loops", every, stored["measured_ms"], None)
    assert measured == []


def test_the_default_plan_takes_each_blocked_path_at_its_default_size():
    wide = conv_arguments(c_in=64, c_out=64, k=3, n=50, size=11)
    assert plan.default_plan("conv_forward", wide).block == plan.tuned_conv_shifted.COLUMNS_PER_BLOCK
    rng = np.random.default_rng(0)
    x, W_untied = rng.random((2, 1, 6, 6)), rng.random((6, 6, 4, 1, 3, 3))
    assert plan.default_plan("locally_connected_forward", (x, W_untied)) == plan.Plan(
        "batch-last", 1, block=plan.tuned_locally_connected.IMAGES_PER_BATCH_TILE)


def test_candidates_are_timed_in_rounds_not_one_after_another(timing_on, monkeypatch):
    """A burst of other work should slow one call of every candidate, not every call of one."""
    order = []

    def path(name):
        return lambda delta, cache, B: order.append(name)

    monkeypatch.setitem(plan.PATHS, "conv_input_error", {"a": path("a"), "b": path("b")})
    monkeypatch.setattr(numba, "get_num_threads", lambda: 1)  # one thread count: two candidates
    delta, W = conv_arguments(c_in=3, c_out=2)
    chosen = plan.choose("conv_input_error", delta, None, W)
    assert set(chosen.measured_ms) == {"a/1", "b/1"}
    assert order == ["a", "b"] + ["a", "b"] * plan.REPEATS  # warm-ups, then the rounds


def test_a_candidate_far_behind_after_the_first_rounds_is_timed_no_more(timing_on, monkeypatch):
    """The race: after RACED_AFTER rounds a candidate more than LOSES_BY times (and LOSES_BY_MS) slower is dropped.

    Its time so far stays in ``measured_ms``; the fastest still wins; one a little slower runs every round.
    """
    calls = {"fast": 0, "close": 0, "far": 0}
    seconds = {"fast": 0.002, "close": 0.003, "far": 0.006}  # far: 3 times fast and 4 ms longer

    def path(name):
        def call(delta, cache, B):
            calls[name] += 1
            time.sleep(seconds[name])
        return call

    monkeypatch.setitem(plan.PATHS, "conv_input_error", {name: path(name) for name in calls})
    monkeypatch.setattr(numba, "get_num_threads", lambda: 1)  # one thread count: three candidates
    delta, W = conv_arguments(c_in=3, c_out=2)
    chosen = plan.choose("conv_input_error", delta, None, W)
    assert chosen.path == "fast" and set(chosen.measured_ms) == {"fast/1", "close/1", "far/1"}
    assert calls == {"fast": 1 + plan.REPEATS, "close": 1 + plan.REPEATS, "far": 1 + plan.RACED_AFTER}
    assert chosen.measured_ms["far/1"] >= 1e3 * seconds["far"]


def test_calls_of_a_few_microseconds_are_never_raced_out():
    """Twice as slow but shorter than LOSES_BY_MS: kept (cheap to time, and the noisiest); far behind and long: out."""
    assert not plan.loses(3e-6, 1e-6)
    assert not plan.loses(0.0025, 0.002)
    assert plan.loses(0.0061, 0.003)
    assert not plan.loses(0.0059, 0.003)  # under LOSES_BY times the fastest


def test_two_cpus_that_share_a_model_name_keep_their_own_plans(timing_on, monkeypatch):
    """A virtual machine may give several CPU generations one generic name: the numbers tell them apart."""
    measured = []
    real_measure = plan._measure
    monkeypatch.setattr(plan, "_measure", lambda *a: measured.append(a[2]) or real_measure(*a))
    generic = {"model name": "Intel(R) Xeon(R) Processor", "vendor_id": "GenuineIntel", "cpu family": "6",
               "stepping": "1"}
    h = np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(np.float32)
    for model in ("143", "173"):
        monkeypatch.setattr(runtime, "_cpu_fields", lambda fields={**generic, "model": model}: fields)
        plan.forget()
        plan.choose("ramp", h, 0.5)
    assert len(measured) == 2, "the second CPU took the first one's plan"
    machines = list(json.loads(timing_on.read_text()))
    assert len(machines) == 2 and all(m.startswith("Intel(R) Xeon(R) Processor [GenuineIntel 6/") for m in machines)
    assert {"6/143/1" in m for m in machines} == {True, False}


def test_the_cpu_identity_reads_cpuinfo_and_names_what_numba_compiles_for(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
                       "model name\t: AMD EPYC Processor\nstepping\t: 0\n\nprocessor\t: 1\nmodel\t\t: 99\n")
    fields = runtime._cpu_fields.__wrapped__(str(cpuinfo))  # the first processor's block only
    assert (fields["vendor_id"], fields["cpu family"], fields["model"], fields["stepping"]) == ("AuthenticAMD", "26",
                                                                                                "2", "0")
    assert runtime._cpu_fields.__wrapped__(str(tmp_path / "absent")) == {}
    monkeypatch.setattr(runtime, "_cpu_fields", lambda: fields)
    identity = runtime.cpu_identity()
    assert identity["model"] == "AMD EPYC Processor"
    assert identity["vendor, family, model, stepping"] == "AuthenticAMD 26 2 0"
    assert runtime.cpu_key().startswith("AMD EPYC Processor [AuthenticAMD 26/2/0, ")
    assert runtime.cpu_key().endswith(f"compiled for {identity['Numba compiles for']}]")

    monkeypatch.setattr(numba.config, "CPU_NAME", "skylake-avx512")
    monkeypatch.setattr(numba.config, "CPU_FEATURES", None)
    assert runtime.numba_target() == "skylake-avx512"
    monkeypatch.setattr(numba.config, "CPU_FEATURES", "+avx2,-avx512f")
    other_features = runtime.numba_target()
    assert other_features.startswith("skylake-avx512 with features ") and other_features != "skylake-avx512"
    monkeypatch.setattr(runtime, "_cpu_fields", lambda: {})  # not Linux: the model name from platform
    assert runtime.cpu_key().startswith(f"{runtime.cpu_model()} [")


def test_nothing_planned_until_a_plan_of_this_kernel_code_is_on_file_for_this_machine(timing_on, monkeypatch):
    """What hebbref's commands check before they say that the first steps will compile and time the kernels."""
    entry = {"path": "loops", "threads": 1, "block": None, "measured_ms": None}
    assert plan.nothing_planned()  # no plan file
    timing_on.write_text(json.dumps({"another CPU, 2 threads": {"ramp float32[2]": {**entry, "kernels": plan.kernels_source()}}}))
    assert plan.nothing_planned()  # plans of another machine only
    timing_on.write_text(json.dumps({plan.machine(): {"ramp float32[2]": {**entry, "kernels": "0" * 64}}}))
    assert plan.nothing_planned()  # plans of other kernel code only
    timing_on.write_text(json.dumps({plan.machine(): {"ramp float32[2]": {**entry, "kernels": plan.kernels_source()}}}))
    assert not plan.nothing_planned()
    threads = numba.get_num_threads()
    assert plan.nothing_planned(threads + 1)  # plans hold for one thread count: none for another
    timing_on.write_text(json.dumps({plan.machine(threads + 1): {"ramp float32[2]": {**entry,
                                                                                     "kernels": plan.kernels_source()}}}))
    assert not plan.nothing_planned(threads + 1) and plan.nothing_planned()
    timing_on.unlink()
    monkeypatch.setenv(plan.TUNE_VARIABLE, "0")  # nothing will be timed: nothing to say
    assert not plan.nothing_planned()


# adds the plan ``key-KIND`` to the plan file once the file ``go`` appears; the file read a second before it is
# written back, so that the other process reads it in between
WRITE_AT_ONCE = """
import os, sys, time
from hebbref.kernels import plan

kind, folder = sys.argv[1], sys.argv[2]
load = plan._load

def slow_load():
    plans = load()
    time.sleep(1.0)
    return plans

plan._load = slow_load
open(os.path.join(folder, "ready-" + kind), "w").close()
while not os.path.exists(os.path.join(folder, "go")):
    time.sleep(0.002)
plan._write_plan("key-" + kind, plan.Plan("loops", 1))
"""


def test_two_processes_adding_plans_at_once_keep_both(tmp_path):
    """The runs of a grid plan at once: each adds its plan to the file under the file's lock, and neither is lost."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, **{plan.CACHE_VARIABLE: str(tmp_path), "PYTHONPATH": str(root)})
    writers = [subprocess.Popen([sys.executable, "-c", WRITE_AT_ONCE, kind, str(tmp_path)], env=env, cwd=root,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for kind in ("a", "b")]
    while not all((tmp_path / f"ready-{kind}").exists() for kind in ("a", "b")):
        assert all(w.poll() is None for w in writers), [w.communicate() for w in writers]
        time.sleep(0.01)
    (tmp_path / "go").touch()
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    stored = json.loads((tmp_path / "plans.json").read_text())
    assert len(stored) == 1  # one machine, the writers' own
    assert sorted(next(iter(stored.values()))) == ["key-a", "key-b"]
