"""hebbref train: the log, checkpoints, resume after a SIGKILL, divergence, bad arguments, probes."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import hebbref
from hebbref.cli import main
from hebbref.experiments.probes import angle_degrees, correlation, probe
from hebbref.experiments.train import CHECKPOINT, LOG, Progress, TrainConfig, train
from hebbref.losses import hinge_loss

ROOT = Path(__file__).resolve().parents[1]
# small and quick, with dropout so that the dropout generator must be restored too
NET = "dense32 ramp drop0.2 dense32 ramp out"
RUN = ["--net", NET, "--data", "fashion-mnist-mini", "--train-size", "2000", "--batch-size", "50",
       "--probe-size", "100", "--backend", "numpy", "--quiet"]


def config(tmp_path, name="run", **changes):
    values = dict(net=NET, data="fashion-mnist-mini", train_size=2000, batch_size=50, probe_size=100,
                  backend="numpy", quiet=True, epochs=2, out=str(tmp_path / name))
    return TrainConfig(**(values | changes))


def checkpoint_arrays(folder):
    with np.load(Path(folder) / CHECKPOINT, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def test_log_has_one_line_per_epoch_and_the_checkpoint_loads_without_pickle(tmp_path):
    history, net = train(config(tmp_path, epochs=2))
    lines = (tmp_path / "run" / LOG).read_text().splitlines()
    assert [json.loads(line) for line in lines] == history
    assert [r["epoch"] for r in history] == [1, 2]
    for record in history:
        for key in ("train_loss", "train_accuracy", "val_accuracy", "test_accuracy", "seconds"):
            assert np.isfinite(record[key]), key
        assert set(record["layers"]) == {p.name for p in net.parameters()}
    arrays = checkpoint_arrays(tmp_path / "run")  # np.load with allow_pickle=False raises on objects
    for p in net.parameters():
        np.testing.assert_array_equal(arrays[f"{p.name}.W"], p.W)
        np.testing.assert_array_equal(arrays[f"{p.name}.R"], p.R)
    assert int(arrays["loop.epoch"]) == 2
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_resume_continues_to_the_same_weights_as_one_run(tmp_path):
    train(config(tmp_path, "whole", epochs=3))
    train(config(tmp_path, "parts", epochs=1))
    train(config(tmp_path, "parts", epochs=3), resume=True)
    a, b = checkpoint_arrays(tmp_path / "whole"), checkpoint_arrays(tmp_path / "parts")
    assert set(a) == set(b)
    for key in set(a) - {"config", "loop.history"}:  # every W, R, both generators, the epoch
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    accuracies = [[r["test_accuracy"] for r in json.loads(str(c["loop.history"]))] for c in (a, b)]
    assert accuracies[0] == accuracies[1]


def test_resume_after_sigkill_is_bit_for_bit(tmp_path):
    """Kill a real `hebbref train` process right after its first checkpoint, resume, compare."""
    epochs = 12
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "hebbref", "train", *RUN, "--epochs", str(epochs), "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (out / CHECKPOINT).exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint within 60 s"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    killed_at = int(checkpoint_arrays(out)["loop.epoch"])
    assert 1 <= killed_at < epochs, f"the run was not killed mid-way (checkpoint after epoch {killed_at})"

    resumed = subprocess.run(command + ["--resume"], env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    _, whole = train(config(tmp_path, "whole", epochs=epochs))
    arrays = checkpoint_arrays(out)
    assert int(arrays["loop.epoch"]) == epochs
    for p in whole.parameters():
        for which in ("W", "R"):
            assert np.array_equal(arrays[f"{p.name}.{which}"], getattr(p, which)), f"{p.name}.{which} differs"
    assert json.loads(str(arrays["dropout_rng"])) == whole.dropout_rng.bit_generator.state
    log = [json.loads(line) for line in (out / LOG).read_text().splitlines()]
    assert [r["epoch"] for r in log] == list(range(1, epochs + 1))


def test_resume_refuses_another_configuration_naming_the_fields(tmp_path, capsys):
    train(config(tmp_path, epochs=1))
    argv = ["train", *RUN, "--epochs", "2", "--out", str(tmp_path / "run"), "--resume", "--rule", "bp",
            "--lr", "0.3"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "rule (checkpoint 'urfb', now 'bp')" in err and "lr (checkpoint 0.1, now 0.3)" in err
    assert len(err.splitlines()) == 1


def test_an_existing_checkpoint_is_not_overwritten_without_resume(tmp_path, capsys):
    train(config(tmp_path, epochs=1))
    before = (tmp_path / "run" / CHECKPOINT).read_bytes()
    assert main(["train", *RUN, "--epochs", "2", "--out", str(tmp_path / "run")]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (tmp_path / "run" / CHECKPOINT).read_bytes() == before


def test_weights_that_blew_up_are_not_kept_and_the_message_says_so(tmp_path, capsys, recwarn):
    # one batch per epoch; with η = 1e30 the first step blows W up (still finite in float32,
    # but the loss of those weights overflows): that epoch's checkpoint must not be written
    # (tests/test_faults_train.py covers a good checkpoint followed by a divergence)
    out = tmp_path / "diverge"
    argv = ["train", "--net", "dense8 ramp out", "--data", "fashion-mnist-mini", "--train-size", "100",
            "--batch-size", "100", "--lr", "1e30", "--loss", "squared", "--epochs", "5", "--quiet",
            "--backend", "numpy", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "diverged" in err and "after epoch 1" in err and "no checkpoint was written" in err, err
    assert not (out / CHECKPOINT).exists()
    assert (out / LOG).read_text() == ""
    # and nothing else on stderr: NumPy's overflow warnings, two lines each outside pytest, are not shown
    assert not [str(w.message) for w in recwarn if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize("change,words", [
    (["--net", "resnet"], "unknown network"),
    (["--rule", "sgd"], "unknown rule 'sgd'"),
    (["--loss", "l1"], "unknown loss 'l1'"),
    (["--data", "imagenet"], "imagenet"),
    (["--epochs", "-1"], "expected 0 or more, got -1"),
    (["--epochs", "two"], "expected a whole number"),
    (["--batch-size", "5000"], "batch-size 5000 is larger than the 2000 training images"),
    (["--train-size", "99999"], "larger than the 9000 training images"),
    (["--lr", "-0.1"], "lr must be a positive number"),
    (["--backend", "tpu"], "unknown backend 'tpu'"),
])
def test_bad_arguments_are_one_line_and_a_non_zero_exit(tmp_path, capsys, change, words):
    argv = ["train", *RUN, "--epochs", "1", "--out", str(tmp_path / "bad"), *change]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code != 0
    assert len(err.strip().splitlines()) == 1, err
    assert words in err and "Traceback" not in err
    assert not (tmp_path / "bad" / CHECKPOINT).exists()


def test_an_unwritable_output_folder_is_one_line_from_a_real_process(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # a folder cannot be made inside a file, even by root
    result = subprocess.run(
        [sys.executable, "-m", "hebbref", "train", *RUN, "--epochs", "1", "--out", str(blocker / "run")],
        env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "cannot write to the output folder" in result.stderr and "Traceback" not in result.stderr


def test_an_npz_file_of_your_own_trains(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.random((60, 1, 4, 4), dtype=np.float32), "y_train": rng.integers(0, 3, 60),
              "x_test": rng.random((20, 1, 4, 4), dtype=np.float32), "y_test": rng.integers(0, 3, 20)}
    np.savez(tmp_path / "mine.npz", **arrays)
    history, net = train(config(tmp_path, data=str(tmp_path / "mine.npz"), train_size=None, batch_size=20,
                                net="dense5 ramp out", epochs=1))
    assert history[0]["val_accuracy"] is None and 0 <= history[0]["test_accuracy"] <= 1
    assert net.parameters()[-1].W.shape == (3, 5)


def test_the_progress_line_shows_batches_running_loss_and_images_per_second():
    import io
    stream = io.StringIO()
    progress = Progress(epoch=2, epochs=5, n_batches=4, stream=stream)
    for loss in (1.0, 2.0, 3.0, 6.0):
        progress.step(loss, 10)
    progress.close()
    line = stream.getvalue()
    assert line.startswith("epoch 2/5 [") and "4/4 batches" in line and "loss 3.0000" in line
    assert "img/s" in line


# --- probes ----------------------------------------------------------------------------------
def tiny_batch(seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((16, 6)), rng.integers(0, 3, 16)


def test_probe_by_hand_on_the_top_layer():
    """The top layer's δ is e_L: its errors down are e_L R and e_L W (row-vector form)."""
    net = hebbref.build_network("dense5 ramp dense4 ramp out", (6,), 3, rule="frfb", seed=1, backend="numpy")
    x, y = tiny_batch()
    before = [p.W.copy() for p in net.parameters()]
    result = probe(net, x, y)
    top = net.parameters()[-1]
    _, e_L = hinge_loss(net.forward(x), y)
    through_R, through_W = e_L @ top.R, e_L @ top.W  # (B, 4)
    cosine = (through_R * through_W).sum() / np.linalg.norm(through_R) / np.linalg.norm(through_W)
    assert result[top.name]["angle_RW"] == pytest.approx(np.degrees(np.arccos(cosine)), abs=1e-9)
    assert result[top.name]["corr_WR"] == pytest.approx(np.corrcoef(top.W.ravel(), top.R.ravel())[0, 1], abs=1e-12)
    assert list(result) == [p.name for p in net.parameters()]  # the first layer too
    for b, p in zip(before, net.parameters()):
        np.testing.assert_array_equal(b, p.W)  # probing changes no weight


def test_probe_with_symmetric_feedback_is_zero_degrees_and_correlation_one():
    net = hebbref.build_network("conv3:2 ramp dense4 ramp out", (1, 5, 5), 3, init="symmetric", backend="numpy")
    x = np.random.default_rng(2).random((8, 1, 5, 5))
    result = probe(net, x, np.arange(8) % 3)
    for name, values in result.items():
        assert values["corr_WR"] == pytest.approx(1.0, abs=1e-12), name
        assert values["angle_RW"] == pytest.approx(0.0, abs=1e-5), name


def test_angle_and_correlation_on_known_vectors():
    assert angle_degrees(np.array([1.0, 0.0]), np.array([0.0, 2.0])) == pytest.approx(90.0)
    assert angle_degrees(np.array([1.0, 1.0]), np.array([-3.0, -3.0])) == pytest.approx(180.0)
    assert correlation(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0])) == pytest.approx(1.0)
    assert np.isnan(angle_degrees(np.zeros(3), np.ones(3)))


@pytest.mark.parametrize("backend, nothing_planned, said", [("numba", True, True), ("numba", False, False),
                                                             ("numpy", True, False)])
def test_training_says_when_its_first_steps_will_compile_and_time_the_kernels(tmp_path, monkeypatch, backend,
                                                                              nothing_planned, said):
    import io

    from hebbref.kernels import plan

    monkeypatch.setattr(plan, "nothing_planned", lambda threads=None: nothing_planned)
    stream = io.StringIO()
    train(config(tmp_path, backend=backend, quiet=False, epochs=1, train_size=200), stream=stream)
    assert ("no plans on file for this CPU and this kernel code yet" in stream.getvalue()) == said
    stream = io.StringIO()
    train(config(tmp_path, "quiet", backend=backend, epochs=1, train_size=200), stream=stream)
    assert "no plans" not in stream.getvalue()


def test_no_notice_for_a_backend_that_does_not_load_each_run_says_why_itself():
    from hebbref.experiments.train import first_steps_notice

    assert first_steps_notice("tpu") is None and first_steps_notice("numpy") is None
