"""The per-epoch ranking and the probes of a comparison of rules, from the logs results/ keeps.

    PYTHONPATH=. python scripts/rules_summary.py results/7-rules-simple [--epochs 1,2,5,10]

Reads results/NAME/results.csv and each run's results/NAME/logs/RUN/log.jsonl (copied
there by scripts/results.sh) and prints Markdown, one section per network:

1. mean test accuracy (%) of each rule after the given epochs, over the seeds;
2. the ranking of the rules by that mean after every epoch;
3. the probes after the last epoch, mean over the seeds, layer by layer: the angle (°)
   between the error each layer sends down through its feedback and the one
   back-propagation would send (for ``dfa``: the layer's δ against back-prop's δ), and
   ‖B‖/‖W‖ (see hebbref.experiments.probes), and the mean of those angles. The first
   layer's angle is left out: no layer below uses its error.

RESULTS.md's table of all nine rules quotes this script's output.
"""
import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from hebbref.experiments.compare import read_history

sys.path.insert(0, str(Path(__file__).parent))
from results_plots import configs_of  # noqa: E402


def histories(folder):
    """{net: {rule: [history of each seed]}} from folder/logs/RUN/log.jsonl."""
    runs = defaultdict(lambda: defaultdict(list))
    for config, _ in configs_of(folder):
        history = read_history(config)
        if not history:
            raise SystemExit(f"{config.out}/log.jsonl is missing: run scripts/results.sh, which keeps every run's log")
        runs[config.net][config.rule].append(history)
    return runs


def mean_accuracy(seeds, epoch):
    return 100 * statistics.mean(history[epoch - 1]["test_accuracy"] for history in seeds)


def best_first(by_rule, epoch):
    """(rule, seeds) pairs, the highest mean test accuracy after ``epoch`` first."""
    return sorted(by_rule.items(), key=lambda item: -mean_accuracy(item[1], epoch))


def accuracy_table(by_rule, epochs):
    last = min(len(history) for seeds in by_rule.values() for history in seeds)
    epochs = [e for e in epochs if e <= last]
    lines = ["| rule | " + " | ".join(f"epoch {e}" for e in epochs) + " | after the last, ± std |",
             "|---|" + "---:|" * (len(epochs) + 1)]
    for rule, seeds in best_first(by_rule, last):
        final = [100 * history[last - 1]["test_accuracy"] for history in seeds]
        spread = statistics.stdev(final) if len(final) > 1 else 0.0
        lines.append(f"| {rule} | " + " | ".join(f"{mean_accuracy(seeds, e):.2f}" for e in epochs)
                     + f" | {statistics.mean(final):.2f} ± {spread:.2f} |")
    return "\n".join(lines), last


def ranking_table(by_rule, last):
    lines = ["| epoch | ranking by mean test accuracy |", "|---:|---|"]
    for epoch in range(1, last + 1):
        lines.append(f"| {epoch} | {' > '.join(rule for rule, _ in best_first(by_rule, epoch))} |")
    return "\n".join(lines)


def probe_table(by_rule, last):
    layers = list(next(iter(by_rule.values()))[0][last - 1]["layers"])[1:]  # the first layer sends nothing used
    lines = ["| rule | " + " | ".join(f"{name}: angle °, ‖B‖/‖W‖" for name in layers) + " | mean angle ° |",
             "|---|" + "---:|" * (len(layers) + 1)]
    for rule, seeds in best_first(by_rule, last):
        cells, angles = [], []
        for name in layers:
            angle = statistics.mean(history[last - 1]["layers"][name]["angle_RW"] for history in seeds)
            ratio = statistics.mean(history[last - 1]["layers"][name]["norm_ratio"] for history in seeds)
            cells.append(f"{angle:.0f}, {ratio:.2f}")
            angles.append(angle)
        lines.append(f"| {rule} | " + " | ".join(cells) + f" | {statistics.mean(angles):.0f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--epochs", default="1,2,5,10", help="epochs of the accuracy table")
    args = parser.parse_args(argv)
    epochs = [int(e) for e in args.epochs.split(",")]
    for net, by_rule in histories(args.folder).items():
        table, last = accuracy_table(by_rule, epochs)
        print(f"### `{net}`\n\nMean test accuracy (%), {len(next(iter(by_rule.values())))} seeds:\n\n{table}\n")
        print(f"Ranking after each epoch:\n\n{ranking_table(by_rule, last)}\n")
        print(f"Probes after epoch {last}, mean over the seeds:\n\n{probe_table(by_rule, last)}\n")


if __name__ == "__main__":
    main()
