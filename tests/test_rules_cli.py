"""The rules from the command line: ``hebbref rules``, ``--rule NAME``, ``--weight-decay``,
and the probes every rule writes into ``log.jsonl`` (corr_WR, angle_RW, norm_ratio)."""
import json

import numpy as np
import pytest

from hebbref.cli import main
from hebbref.experiments.train import CHECKPOINT, LOG
from hebbref.rules import RULES

RUN = ["--net", "conv3:2 ramp pool2 dense8 ramp out", "--data", "fashion-mnist-mini", "--train-size", "60",
       "--batch-size", "20", "--probe-size", "20", "--train-eval-size", "20", "--backend", "numpy", "--quiet",
       "--epochs", "1"]


def test_hebbref_rules_lists_every_rule_on_one_line(capsys):
    assert main(["rules"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(RULES)
    assert all(RULES[line.split()[0]].summary in line for line in lines)


@pytest.mark.parametrize("rule", list(RULES))
def test_every_rule_trains_from_the_command_line_and_logs_the_three_probes(tmp_path, rule):
    out = tmp_path / rule
    assert main(["train", *RUN, "--rule", rule, "--weight-decay", "0.01", "--out", str(out)]) == 0
    record = json.loads((out / LOG).read_text().splitlines()[-1])
    assert set(record["layers"]) == {"conv1", "dense1", "dense2"}
    for name, values in record["layers"].items():
        assert set(values) == {"corr_WR", "angle_RW", "norm_ratio"}, name
        assert 0 <= values["angle_RW"] <= 180 and values["norm_ratio"] > 0, (rule, name, values)
    if rule == "bp":
        assert all(v["angle_RW"] == 0 and v["norm_ratio"] == 1 for v in record["layers"].values())
    if rule in ("usf", "dfa"):
        # usf: ‖B‖ = ‖W‖ by its choice of scale; dfa: at the output δ_L = e_L under both rules
        layer = "dense2" if rule == "dfa" else "conv1"
        assert abs(record["layers"][layer]["norm_ratio"] - 1) < 1e-6
    with np.load(out / CHECKPOINT, allow_pickle=False) as npz:
        config = json.loads(str(npz["config"]))
    assert config["weight_decay"] == 0.01 and config["rule"] == rule


def test_a_negative_weight_decay_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["train", *RUN, "--weight-decay", "-1", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "weight-decay must be 0 or more" in err


def test_compare_takes_a_list_of_every_rule(tmp_path, capsys):
    argv = ["compare", *RUN, "--net", "dense8 ramp out", "--seed", "0", "--rule", ",".join(RULES),
            "--out", str(tmp_path / "cmp")]
    assert main(argv) == 0
    table = (tmp_path / "cmp" / "results.md").read_text()
    for rule in RULES:
        assert f"| {rule} |" in table
