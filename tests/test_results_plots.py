"""scripts/results_plots.py: redraw results/ from results.csv and the kept logs, and say what it could not."""
import csv
import importlib.util
import json
from pathlib import Path

import pytest

from hebbref.experiments.compare import dense_stack, run_name
from hebbref.experiments.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
spec = importlib.util.spec_from_file_location("results_plots", ROOT / "scripts" / "results_plots.py")
results_plots = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results_plots)


def write_table(folder, nets, with_logs):
    """A results.csv as compare writes it, and (if asked) each run's log under folder/logs/RUN/."""
    folder.mkdir(parents=True)
    fields = ["net", "untied", "rule", "init", "loss", "seed", "epochs", "train_loss", "train_accuracy",
              "val_accuracy", "test_accuracy", "seconds"]
    with open(folder / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for net in nets:
            for rule in ("bp", "frfb", "urfb"):
                for seed in (0, 1):
                    accuracy = 0.8 - (0.1 if rule == "frfb" else 0) * net.count("ramp") + 0.01 * seed
                    writer.writerow([net, False, rule, "random", "hinge", seed, 2, 0.3, accuracy, accuracy, accuracy, 1.0])
                    if with_logs:
                        run = folder / "logs" / run_name(TrainConfig(net=net, rule=rule, seed=seed))
                        run.mkdir(parents=True)
                        layers = {f"dense{i}": {"corr_WR": 0.5, "angle_RW": 40.0} for i in range(1, 4)}
                        records = [{"epoch": e, "test_accuracy": accuracy, "layers": layers} for e in (1, 2)]
                        (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_depth_from_the_csv_and_the_other_plots_only_from_logs(tmp_path):
    depth = tmp_path / "3-depth"
    write_table(depth, [dense_stack(2, 4), dense_stack(4, 4)], with_logs=False)
    line = results_plots.redraw(depth)
    assert "depth.png from results.csv" in line and "NOT redrawn: 12 of 12 runs have no log" in line
    assert (depth / "depth.png").read_bytes()[:8] == PNG
    assert not (depth / "accuracy.png").exists()
    assert results_plots.depth_accuracies(results_plots.configs_of(depth))["frfb"][4] == pytest.approx([0.4, 0.41])

    rules = tmp_path / "1-rules"
    write_table(rules, ["dense4 ramp dense4 ramp out"], with_logs=True)
    assert results_plots.redraw(rules).endswith("accuracy.png and alignment.png from logs/")
    for name in ("accuracy.png", "alignment.png"):
        assert (rules / name).read_bytes()[:8] == PNG
    assert not (rules / "depth.png").exists()


def test_rules_summary_ranks_every_epoch_and_averages_the_probes_over_seeds(tmp_path, capsys):
    """scripts/rules_summary.py: the accuracy after chosen epochs, the ranking epoch by epoch, the probes."""
    spec_summary = importlib.util.spec_from_file_location("rules_summary", ROOT / "scripts" / "rules_summary.py")
    rules_summary = importlib.util.module_from_spec(spec_summary)
    spec_summary.loader.exec_module(rules_summary)
    folder = tmp_path / "7-rules"
    folder.mkdir()
    net = "dense4 ramp dense4 ramp out"
    # epoch 1: frfb leads; epoch 2: bp leads, then urfb, then frfb
    accuracy = {"bp": (0.50, 0.80), "urfb": (0.40, 0.70), "frfb": (0.60, 0.65)}
    with open(folder / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["net", "untied", "rule", "init", "loss", "seed", "epochs", "test_accuracy"])
        for rule, (first, second) in accuracy.items():
            for seed in (0, 1):
                writer.writerow([net, False, rule, "random", "hinge", seed, 2, second])
                run = folder / "logs" / run_name(TrainConfig(net=net, rule=rule, seed=seed))
                run.mkdir(parents=True)
                layers = {name: {"corr_WR": 0.0, "angle_RW": 10.0 * (seed + 1) + i, "norm_ratio": 1.0 + seed}
                          for i, name in enumerate(("dense1", "dense2", "dense3"))}
                records = [{"epoch": e, "test_accuracy": a + 0.01 * seed, "layers": layers}
                           for e, a in ((1, first), (2, second))]
                (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    rules_summary.main([str(folder), "--epochs", "1,2,5"])
    out = capsys.readouterr().out
    assert "| 1 | frfb > bp > urfb |" in out and "| 2 | bp > urfb > frfb |" in out
    assert "| bp | 50.50 | 80.50 | 80.50 ± 0.71 |" in out  # epoch 5 is past the last: left out
    assert "dense1: angle" not in out  # the first layer's error reaches nothing
    assert "| bp | 16, 1.50 | 17, 1.50 | 16 |" in out  # mean over seeds of (10, 20) + 1 and (10, 20) + 2
