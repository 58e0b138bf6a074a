"""benchmarks/bench_training_step.py's table 6 (where a step goes): its timing leaves the step as it was.

The table's figures go into BENCHMARKS.md, so the machinery under them is held here: the
timed backend computes exactly what the plain one does, and the parts of a step add up
to no more than it.
These run on the NumPy reference backend, a small batch, and no PyTorch. Last, a run
states the pace of the machine at its start and its end (the steps themselves left out).
"""
import collections
import importlib.util
import pathlib
import sys

import numpy as np
import pytest

import hebbref
from hebbref import backends

BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "bench_training_step.py"


@pytest.fixture(scope="module")
def bench():
    with pytest.MonkeyPatch.context() as patch:  # what the script's import changes is put back after it
        patch.setenv("OPENBLAS_THREAD_TIMEOUT", "4")  # the script sets it by default
        patch.setattr(sys, "path", list(sys.path))  # and puts benchmarks/ first where PyTorch is installed
        spec = importlib.util.spec_from_file_location("bench_training_step", BENCH)
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
    dropout_backward = "backend: dropout_backward 8×32×14×14, 8×32×14×14"
    assert {bench.DENSE_PRODUCTS, bench.WEIGHT_UPDATES, dropout_backward} <= set(spent)
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
