"""Learning curves in hebbref train: the schedule, the log, and that measuring changes nothing."""
import json
from pathlib import Path

import numpy as np
import pytest

from hebbref.experiments.curve import evaluation_steps
from hebbref.experiments.train import CHECKPOINT, LOG, TrainConfig, train

NET = "dense16 ramp drop0.2 dense16 ramp out"  # dropout: its generator must not be disturbed


def config(tmp_path, name, **changes):
    values = dict(net=NET, data="fashion-mnist-mini", train_size=600, batch_size=50, probe_size=40,
                  train_eval_size=100, backend="numpy", quiet=True, epochs=2, out=str(tmp_path / name))
    return TrainConfig(**(values | changes))


def arrays(folder):
    with np.load(Path(folder) / CHECKPOINT, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.mark.parametrize("n_batches,k,first,expected", [
    (12, 4, True, {0, 3, 6, 9, 12}),
    (12, 4, False, {3, 6, 9, 12}),
    (10, 3, False, {4, 7, 10}),  # ceil(10/3), ceil(20/3), 10
    (3, 8, False, {1, 2, 3}),  # at most one per step
    (5, 1, False, {5}),
    (5, 0, True, set()),
])
def test_the_schedule_is_evenly_spaced_and_ends_with_the_epoch(n_batches, k, first, expected):
    assert evaluation_steps(n_batches, k, first) == expected


def test_the_curve_is_logged_with_the_step_count_and_the_epoch_records_stay(tmp_path):
    history, net = train(config(tmp_path, "curve", evals_per_epoch=3, curve_size=150))
    lines = [json.loads(line) for line in (tmp_path / "curve" / LOG).read_text().splitlines()]
    assert lines == history and [r["epoch"] for r in lines] == [1, 2]
    steps = [p["step"] for r in lines for p in r["curve"]]
    assert steps == [0, 4, 8, 12, 16, 20, 24]  # 12 steps per epoch (600 / 50), 3 points each, and step 0
    for record in lines:
        assert {"train_loss", "test_accuracy", "layers"} <= set(record)
        for point in record["curve"]:
            assert 0 <= point["test_accuracy"] <= 1
            assert set(point["layers"]) == {p.name for p in net.parameters()}
    # the last point of an epoch is the epoch's network: on the same 150 images it scores the same
    last = lines[-1]["curve"][-1]["test_accuracy"]
    from hebbref.experiments.data import load_splits
    splits = load_splits("fashion-mnist-mini", None, 600)
    assert last == net.accuracy(splits.x_test[:150], splits.y_test[:150])


def test_measuring_the_curve_changes_no_weight_and_resume_is_bit_for_bit(tmp_path):
    train(config(tmp_path, "plain", epochs=3))
    train(config(tmp_path, "whole", epochs=3, evals_per_epoch=4))
    train(config(tmp_path, "parts", epochs=1, evals_per_epoch=4))
    parts, _ = train(config(tmp_path, "parts", epochs=3, evals_per_epoch=4), resume=True)
    plain, whole, resumed = arrays(tmp_path / "plain"), arrays(tmp_path / "whole"), arrays(tmp_path / "parts")
    for key in set(plain) - {"config", "loop.history"}:  # every W, R, the dropout generator, the epoch
        np.testing.assert_array_equal(whole[key], plain[key], err_msg=key)
        np.testing.assert_array_equal(resumed[key], whole[key], err_msg=key)
    whole_history = json.loads(str(whole["loop.history"]))
    assert [r["curve"] for r in parts] == [r["curve"] for r in whole_history]
    assert [p["step"] for r in parts for p in r["curve"]][:2] == [0, 3]  # the first epoch's points survive resume
