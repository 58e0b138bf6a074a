"""compare beyond one machine: on Dask (--scheduler), and as a job array (--emit-commands, --summarise-only).

Loopback only. Every way of running the grid must give, run for run and epoch for
epoch, the numbers of the plain one-after-another comparison (``--jobs 1``), which
is trained once for the module (``reference``).
"""
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hebbref.cli import main, make_parser
from hebbref.experiments import distributed as dist
from hebbref.experiments.cli import config_from_args
from hebbref.experiments.train import LOG, TrainConfig
from data_files import write_tiny_separable

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 60  # long enough for a worker to be killed in the middle of a run
RUNS = ["dense5_ramp_out-tied-bp-random-hinge-seed0", "dense5_ramp_out-tied-urfb-random-hinge-seed0"]
TIMING = ("seconds", "train_seconds")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="os.sched_getaffinity, SIGKILL of a worker, GNU xargs -d")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """Three separable classes of 4×4 images (as in test_experiments_compare.py)."""
    return write_tiny_separable(tmp_path_factory.mktemp("data") / "tiny.npz")


def grid(data, out, *extra, rules="bp,urfb", epochs=EPOCHS):
    """The command line of the test grid: two rules, one seed, EPOCHS epochs on the tiny data."""
    return ["compare", "--net", "dense5 ramp out", "--rule", rules, "--seed", "0", "--data", data,
            "--epochs", str(epochs), "--batch-size", "20", "--lr", "0.3", "--probe-size", "10",
            "--backend", "numpy", "--dtype", "float64", "--quiet", "--out", str(out), *extra]


def logs(out):
    """{run: its log, epoch by epoch, without the timings}."""
    found = {}
    for name in RUNS:
        lines = (Path(out) / "runs" / name / LOG).read_text().splitlines()
        found[name] = [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]
    return found


def tables(out):
    """results.md, and results.csv without its seconds column."""
    rows = (Path(out) / "results.csv").read_text().splitlines()
    return (Path(out) / "results.md").read_text(), [row.rsplit(",", 1)[0] for row in rows]


def assert_same_runs(out, reference):
    ours, theirs = logs(out), logs(reference)
    for name in RUNS:
        assert len(ours[name]) == EPOCHS, name
        first = next((i for i, (a, b) in enumerate(zip(ours[name], theirs[name])) if a != b), None)
        assert first is None, f"{name} differs from --jobs 1 from epoch {first + 1}: {ours[name][first]} vs {theirs[name][first]}"
    assert tables(out) == tables(reference)


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory):
    """The grid trained one run after another in this process (--jobs 1)."""
    out = tmp_path_factory.mktemp("reference") / "jobs1"
    assert main(grid(tiny_data, out)) == 0
    return out


@pytest.fixture(scope="module")
def cluster():
    """A loopback Dask cluster of two one-thread worker processes."""
    import logging

    from distributed import LocalCluster

    with dist.environment_kept(), LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                               dashboard_address=None, silence_logs=logging.ERROR) as local:
        yield local


def test_a_local_cluster_leaves_the_environment_as_it_was(tiny_data, tmp_path):
    """Dask's nannies set one BLAS thread in the process that runs them; hebbref puts the environment back."""
    before = dict(os.environ)
    assert main(grid(tiny_data, tmp_path / "out", "--scheduler", "local:1", epochs=1)) == 0
    assert dict(os.environ) == before


@linux_only
@pytest.mark.slow
def test_a_local_cluster_gives_the_numbers_of_one_run_after_another(tiny_data, reference, tmp_path, capsys):
    out = tmp_path / "local"
    assert main(grid(tiny_data, out, "--scheduler", "local:2")) == 0
    err = capsys.readouterr().err
    assert "2 runs on 2 Dask workers" in err and "[2/2 done, " in err and ", 0 failed]" in err, err
    assert_same_runs(out, reference)
    threads = max(1, len(os.sched_getaffinity(0)) // 2)  # two one-thread workers share this machine's cores
    assert [(out / "runs" / name / dist.THREADS_FILE).read_text() for name in RUNS] == [f"{threads}\n"] * 2
    assert not list((out / "runs").glob(f"{dist.TOKEN_PREFIX}*"))  # the storage check cleans up


def mid_run(client, runs):
    """(worker address, run folder, epochs done) of a run some worker is half way through, or None."""
    for worker, keys in client.processing().items():
        for key in keys:
            folder = runs / str(key)[len("hebbref-train-"):-9]  # key: hebbref-train-NAME-TOKEN8
            log = folder / LOG
            epochs = len(log.read_text().splitlines()) if log.exists() else 0
            if 2 <= epochs <= EPOCHS - 20:
                return worker, folder, epochs
    return None


@linux_only
@pytest.mark.slow
def test_a_worker_killed_mid_grid_costs_one_epoch_and_changes_no_number(tiny_data, reference, cluster, tmp_path,
                                                                        capsys):
    from distributed import Client

    out = tmp_path / "killed"
    result = []
    thread = threading.Thread(target=lambda: result.append(
        main(grid(tiny_data, out, "--scheduler", cluster.scheduler_address))))
    thread.start()
    try:
        with Client(cluster.scheduler_address) as client:
            pids = client.run(os.getpid)
            deadline = time.monotonic() + 60
            while (victim := mid_run(client, out / "runs")) is None:
                assert thread.is_alive() and time.monotonic() < deadline, "no run was caught half way"
                time.sleep(0.01)
            worker = victim[0]
            os.kill(pids[worker], signal.SIGKILL)
    finally:
        thread.join(timeout=120)
    err = capsys.readouterr().err
    assert result == [0], err
    assert f"worker {worker} left" in err, err
    assert_same_runs(out, reference)


def test_workers_that_cannot_see_the_output_folder_stop_the_grid_in_one_line(tiny_data, cluster, tmp_path, capsys,
                                                                             monkeypatch):
    def token_on_a_private_disk(folder):
        """What a client whose --out is on its own disk does: the token the workers look for is not there."""
        return Path(folder) / f"{dist.TOKEN_PREFIX}0123", "0123"

    from distributed import Client

    with Client(cluster.scheduler_address) as client:  # the worker killed by the test above may still be restarting
        client.wait_for_workers(2, timeout=180)
    monkeypatch.setattr(dist, "write_token", token_on_a_private_disk)
    out = tmp_path / "private"
    assert main(grid(tiny_data, out, "--scheduler", cluster.scheduler_address)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 of 2 Dask workers cannot see the output folder" in err[0], err
    assert "storage that the client and every worker share" in err[0] and str(out / "runs") in err[0]
    assert not [p for p in (out / "runs").iterdir()]  # nothing was trained


def test_a_failing_run_is_named_and_the_others_finish(tiny_data, cluster, tmp_path, capsys):
    out = tmp_path / "one-fails"
    assert main(grid(tiny_data, out, "--lr", "0.5", rules="bp", epochs=1)) == 0  # its checkpoint: another η
    assert main(grid(tiny_data, out, "--scheduler", cluster.scheduler_address, epochs=3)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert f"{RUNS[0]}: FAILED: cannot resume" in "\n".join(err)
    assert err[-1].startswith(f"hebbref compare: error: 1 of 2 runs failed ({RUNS[0]})"), err[-1]
    assert "results.md holds the 1 that finished" in err[-1]
    assert len((out / "runs" / RUNS[1] / LOG).read_text().splitlines()) == 3
    results = (out / "results.md").read_text()  # the tables of the run that finished, as with the local pool
    assert "lr (checkpoint 0.5, now 0.3)" in results


def test_a_worker_that_joined_after_the_check_and_cannot_see_the_folder_fails_its_run(tmp_path):
    """The task checks the token itself (a worker may join the cluster after the check)."""
    status, folder, message = dist.train_task(TrainConfig(out=str(tmp_path / "run")), str(tmp_path / ".token"),
                                              "abc", {})
    assert (status, folder) == ("failed", str(tmp_path / "run")) and "cannot see" in message
    assert not (tmp_path / "run").exists()


@linux_only
def test_a_run_gets_its_share_of_the_cores_and_keeps_its_thread_count_when_resumed(tmp_path, monkeypatch):
    import numba

    blas = []
    monkeypatch.setattr(dist, "set_blas_threads", blas.append)  # the process-wide BLAS count is left alone
    cores = len(os.sched_getaffinity(0))
    before = numba.get_num_threads()
    try:
        # this host's cores shared by 2·cores worker threads: one each; by one: all of them
        assert dist.task_threads(tmp_path / "crowded", {"h": 2 * cores}, "h", 1) == 1
        assert dist.task_threads(tmp_path / "alone", {}, "h", 1) == min(cores, numba.config.NUMBA_NUM_THREADS)
        assert numba.get_num_threads() == min(cores, numba.config.NUMBA_NUM_THREADS)
        # resumed on a crowded host, the run keeps the count its sums were ordered by
        (tmp_path / "started-alone").mkdir()
        (tmp_path / "started-alone" / dist.THREADS_FILE).write_text("1\n")
        assert dist.task_threads(tmp_path / "started-alone", {}, "h", 1) == 1
        assert (tmp_path / "crowded" / dist.THREADS_FILE).read_text() == "1\n"
        assert blas == [1, min(cores, numba.config.NUMBA_NUM_THREADS), 1]
    finally:
        numba.set_num_threads(before)


@pytest.fixture
def hebbref_on_path(tmp_path, monkeypatch):
    """A `hebbref` command on PATH that runs this tree's hebbref with this Python."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "hebbref"
    script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m hebbref "$@"\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")


def run_with_xargs(lines):
    subprocess.run(["xargs", "-d", "\n", "-P", "2", "-I", "LINE", "sh", "-c", "LINE"], input="\n".join(lines) + "\n",
                   text=True, check=True, timeout=120)


@linux_only
@pytest.mark.slow
def test_emitted_commands_run_by_xargs_then_summarise_only_give_the_same_tables(tiny_data, reference, tmp_path,
                                                                                capsys, hebbref_on_path):
    out = tmp_path / "array"
    assert main(grid(tiny_data, out, "--emit-commands")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith("hebbref train ") and line.endswith(" --resume") for line in lines)
    assert not out.exists()  # nothing trained, nothing written

    assert main(grid(tiny_data, out, "--summarise-only")) == 2  # none finished yet: one line
    err = capsys.readouterr().err
    assert "none of the 2 runs" in err and err.count(f"missing: {RUNS[0]} (not started)") == 1

    run_with_xargs(lines[:1])
    assert main(grid(tiny_data, out, "--summarise-only")) == 0
    err = capsys.readouterr().err
    assert f"missing: {RUNS[1]} (not started)" in err and "1 of 2 runs have finished" in err
    assert len(tables(out)[1]) == 1 + 1  # header and the finished run

    run_with_xargs(lines)  # the finished run resumes at its last epoch and trains nothing
    assert main(grid(tiny_data, out, "--summarise-only")) == 0
    assert "2 of 2 runs have finished" in capsys.readouterr().err
    assert_same_runs(out, reference)


def test_an_unfinished_run_is_named_and_left_out_of_the_tables(tiny_data, tmp_path, capsys):
    out = tmp_path / "partial"
    assert main(grid(tiny_data, out, rules="bp", epochs=3)) == 0  # finished
    assert main(grid(tiny_data, out, rules="urfb", epochs=2)) == 0  # stopped after 2 of its 3 epochs
    capsys.readouterr()
    assert main(grid(tiny_data, out, "--summarise-only", epochs=3)) == 0
    err = capsys.readouterr().err
    assert f"missing: {RUNS[1]} (2 of 3 epochs)" in err and "1 of 2 runs have finished" in err
    assert [row.split(",")[2] for row in tables(out)[1][1:]] == ["bp"]
    assert "(1 of 2 runs finished)" in tables(out)[0]


def test_an_emitted_command_trains_exactly_its_configuration(tmp_path):
    config = TrainConfig(net="sum[conv3:4,conv3:4] pool2 out", rule="frfb", init="symmetric", loss="softmax",
                         mu=0.7, untied=True, data="my data.npz", data_dir=str(tmp_path / "d d"), train_size=90,
                         epochs=7, batch_size=30, lr=0.1 + 0.2, seed=5, dtype="float64", dropout=False,
                         probe_size=0, train_eval_size=33, backend="numpy", out=str(tmp_path / "o'ut"), quiet=True)
    for each in (config, TrainConfig()):
        line = dist.train_command(each)
        words = shlex.split(line)
        assert words[:2] == ["hebbref", "train"] and words[-1] == "--resume"
        args = make_parser().parse_args(words[1:])
        assert args.resume and config_from_args(args) == each, line


@pytest.mark.parametrize("argv,words", [
    (["--scheduler", "local:0"], "--scheduler local:N needs a number of workers N ≥ 1"),
    (["--scheduler", "local:two"], "--scheduler local:N needs a number of workers N ≥ 1"),
    (["--scheduler", "myhost:8786"], "--scheduler must be local:N or a Dask scheduler address"),
    (["--scheduler", "local:2", "--jobs", "2"], "--jobs is for the local pool"),
    (["--emit-commands", "--summarise-only"], "not allowed with argument"),
])
def test_bad_distributed_arguments_are_one_line(tmp_path, capsys, argv, words):
    try:
        code = main(["compare", "--rule", "bp", "--out", str(tmp_path / "x")] + argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and words in err, err


def test_an_unreachable_scheduler_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(dist, "CONNECT_TIMEOUT", 1)
    code = main(["compare", "--rule", "bp", "--out", str(tmp_path / "x"), "--scheduler", "tcp://127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot reach the Dask scheduler" in err, err


def test_without_dask_the_scheduler_option_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed raises ImportError
    code = main(["compare", "--rule", "bp", "--out", str(tmp_path / "x"), "--scheduler", "local:2"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "pip install 'hebbref[distributed]'" in err, err


def test_compare_does_not_import_dask_unless_asked():
    code = ("import sys; from hebbref.cli import main\n"
            "try:\n    main(['compare', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
