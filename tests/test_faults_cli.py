"""Faults of whole commands (FAULTS.md): `compare` with a run that fails, ties in its ranking,
`hebbref theory --out FILE`, and `./run hebbref` with relative paths."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hebbref.cli import main
from hebbref.experiments import compare as compare_module
from hebbref.experiments import rundir
from hebbref.experiments.compare import compare, grid_configs, ranking_by_epoch, ranking_table, run_name
from hebbref.experiments.train import TrainConfig, TrainingDiverged
from data_files import write_tiny_separable

ROOT = Path(__file__).resolve().parents[1]
NET = "dense6 ramp out"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """Three separable classes of 4×4 images."""
    return write_tiny_separable(tmp_path_factory.mktemp("data") / "tiny.npz", cyclic_labels=True)


def base(data, **changes):
    values = dict(data=data, epochs=2, batch_size=20, lr=0.3, probe_size=20, backend="numpy", quiet=True,
                  dtype="float64")
    return TrainConfig(**(values | changes))


# --- compare: a failed run ------------------------------------------------------------------------
def test_compare_keeps_going_when_a_run_fails_and_tabulates_the_others(tmp_path, tiny_data, capsys, monkeypatch):
    real_train = compare_module.train

    def train_or_diverge(config, **kwargs):
        if config.rule == "frfb":
            raise TrainingDiverged("training diverged: the loss became nan at epoch 1, step 2")
        return real_train(config, **kwargs)

    monkeypatch.setattr(compare_module, "train", train_or_diverge)
    out = tmp_path / "grid"
    argv = ["compare", "--net", NET, "--rule", "bp,frfb,urfb", "--seed", "0,1", "--data", tiny_data,
            "--epochs", "2", "--batch-size", "20", "--backend", "numpy", "--quiet", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "2 of 6 runs failed" in err[-1] and "results.md" in err[-1], err[-1]
    assert sum("frfb" in line and "failed: training diverged" in line for line in err) == 2
    text = (out / "results.md").read_text()
    rows = {line.split("|")[5].strip(): line for line in text.splitlines() if line.startswith("| `")}
    assert rows["bp"].count("±") == 3 and rows["urfb"].count("±") == 3  # two seeds each, tabulated
    assert "frfb" not in rows  # no seed of frfb finished: it is listed, not tabulated
    assert "## Runs that failed" in text and "loss became nan at epoch 1, step 2" in text
    assert (out / "results.csv").exists() and (out / "accuracy.png").exists()


def test_a_compare_whose_every_run_fails_still_lists_them(tmp_path, tiny_data, monkeypatch):
    def diverge(config, **kwargs):
        raise TrainingDiverged("training diverged: the loss became inf at epoch 1, step 1")

    monkeypatch.setattr(compare_module, "train", diverge)
    with pytest.raises(compare_module.RunsFailed, match="2 of 2 runs failed"):
        compare(base(tiny_data), tmp_path / "none", [NET], ["bp", "urfb"])
    text = (tmp_path / "none" / "results.md").read_text()
    assert "No run finished" in text and text.count("loss became inf") == 2


def test_a_parallel_compare_with_a_run_that_cannot_start_finishes_the_others(tmp_path, tiny_data):
    """A real failure inside a worker process: one run's folder is in use by another process."""
    out = tmp_path / "parallel"
    configs = grid_configs(base(tiny_data), out, [NET], ["bp", "urfb"])
    busy = Path(configs[1].out)
    busy.mkdir(parents=True)
    held = rundir.lock_folder(busy)
    try:
        with pytest.raises(compare_module.RunsFailed, match=r"1 of 2 runs failed \(.*urfb"):
            compare(base(tiny_data), out, [NET], ["bp", "urfb"], jobs=2)
    finally:
        held.close()
    text = (out / "results.md").read_text()
    assert f"`{run_name(configs[1])}` after 0 epoch(s)" in text and "in use by another hebbref run" in text
    bp_row = next(line for line in text.splitlines() if line.startswith("| `") and "| bp |" in line)
    assert "| 1 | 2 |" in bp_row  # one seed, two epochs


def test_a_second_compare_on_a_folder_in_use_refuses(tmp_path, tiny_data):
    out = tmp_path / "busy"
    out.mkdir()
    held = rundir.lock_folder(out)
    try:
        with pytest.raises(compare_module.ConfigError, match="in use"):
            compare(base(tiny_data), out, [NET], ["bp"])
    finally:
        held.close()


def test_a_file_system_error_in_any_command_is_one_line(tmp_path, tiny_data, capsys):
    out = tmp_path / "grid"
    (out / "results.md").mkdir(parents=True)  # results.md cannot be written: a folder is in its place
    argv = ["compare", "--net", NET, "--rule", "bp", "--seed", "0", "--data", tiny_data, "--epochs", "1",
            "--batch-size", "20", "--backend", "numpy", "--quiet", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    last = err.splitlines()[-1]  # after compare's progress line
    assert last.startswith("hebbref compare: error: cannot use") and "results.md: Is a directory" in last, last


def test_an_empty_out_is_refused_rather_than_writing_into_the_current_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--net", NET, "--data", "fashion-mnist-mini", "--out", " "]) == 2
    assert "--out must name a folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# --- compare: ties -----------------------------------------------------------------------------------
def test_equal_results_rank_as_a_tie():
    def history(*accuracies):
        return [{"epoch": e + 1, "test_accuracy": a} for e, a in enumerate(accuracies)]

    by_rule = {"bp": [history(0.5, 0.8)], "frfb": [history(0.6, 0.7)], "urfb": [history(0.5, 0.8)]}
    ranking = ranking_by_epoch(by_rule)
    assert ranking == [(1, ["frfb", "bp = urfb"]), (2, ["bp = urfb", "frfb"])]
    runs = [(TrainConfig(rule=rule), histories[0]) for rule, histories in by_rule.items()]
    assert "| bp = urfb > frfb | 2 | 2 |" in ranking_table(runs)
    assert ranking_by_epoch({"bp": [history(0.5)], "urfb": [history(0.5 + 1e-12)]}) == [(1, ["bp = urfb"])]
    assert ranking_by_epoch({"bp": [history(0.5)], "urfb": [history(0.5001)]}) == [(1, ["urfb", "bp"])]


def test_urfb_with_symmetric_init_ties_with_bp_in_results(tmp_path, tiny_data):
    text = compare(base(tiny_data), tmp_path / "sym", [NET], ["bp", "urfb"], inits=("symmetric",), seeds=(0, 1))
    assert "| bp = urfb |" in text and "bp > urfb" not in text and "urfb > bp" not in text


# --- hebbref theory --out FILE -----------------------------------------------------------------------
@pytest.mark.parametrize("where", ["a file", "inside a file"])
def test_theory_out_that_cannot_be_a_folder_is_one_line(tmp_path, capsys, where):
    blocker = tmp_path / "report.md"
    blocker.write_text("my notes")
    out = blocker if where == "a file" else blocker / "report"
    try:
        code = main(["theory", "--quick", "--out", str(out)])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert str(out) in err
    assert blocker.read_text() == "my notes"


# --- ./run hebbref with relative paths ----------------------------------------------------------------
def fake_venv(folder):
    """A venv for ./run that is already set up: python is this interpreter, hebbref runs this tree."""
    bin_ = folder / "bin"
    bin_.mkdir(parents=True)
    (bin_ / "python").symlink_to(sys.executable)
    (bin_ / "hebbref").write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m hebbref "$@"\n')
    (bin_ / "hebbref").chmod(0o755)
    (folder / ".hebbref-installed-test").touch()
    os.utime(folder / ".hebbref-installed-test", (2**31, 2**31))  # newer than pyproject.toml: no install
    return folder


def test_run_hebbref_reads_relative_paths_from_the_users_folder(tmp_path, tiny_data):
    here = tmp_path / "work"
    here.mkdir()
    (here / "mine.npz").write_bytes(Path(tiny_data).read_bytes())
    env = dict(os.environ, HEBBREF_VENV=str(fake_venv(tmp_path / "venv")), OPENBLAS_NUM_THREADS="1")
    result = subprocess.run([str(ROOT / "run"), "hebbref", "train", "--net", NET, "--data", "mine.npz",
                             "--epochs", "1", "--batch-size", "20", "--backend", "numpy", "--quiet",
                             "--out", f"runs/{tmp_path.name}"], cwd=here, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert (here / "runs" / tmp_path.name / "log.jsonl").exists()
    assert not (ROOT / "runs" / tmp_path.name).exists()
