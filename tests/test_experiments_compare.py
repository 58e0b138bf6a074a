"""hebbref compare and hebbref demo: the grid, the tables against the logs, the plots, the depth study."""
import csv
import dataclasses
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hebbref.cli import main
from hebbref.errors import ConfigError
from hebbref.experiments.compare import (
    collect, compare, dense_stack, grid_configs, mean_std, percent, ranking_by_epoch, ranking_table, split_list,
)
from hebbref.experiments import demo
from hebbref.experiments.demo import (
    DEEPER, DEMO, NETWORKS, SEEDS, claims_shown, compare_pair, demo_configs, differences_in_words, final_accuracies,
    final_angles, rule_table,
)
from hebbref.experiments.train import LOG, TrainConfig
from data_files import write_tiny_separable

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """Three separable classes of 4×4 images: enough to learn something in one epoch."""
    return write_tiny_separable(tmp_path_factory.mktemp("data") / "tiny.npz")


def base(data, **changes):
    values = dict(data=data, epochs=2, batch_size=20, lr=0.3, probe_size=20, backend="numpy", quiet=True,
                  dtype="float64")
    return TrainConfig(**(values | changes))


def test_split_list_keeps_commas_inside_brackets():
    assert split_list("bp, frfb,urfb") == ["bp", "frfb", "urfb"]
    assert split_list("simple,sum[conv3:4,conv3:4] pool2 out") == ["simple", "sum[conv3:4,conv3:4] pool2 out"]
    with pytest.raises(ConfigError, match="empty item"):
        split_list("bp,,urfb")


def test_the_grid_is_the_product_with_one_folder_each(tmp_path, tiny_data):
    configs = grid_configs(base(tiny_data), tmp_path, ["dense4 ramp out", "simple"], ["bp", "urfb"],
                           untied=(False, True), losses=("hinge", "softmax"), seeds=(0, 1, 2))
    assert len(configs) == 2 * 2 * 2 * 2 * 3
    assert len({c.out for c in configs}) == len(configs)
    assert {(c.net, c.untied, c.loss, c.rule, c.seed) for c in configs} == {
        (n, u, loss, r, s) for n in ["dense4 ramp out", "simple"] for u in (False, True)
        for loss in ("hinge", "softmax") for r in ("bp", "urfb") for s in (0, 1, 2)}
    with pytest.raises(ConfigError, match="unknown rule 'hebb'"):
        grid_configs(base(tiny_data), tmp_path, ["simple"], ["hebb"])


def test_mean_and_std_over_seeds():
    mean, std = mean_std([0.8, 0.9, 1.0])
    assert mean == pytest.approx(0.9) and std == pytest.approx(0.1)  # sample std: sqrt(0.02 / 2)
    assert percent(mean, std) == "90.00 ± 10.00"
    assert np.isnan(mean_std([0.5])[1]) and percent(*mean_std([0.5])) == "50.00"


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_compare_writes_tables_that_match_the_logs_and_plots(tmp_path, tiny_data):
    out = tmp_path / "cmp"
    text = compare(base(tiny_data), out, ["dense6 ramp dense6 ramp out"], ["bp", "frfb", "urfb"], seeds=(0, 1))
    rows = read_csv(out / "results.csv")
    assert len(rows) == 6
    for row in rows:  # each row is the last line of that run's log
        folder = out / "runs" / f"dense6_ramp_dense6_ramp_out-tied-{row['rule']}-random-hinge-seed{row['seed']}"
        last = json.loads((folder / LOG).read_text().splitlines()[-1])
        assert float(row["test_accuracy"]) == pytest.approx(last["test_accuracy"])
        assert int(row["epochs"]) == 2
    for rule in ("bp", "frfb", "urfb"):  # the markdown row is mean ± std of the csv's seeds
        accuracies = [float(r["test_accuracy"]) for r in rows if r["rule"] == rule]
        expected = f"| {rule} | 2 | 2 | {percent(np.mean(accuracies), np.std(accuracies, ddof=1))} |"
        assert expected in text, (expected, text)
    assert (out / "results.md").read_text() == text
    for name in ("accuracy.png", "alignment.png"):
        assert (out / name).read_bytes()[:8] == PNG


def test_parallel_processes_give_the_same_runs_as_one_after_another(tmp_path, tiny_data):
    config = base(tiny_data, epochs=1)
    compare(config, tmp_path / "seq", ["dense5 ramp out"], ["frfb", "urfb"], seeds=(3,), jobs=1)
    compare(config, tmp_path / "par", ["dense5 ramp out"], ["frfb", "urfb"], seeds=(3,), jobs=2)
    seq, par = read_csv(tmp_path / "seq" / "results.csv"), read_csv(tmp_path / "par" / "results.csv")
    drop_time = [{k: v for k, v in row.items() if k != "seconds"} for row in seq]
    assert drop_time == [{k: v for k, v in row.items() if k != "seconds"} for row in par]


def test_a_second_compare_resumes_instead_of_training_again(tmp_path, tiny_data):
    config = base(tiny_data, epochs=1)
    compare(config, tmp_path / "c", ["dense5 ramp out"], ["bp"], seeds=(0,))
    log = tmp_path / "c" / "runs" / "dense5_ramp_out-tied-bp-random-hinge-seed0" / LOG
    first = log.read_text()
    compare(dataclasses.replace(config, epochs=2), tmp_path / "c", ["dense5 ramp out"], ["bp"], seeds=(0,))
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and lines[0] + "\n" == first  # epoch 1 kept, epoch 2 added


def test_depth_study_from_the_command_line(tmp_path, tiny_data, capsys):
    out = tmp_path / "depth"
    argv = ["compare", "--study", "depth", "--depths", "1,3", "--width", "6", "--data", tiny_data,
            "--epochs", "1", "--batch-size", "20", "--seed", "0,1", "--backend", "numpy", "--quiet",
            "--probe-size", "10", "--out", str(out)]
    assert main(argv) == 0
    text = (out / "results.md").read_text()
    rows = read_csv(out / "results.csv")
    assert {r["net"] for r in rows} == {dense_stack(1, 6), dense_stack(3, 6)}
    for depth in (1, 3):
        cells = [percent(*mean_std([float(r["test_accuracy"]) for r in rows
                                    if r["net"] == dense_stack(depth, 6) and r["rule"] == rule]))
                 for rule in ("bp", "frfb", "urfb")]
        assert f"| {depth} | " + " | ".join(cells) + " |" in text
    assert (out / "depth.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize("argv,words", [
    (["compare", "--rule", "bp,hebb"], "unknown rule 'hebb'"),
    (["compare", "--layers", "tied,loose"], "unknown layers 'loose'"),
    (["compare", "--seed", "0,x"], "--seed must be a comma-separated list"),
    (["compare", "--study", "depth", "--depths", "0,2"], "--depths must be 1 or more"),
    (["compare", "--study", "width"], "invalid choice"),
    (["demo", "--epochs", "-2"], "expected 0 or more"),
])
def test_bad_compare_and_demo_arguments_are_one_line(tmp_path, capsys, argv, words):
    try:
        code = main(argv + ["--out", str(tmp_path / "x")])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code != 0 and len(err.strip().splitlines()) == 1 and words in err, err


def fake_log(config, accuracy, angle):
    """A finished run's log written by hand: two epochs, a learning curve with probes."""
    layers = {name: {"corr_WR": 0.5, "angle_RW": angle} for name in ("layer1", "layer2", "layer3")}
    records = [{"epoch": epoch, "test_accuracy": accuracy, "train_loss": 0.5, "val_accuracy": accuracy,
                "train_accuracy": accuracy, "seconds": 1.0, "layers": layers,
                "curve": [{"step": 10 * epoch + k, "test_accuracy": accuracy, "layers": layers} for k in (0, 5)]}
               for epoch in (1, 2)]
    Path(config.out).mkdir(parents=True, exist_ok=True)
    (Path(config.out) / LOG).write_text("".join(json.dumps(r) + "\n" for r in records))


# made-up final accuracies (rule, network) and angles: urfb keeps up with bp, frfb falls behind when deep
FAKE_ACCURACY = {"bp": (0.80, 0.80, 0.80), "frfb": (0.78, 0.74, 0.50), "urfb": (0.80, 0.79, 0.79)}
FAKE_ANGLE = {"bp": 90.0, "frfb": 80.0, "urfb": 30.0}


def write_fake_demo(configs):
    for config in configs:
        network = [n.net == config.net and n.untied == config.untied for n in NETWORKS].index(True)
        accuracy = FAKE_ACCURACY[config.rule][network] + 0.01 * (config.seed % 3)  # std 1 point over 3 seeds
        fake_log(config, accuracy, FAKE_ANGLE[config.rule] + config.seed % 3)


def test_demo_runs_three_rules_on_three_networks_with_three_seeds_and_tabulates_their_logs(tmp_path):
    configs = demo_configs(tmp_path)
    assert {(c.net, c.untied, c.rule, c.seed) for c in configs} == {
        (n, u, r, s) for n, u in (("simple", False), ("simple", True), (DEEPER, False)) for r in ("bp", "frfb", "urfb")
        for s in SEEDS}
    assert len(SEEDS) >= 3
    assert all(c.data == "fashion-mnist-mini" and c.batch_size == DEMO.batch_size and c.evals_per_epoch > 0
               for c in configs)
    assert {(c.net, c.untied): (c.train_size, c.epochs) for c in configs} == {
        (n.net, n.untied): (n.train_size, n.epochs) for n in NETWORKS}
    write_fake_demo(configs)
    table = rule_table(configs).splitlines()
    assert table[2] == "| simple, tied conv | 3000 | 2 | 3 | 81.00 ± 1.00 | 79.00 ± 1.00 | 81.00 ± 1.00 |".replace(
        "3000 | 2", f"{NETWORKS[0].train_size} | {NETWORKS[0].epochs}")
    assert table[4].endswith("| 81.00 ± 1.00 | 51.00 ± 1.00 | 80.00 ± 1.00 |")
    words = differences_in_words(final_accuracies(configs))
    # 81 vs 79 with stds 1 and 1: 2.0 points apart, combined spread √2 = 1.4: larger
    assert "bp above frfb by 2.0 points, more than the spread (1.4)" in words[0]
    assert "bp and urfb within the spread (0.0 points apart, spread 1.4)" in words[0]
    assert "bp and urfb within the spread (1.0 points apart, spread 1.4)" in words[2]


def test_compare_pair_is_the_difference_of_means_against_the_combined_std():
    difference, spread, larger = compare_pair([0.80, 0.82, 0.84], [0.70, 0.71, 0.72])
    assert difference == pytest.approx(0.11) and spread == pytest.approx(np.sqrt(0.02 ** 2 + 0.01 ** 2))
    assert larger
    assert not compare_pair([0.80, 0.90], [0.84, 0.85])[2]


def test_the_claims_are_judged_on_the_numbers(tmp_path):
    configs = demo_configs(tmp_path)
    write_fake_demo(configs)
    shown, not_shown = claims_shown(final_accuracies(configs), final_angles(configs))
    assert any(c.startswith("Claim 2, frfb falls behind") for c in shown)
    assert sum(c.startswith("Claim 1, urfb is comparable to bp") for c in shown) == 2
    assert any(c.startswith("urfb's feedback turns toward back-prop's") and "urfb's error ends 31° from back-prop's, frfb's 81°" in c
               for c in shown)
    assert not not_shown
    # at chance, nothing is claimed
    for config in configs:
        fake_log(config, 0.1 + 0.01 * (config.seed % 3), 89.0)
    shown, not_shown = claims_shown(final_accuracies(configs), final_angles(configs))
    assert not any(c.startswith("Claim") for c in shown)
    assert any("too little training" in c for c in not_shown)


def test_the_demo_output_ends_with_what_was_shown_the_time_and_the_figures(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "run_grid", lambda configs, jobs, stream: write_fake_demo(configs))
    out = tmp_path / "demo"
    text = demo.run_demo(out=out, stream=io.StringIO())
    lines = text.splitlines()
    assert re.fullmatch(r"Done in \d+ min \d+ s \(27 runs, 2 at a time\)\.", lines[-2]), lines[-2]
    assert lines[-1] == (f"Figures: {out}/summary.png (start here), {out}/accuracy.png, {out}/alignment.png; "
                         f"tables: {out}/results.md, {out}/demo.md.")
    assert "What this run shows of the paper's claims (SPEC §7):" in lines
    for name in ("summary.png", "accuracy.png", "alignment.png"):
        assert (out / name).read_bytes()[:8] == PNG
    assert (out / "demo.md").read_text() == text + "\n"


def test_urfb_with_symmetric_init_compares_equal_to_bp(tmp_path, tiny_data):
    """Comparison 2 of RESULTS.md in small: the two rows of the grid have the same accuracies."""
    compare(base(tiny_data, epochs=3), tmp_path / "sym", ["dense6 ramp drop0.2 dense6 ramp out"], ["bp", "urfb"],
            inits=("symmetric",), seeds=(0, 1))
    runs = collect(grid_configs(base(tiny_data, epochs=3), tmp_path / "sym", ["dense6 ramp drop0.2 dense6 ramp out"],
                                ["bp", "urfb"], inits=("symmetric",), seeds=(0, 1)))
    by_rule = {}
    for config, history in runs:
        by_rule.setdefault(config.rule, []).append([(r["test_accuracy"], round(r["train_loss"], 9)) for r in history])
    assert len(by_rule["bp"][0]) == 3
    assert by_rule["bp"] == by_rule["urfb"]


def test_long_network_descriptions_get_distinct_folders(tmp_path, tiny_data):
    configs = grid_configs(base(tiny_data), tmp_path, [dense_stack(d) for d in (2, 4, 8)], ["bp"])
    assert len({Path(c.out).name for c in configs}) == 3
    assert all(len(Path(c.out).name) < 100 for c in configs)


def children_of(pid):
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def running(pid):
    """True while ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers end with their parent on Linux only")
def test_killing_a_parallel_compare_ends_its_workers(tmp_path, tiny_data):
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "hebbref", "compare", "--rule", "bp,urfb", "--data", tiny_data,
               "--epochs", "100000", "--batch-size", "20", "--backend", "numpy", "--quiet", "--jobs", "2",
               "--probe-size", "10", "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    parent = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(list(out.glob("runs/*/log.jsonl"))) < 2:  # both workers are training
            assert parent.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        workers = [pid for pid in children_of(parent.pid)
                   if b"multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(workers) >= 2
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while any(running(pid) for pid in workers):
        assert time.monotonic() < deadline, "the workers kept running after their comparison was killed"
        time.sleep(0.1)


def test_ranking_reports_since_when_the_order_of_the_rules_has_held():
    def history(*accuracies):
        return [{"epoch": e + 1, "test_accuracy": a} for e, a in enumerate(accuracies)]

    by_rule = {"bp": [history(0.5, 0.7, 0.8, 0.9), history(0.5, 0.7, 0.8, 0.9)],
               "frfb": [history(0.6, 0.6, 0.7, 0.7), history(0.6, 0.6, 0.7, 0.7)],
               "urfb": [history(0.4, 0.65, 0.75, 0.8), history(0.4, 0.5, 0.75, 0.8, 0.85)]}
    ranking = ranking_by_epoch(by_rule)
    assert [epoch for epoch, _ in ranking] == [1, 2, 3, 4]  # the epochs every seed reached
    assert ranking[0][1] == ["frfb", "bp", "urfb"]
    assert ranking[1][1] == ["bp", "frfb", "urfb"]  # urfb's mean 0.575 < frfb's 0.6
    assert ranking[2][1] == ranking[3][1] == ["bp", "urfb", "frfb"]
    configs = [TrainConfig(rule=rule, seed=seed) for rule in by_rule for seed in (0, 1)]
    runs = [(config, by_rule[config.rule][config.seed]) for config in configs]
    assert "| bp > urfb > frfb | 3 | 4 |" in ranking_table(runs)


def test_parallel_workers_share_the_cores_and_the_environment_is_put_back(monkeypatch):
    """Each of ``jobs`` workers starts with cores // jobs BLAS and Numba threads; a user's setting wins."""
    from hebbref.experiments.rundir import threads_per_worker

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setenv("NUMBA_NUM_THREADS", "7")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    before = dict(os.environ)
    with threads_per_worker(2):
        assert os.environ["OPENBLAS_NUM_THREADS"] == "4"
        assert os.environ["NUMBA_NUM_THREADS"] == "7"
    with threads_per_worker(16):
        assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    assert dict(os.environ) == before


@pytest.mark.parametrize("user_threads, jobs, expected", [(None, 2, 4), (None, 3, 2), (None, 16, 1), ("3", 2, 3)])
def test_worker_numba_threads_is_what_the_workers_start_with(monkeypatch, user_threads, jobs, expected):
    """The count a grid looks up plans for is the count ``threads_per_worker`` gives each worker."""
    from hebbref.experiments.rundir import threads_per_worker, worker_numba_threads

    if user_threads is None:
        monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("NUMBA_NUM_THREADS", user_threads)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert worker_numba_threads(jobs) == expected
    with threads_per_worker(jobs):
        assert os.environ["NUMBA_NUM_THREADS"] == str(expected)


def test_a_grid_on_the_numba_backend_says_once_when_its_first_steps_will_compile_and_time_the_kernels(
        tmp_path, tiny_data, monkeypatch, capsys):
    from hebbref.experiments.compare import run_grid
    from hebbref.kernels import plan

    configs = grid_configs(base(tiny_data, epochs=1, backend="numba"), tmp_path, ["dense4 ramp out"], ["bp", "urfb"])
    for planned, expected in ((True, 0), (False, 1)):
        monkeypatch.setattr(plan, "nothing_planned", lambda threads=None, planned=planned: not planned)
        stream = io.StringIO()
        run_grid([dataclasses.replace(c, out=str(tmp_path / f"{planned}" / Path(c.out).name)) for c in configs],
                 stream=stream)
        lines = stream.getvalue().splitlines()
        assert len(lines) == 2 + expected and lines[-1].startswith("[2/2]")
        if expected:
            assert lines[0].startswith("hebbref: no plans on file for this CPU") and str(plan.cache_file()) in lines[0]
    loud = [dataclasses.replace(c, quiet=False, out=str(tmp_path / "loud" / Path(c.out).name)) for c in configs]
    capsys.readouterr()  # runs trained here and not quietly: train says it, once, and the grid does not
    run_grid(loud[:1])  # both write to stderr
    assert capsys.readouterr().err.count("no plans on file for this CPU") == 1
    stream = io.StringIO()  # the numpy backend plans nothing
    run_grid([dataclasses.replace(configs[0], backend="numpy", out=str(tmp_path / "numpy"))], stream=stream)
    assert "no plans" not in stream.getvalue()


def test_a_grid_in_worker_processes_looks_for_the_plans_of_the_workers_thread_count(tmp_path, tiny_data,
                                                                                    monkeypatch):
    """Plans hold for one thread count and the workers train on a share of the cores: a grid whose workers'
    plans are on file must not say that its first steps will compile and time the kernels (the demo, 2 at a
    time on 2 cores, said so on every run: its workers plan on 1 thread, the process that asks runs 2)."""
    import contextlib

    from hebbref.experiments import compare as compare_module
    from hebbref.experiments.compare import run_grid
    from hebbref.experiments.rundir import worker_numba_threads
    from hebbref.kernels import plan

    entry = {"path": "loops", "threads": 1, "block": None, "measured_ms": None, "kernels": plan.kernels_source()}
    file = tmp_path / "plans" / "plans.json"
    file.parent.mkdir()
    monkeypatch.setenv(plan.CACHE_VARIABLE, str(file.parent))
    monkeypatch.setenv(plan.TUNE_VARIABLE, "1")
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    workers = worker_numba_threads(2)
    other = workers + 1  # any count but the workers'

    class NoWork:  # the workers' runs are not this test's business
        def map(self, function, configs):
            return iter(())

    monkeypatch.setattr(compare_module, "worker_pool", lambda jobs: contextlib.nullcontext(NoWork()))
    configs = grid_configs(base(tiny_data, epochs=1, backend="numba"), tmp_path, ["dense4 ramp out"], ["bp", "urfb"])
    for planned_on, said in ((workers, False), (other, True)):
        file.write_text(json.dumps({plan.machine(planned_on): {"ramp float32[2]": entry}}))
        stream = io.StringIO()
        run_grid(configs, jobs=2, stream=stream)
        assert ("no plans on file for this CPU" in stream.getvalue()) == said, planned_on
