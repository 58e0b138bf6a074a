"""Faults around `hebbref train` (FAULTS.md): a second run on one folder, a full disk while
saving, a damaged checkpoint, divergence. Each must give one line, a non-zero exit, and
lose nothing: the last good checkpoint stays and `--resume` works afterwards."""
import errno
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hebbref.cli import main
from hebbref.experiments import rundir
from hebbref.experiments.train import CHECKPOINT, LOG, TrainConfig, train
from hebbref.network import Network

ROOT = Path(__file__).resolve().parents[1]
NET = "dense16 ramp drop0.2 out"
RUN = ["--net", NET, "--data", "fashion-mnist-mini", "--train-size", "200", "--batch-size", "50",
       "--probe-size", "20", "--train-eval-size", "100", "--backend", "numpy", "--quiet"]
STEPS_PER_EPOCH = 4  # 200 images in batches of 50
ENV = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")


def config(out, **changes):
    values = dict(net=NET, data="fashion-mnist-mini", train_size=200, batch_size=50, probe_size=20,
                  train_eval_size=100, backend="numpy", quiet=True, epochs=2, out=str(out))
    return TrainConfig(**(values | changes))


def arrays(folder):
    with np.load(Path(folder) / CHECKPOINT, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def leftovers(folder):
    """Temporary files left in a run folder (there must be none)."""
    return [p.name for p in Path(folder).iterdir() if p.name.endswith(".tmp")]


def one_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def run_cli(argv, capsys):
    code = main(argv)
    return code, one_line(capsys.readouterr().err) if code else ""


def hebbref_process(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "hebbref", *args], env=ENV, capture_output=True, text=True,
                          timeout=120, **kwargs)


# --- one run per folder ---------------------------------------------------------------------
def test_a_second_train_on_a_folder_in_use_refuses_at_once_naming_it(tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    held = rundir.lock_folder(out)  # as a running `hebbref train` holds it
    try:
        start = time.monotonic()
        code, line = run_cli(["train", *RUN, "--epochs", "1", "--out", str(out)], capsys)
        assert code == 2 and str(out) in line and "in use" in line, line
        assert time.monotonic() - start < 30  # refuses, does not wait
        assert not (out / CHECKPOINT).exists()
    finally:
        held.close()
    assert main(["train", *RUN, "--epochs", "1", "--out", str(out)]) == 0  # free again


def test_two_real_processes_one_refuses_and_a_sigkill_frees_the_folder(tmp_path):
    out = tmp_path / "shared"
    first = subprocess.Popen([sys.executable, "-m", "hebbref", "train", *RUN, "--epochs", "100000",
                              "--out", str(out)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (out / CHECKPOINT).exists():
            assert first.poll() is None, first.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.01)
        second = hebbref_process("train", *RUN, "--epochs", "3", "--out", str(out), "--resume")
        assert second.returncode == 2
        line = one_line(second.stderr)
        assert str(out) in line and "in use" in line, line
        assert first.poll() is None  # the first run goes on, untouched
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    epoch = int(arrays(out)["loop.epoch"])
    resumed = hebbref_process("train", *RUN, "--epochs", str(epoch + 1), "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr  # the kernel dropped the killed run's lock
    assert int(arrays(out)["loop.epoch"]) == epoch + 1


# --- a full disk ----------------------------------------------------------------------------------
def test_disk_full_while_saving_keeps_the_last_checkpoint_and_resume_works_after(tmp_path, capsys, monkeypatch):
    out = tmp_path / "full"
    assert main(["train", *RUN, "--epochs", "1", "--out", str(out)]) == 0
    before = (out / CHECKPOINT).read_bytes()
    real_savez = np.savez

    def disk_full(file, **_):
        file.write(b"PK\x03\x04" + bytes(5000))  # part of a zip, then the device is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", disk_full)
    code, line = run_cli(["train", *RUN, "--epochs", "2", "--out", str(out), "--resume"], capsys)
    assert code == 2 and "No space left on device" in line and str(out / CHECKPOINT) in line, line
    assert (out / CHECKPOINT).read_bytes() == before  # the last good checkpoint, intact
    assert leftovers(out) == []  # no partial file
    assert len((out / LOG).read_text().splitlines()) == 1

    monkeypatch.setattr(np, "savez", real_savez)  # space is back
    assert main(["train", *RUN, "--epochs", "2", "--out", str(out), "--resume"]) == 0
    _, whole = train(config(tmp_path / "whole", epochs=2))
    resumed = arrays(out)
    for p in whole.parameters():
        np.testing.assert_array_equal(resumed[f"{p.name}.W"], p.W)  # bit for bit an uninterrupted run


def test_a_write_limit_in_a_real_process_is_one_line_and_leaves_no_partial_file(tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse the write (EFBIG), as a full disk refuses it (ENOSPC)."""
    out = tmp_path / "limited"

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error from write(), not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # the checkpoint is ~100 kB

    result = hebbref_process("train", *RUN, "--epochs", "2", "--out", str(out), preexec_fn=limit_file_size)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "cannot write" in line and CHECKPOINT in line, line
    assert leftovers(out) == [] and not (out / CHECKPOINT).exists()
    again = hebbref_process("train", *RUN, "--epochs", "2", "--out", str(out), "--resume")
    assert again.returncode == 0, again.stderr
    assert int(arrays(out)["loop.epoch"]) == 2


@pytest.mark.skipif(os.geteuid() != 0 or not sys.platform.startswith("linux"), reason="mounting needs root")
def test_a_real_full_tmpfs(tmp_path):
    """Where a tmpfs can be mounted: a filesystem with room for one checkpoint, not two."""
    train(config(tmp_path / "measure", epochs=1))
    size_kib = (tmp_path / "measure" / CHECKPOINT).stat().st_size * 3 // 2 // 1024  # 1.5 checkpoints
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        out = mount / "run"
        result = hebbref_process("train", *RUN, "--epochs", "3", "--out", str(out))
        assert result.returncode == 2
        assert "No space left on device" in one_line(result.stderr)
        assert leftovers(out) == [] and int(arrays(out)["loop.epoch"]) == 1
        subprocess.run(["mount", "-o", f"remount,size={4 * size_kib}k", str(mount)], check=True)
        again = hebbref_process("train", *RUN, "--epochs", "3", "--out", str(out), "--resume")
        assert again.returncode == 0, again.stderr
        assert int(arrays(out)["loop.epoch"]) == 3
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_temporary_file_left_by_a_killed_writer_is_cleaned_up(tmp_path):
    out = tmp_path / "stale"
    train(config(out, epochs=1))
    (out / f"{CHECKPOINT}.tmp").write_bytes(b"half a zip")  # what the old writer left after a crash
    (out / f".{CHECKPOINT}.x1y2.tmp").write_bytes(b"half a zip")
    train(config(out, epochs=2), resume=True)
    assert leftovers(out) == []


# --- a damaged checkpoint ----------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "foreign npz"])
def test_a_damaged_checkpoint_is_one_line_naming_the_file_and_what_to_do(tmp_path, capsys, damage):
    out = tmp_path / "damaged"
    train(config(out, epochs=1))
    path = out / CHECKPOINT
    data = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a zip file at all" * 10)
    else:
        np.savez(path, something=np.zeros(3))
    code, line = run_cli(["train", *RUN, "--epochs", "2", "--out", str(out), "--resume"], capsys)
    assert code == 2 and str(path) in line and "move it away" in line, line


# --- divergence -------------------------------------------------------------------------------------
def step_from(epoch, effect):
    """Network.train_step as it is, except that from ``epoch`` on ``effect(net, loss)`` changes the result."""
    original, calls = Network.train_step, [0]

    def step(self, *args, **kwargs):
        calls[0] += 1
        value = original(self, *args, **kwargs)
        return effect(self, value) if calls[0] > (epoch - 1) * STEPS_PER_EPOCH else value
    return step


def test_a_nan_loss_after_a_good_epoch_says_which_checkpoint_is_kept(tmp_path, capsys, monkeypatch):
    out = tmp_path / "nan"
    monkeypatch.setattr(Network, "train_step", step_from(2, lambda net, value: float("nan")))
    code, line = run_cli(["train", *RUN, "--epochs", "3", "--out", str(out)], capsys)
    assert code == 2 and "epoch 2, step 1" in line and "checkpoint of epoch 1" in line, line
    assert int(arrays(out)["loop.epoch"]) == 1


def test_weights_that_blow_up_without_a_nan_are_not_checkpointed(tmp_path, capsys, monkeypatch):
    out = tmp_path / "blowup"

    def blow_up(net, value):
        net.parameters()[-1].W *= 1e4  # finite, but the outputs and the loss are 10,000 times larger
        return value

    monkeypatch.setattr(Network, "train_step", step_from(2, blow_up))
    code, line = run_cli(["train", *RUN, "--epochs", "3", "--out", str(out)], capsys)
    assert code == 2 and "after epoch 2" in line and "checkpoint of epoch 1" in line, line
    kept = arrays(out)
    assert int(kept["loop.epoch"]) == 1
    assert max(float(np.abs(v).max()) for k, v in kept.items() if k.endswith((".W", ".R"))) < 10
    assert len((out / LOG).read_text().splitlines()) == 1
    monkeypatch.undo()  # with sound steps the run resumes from the kept checkpoint
    assert main(["train", *RUN, "--epochs", "3", "--out", str(out), "--resume"]) == 0
    assert [json.loads(line)["epoch"] for line in (out / LOG).read_text().splitlines()] == [1, 2, 3]
