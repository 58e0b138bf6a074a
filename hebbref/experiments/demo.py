"""``hebbref demo``: the three rules side by side on the embedded Fashion-MNIST subset.

Nine runs on ``fashion-mnist-mini`` (9,000 training, 1,000 validation, 2,000 test
images, shipped inside hebbref), one seed, each rule ``bp``, ``frfb``, ``urfb`` on:

- ``simple`` (SPEC §6) with its convolution tied, as in the paper;
- ``simple`` with the convolution untied (locally connected, SPEC §5);
- a deeper network, six dense hidden layers of 100 ramp units, where fixed random
  feedback falls behind (SPEC §7, claim 2); it is cheap, so it trains for more epochs.

It prints the comparison (test accuracy after the last epoch, one row per network,
one column per rule) and writes the plots and tables of ``hebbref compare`` into the
output folder. The settings are the demo's, not the paper's: a few epochs, batch 100
and η = 0.3 instead of hundreds of epochs at batch 500 and η = 0.1, so that it ends
in a few minutes on two cores; the full-size comparisons are in RESULTS.md.
"""
import dataclasses
import sys
import time
from pathlib import Path

from .compare import collect, dense_stack, grid_configs, group_runs, mean_std, percent, run_grid, summarise
from .train import TrainConfig, prepare_out

DEEPER = dense_stack(6, 100)
# (network, untied, label, epochs): the dense network is cheap, so it gets more epochs
NETWORKS = (("simple", False, "simple, tied conv", 2), ("simple", True, "simple, untied (locally connected)", 2),
            (DEEPER, False, "6 dense hidden layers", 8))
RULES = ("bp", "frfb", "urfb")
DEMO = TrainConfig(data="fashion-mnist-mini", batch_size=100, lr=0.3, probe_size=200, train_eval_size=1000,
                   quiet=True)


def demo_configs(out, base=DEMO, epochs=None):
    """The nine runs; ``epochs`` (if given) replaces every network's own number of epochs."""
    configs = []
    for net, untied, _, net_epochs in NETWORKS:
        config = dataclasses.replace(base, epochs=net_epochs if epochs is None else epochs)
        configs += grid_configs(config, out, [net], RULES, untied=(untied,), seeds=(base.seed,))
    return configs


def rule_table(configs):
    """Rows: the demo's networks; columns: the rules; test accuracy % after the last epoch."""
    groups = group_runs(collect(configs))
    epochs = {(c.net, c.untied): c.epochs for c in configs}
    lines = ["| network | epochs | " + " | ".join(RULES) + " |", "|---|---:|" + "---:|" * len(RULES)]
    for net, untied, label, _ in NETWORKS:
        cells = []
        for rule in RULES:
            histories = [h for key, hs in groups.items() if key[0] == net and key[1] == untied and key[4] == rule
                         for h in hs if h]
            cells.append(percent(*mean_std([h[-1]["test_accuracy"] for h in histories])))
        lines.append(f"| {label} | {epochs[(net, untied)]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_demo(out="runs/demo", epochs=None, train_size=None, jobs=2, backend=None, seed=0,
             stream=None):
    """Train the nine runs (resuming any already there), write the results, return the table."""
    stream = stream or sys.stderr
    start = time.perf_counter()
    out = prepare_out(out)
    base = dataclasses.replace(DEMO, train_size=train_size, backend=backend, seed=seed)
    configs = demo_configs(out, base, epochs)
    configs.sort(key=lambda c: c.net == DEEPER)  # the long runs first: the processes end together
    stream.write(f"hebbref demo: {len(configs)} runs on fashion-mnist-mini, {jobs} at a time, into {out}/\n")
    run_grid(configs, jobs=jobs, stream=stream)
    summarise(out, configs, title="hebbref demo")
    table = rule_table(configs)
    minutes = (time.perf_counter() - start) / 60
    text = (f"Test accuracy (%) on fashion-mnist-mini after the last epoch "
            f"(batch {base.batch_size}, η = {base.lr}, hinge loss, seed {seed}):\n\n{table}\n\n"
            f"Plots and tables in {out}/: accuracy.png, alignment.png, results.md, results.csv "
            f"({minutes:.1f} minutes)")
    (Path(out) / "demo.md").write_text(text + "\n")
    return text
