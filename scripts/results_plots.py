"""Redraw the plots kept in results/ from what results/ keeps, without training anything.

    PYTHONPATH=. python scripts/results_plots.py [results]

For each table folder results/NAME/ (see scripts/results.sh):

- results.csv holds every run's configuration and its last epoch: enough for
  ``depth.png`` (final accuracy against depth), which is redrawn for a depth study;
- the per-epoch curves and probes behind ``accuracy.png`` and ``alignment.png`` are in
  each run's log.jsonl. scripts/results.sh copies them to results/NAME/logs/ (since the
  plots moved to hebbref.experiments.plots); where they are there, both plots are
  redrawn; where they are not, the script says so and leaves the old plots alone.
"""
import csv
import re
import sys
from pathlib import Path

from hebbref.experiments import plots
from hebbref.experiments.compare import read_history, run_name
from hebbref.experiments.train import TrainConfig

DENSE_STACK = re.compile(r"^(?:dense\d+ ramp )+out$")


def configs_of(folder):
    """(config, row) for every row of folder/results.csv; config.out points into folder/logs/."""
    with open(folder / "results.csv") as f:
        rows = list(csv.DictReader(f))
    configs = []
    for row in rows:
        config = TrainConfig(net=row["net"], untied=row["untied"] == "True", rule=row["rule"], init=row["init"],
                             loss=row["loss"], seed=int(row["seed"]))
        config.out = str(folder / "logs" / run_name(config))
        configs.append((config, row))
    return configs


def depth_accuracies(configs):
    """{rule: {hidden layers: [final test accuracy of each seed]}} when the table is a depth study, else None."""
    nets = {config.net for config, _ in configs}
    if len(nets) < 2 or not all(DENSE_STACK.match(net) for net in nets):
        return None
    accuracies = {}
    for config, row in configs:
        depth = config.net.count(" ramp")
        accuracies.setdefault(config.rule, {}).setdefault(depth, []).append(float(row["test_accuracy"]))
    return accuracies


def redraw(folder):
    """Redraw what folder's files allow; return one line saying what was done."""
    configs = configs_of(folder)
    done = []
    accuracies = depth_accuracies(configs)
    if accuracies:
        plots.plot_depth_values(folder / "depth.png", accuracies)
        done.append("depth.png from results.csv")
    runs = [(config, read_history(config)) for config, _ in configs]
    if all(history for _, history in runs):
        plots.plot_accuracy(folder / "accuracy.png", runs)
        aligned = plots.plot_alignment(folder / "alignment.png", runs)
        done.append("accuracy.png" + (" and alignment.png" if aligned is not None else "") + " from logs/")
    else:
        missing = sum(not history for _, history in runs)
        done.append(f"accuracy.png and alignment.png NOT redrawn: {missing} of {len(runs)} runs have no log in "
                    f"{folder / 'logs'} (results.csv holds only the last epoch; rerun scripts/results.sh)")
    return f"{folder}: " + "; ".join(done)


def main(argv):
    root = Path(argv[0] if argv else "results")
    for folder in sorted(p.parent for p in root.glob("*/results.csv")):
        print(redraw(folder))


if __name__ == "__main__":
    main(sys.argv[1:])
