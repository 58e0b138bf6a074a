# %% [markdown]
# # 9. The paper's networks, compared
#
# The earlier tutorials used small dense networks. Amit (2019) trained two
# convolutional networks (SPEC §6), which hebbref builds by name:
#
# - `simple`: one 5×5 convolution with 32 channels, max pooling, a dense layer of 500
#   units, and the output layer;
# - `deep`: three "sum blocks" of two convolutions each (16, 64 and 64 channels), with
#   pooling between them, then a dense layer of 500 units and the output layer.
#
# This tutorial trains both with `bp`, `frfb` and `urfb` through hebbref's comparison
# driver, `hebbref.experiments.compare.compare` (what `hebbref compare` runs), then
# reads what each run logged: the test accuracy after every epoch, and the two
# alignment probes of every weighted layer (`hebbref.experiments.probes`): the
# correlation of W and R, and the angle between the error the layer sends down through
# R and the one back-propagation would send through W.
#
# With `HEBBREF_FAST=1` the runs are tiny (a few hundred images, two epochs), so they
# show how to read the logs, not how the rules compare: the project's measurements on
# the full data, over several seeds, are in RESULTS.md. This tutorial states only what
# its own run shows.

# %%
import json
import os
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import hebbref
from hebbref.architectures import PRESETS
from hebbref.experiments.compare import collect, compare, grid_configs
from hebbref.experiments.probes import probe
from hebbref.experiments.train import TrainConfig
from hebbref.palette import rule_colour, rule_linestyle

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = Path(os.environ.get("HEBBREF_FIGURES", HERE / "figures"))
FIGURES.mkdir(parents=True, exist_ok=True)
FAST = os.environ.get("HEBBREF_FAST", "") not in ("", "0")  # a few hundred images, two epochs

# %% [markdown]
# ## The networks
#
# `hebbref.architectures.PRESETS` holds their descriptions in hebbref's text grammar
# (`conv5:32` is a 5×5 convolution with 32 channels, `pool3s2` max pooling over 3×3
# windows with stride 2, `drop0.8` dropout, `sum[a,b]` a sum block; tutorial 8 explains
# conv layers). On 28×28 grey images:

# %%
NETS, RULES = ("simple", "deep"), ("bp", "frfb", "urfb")
for name in NETS:
    print(f"{name}: {PRESETS[name]}")
    net = hebbref.build_network(name, input_shape=(1, 28, 28), n_classes=10, seed=0)
    print(net.summary(), "\n")

# %% [markdown]
# ## The data
#
# The embedded Fashion-MNIST subset, `fashion-mnist-mini` (no download). `compare`
# reads a data set by name or from an `.npz` file; to keep the runs small we save the
# first images of the training and test splits to an `.npz` in a temporary folder.

# %%
N_TRAIN, N_TEST, EPOCHS = (400, 300, 2) if FAST else (9000, 2000, 4)
x_train, y_train = hebbref.load_dataset("fashion-mnist-mini", "train")
x_test, y_test = hebbref.load_dataset("fashion-mnist-mini", "test")
work = Path(tempfile.mkdtemp(prefix="hebbref-tutorial-09-"))
data = work / "data.npz"
np.savez(data, x_train=x_train[:N_TRAIN], y_train=y_train[:N_TRAIN],
         x_test=x_test[:N_TEST], y_test=y_test[:N_TEST])
print(f"{N_TRAIN} training and {N_TEST} test images in {data}")

# %% [markdown]
# ## The comparison
#
# `TrainConfig` holds everything one run needs (its defaults follow SPEC §6); `compare`
# trains one run per point of the grid networks × rules (× seeds, losses, ...), each in
# its own folder under `OUT/runs/`, and writes `OUT/results.md`, `OUT/results.csv` and
# its own plots. Every run starts from the same seed, so for one network the three
# rules start from the same W (and `frfb` and `urfb` from the same R) and see the
# batches in the same order. We use batch 50, the paper's batch for its untied runs
# (its batch of 500 is more than the FAST run's training images). After each epoch a run
# logs its accuracies and, on a fixed probe batch of the first training images, the
# two alignment probes of every weighted layer.

# %%
base = TrainConfig(data=str(data), epochs=EPOCHS, batch_size=50, lr=0.1, seed=0,
                   probe_size=100, train_eval_size=N_TEST, quiet=True)
out = work / "compare"
summary = compare(base, out, nets=list(NETS), rules=list(RULES))
print(summary)

# %% [markdown]
# ## Reading the logs
#
# Each run's folder holds `log.jsonl`, one JSON record per epoch;
# `hebbref.experiments.compare.collect` reads them back for the grid's configurations.
# One record:

# %%
runs = {(config.net, config.rule): history for config, history in collect(grid_configs(base, out, NETS, RULES))}
record = runs["simple", "urfb"][-1]
print(json.dumps(record, indent=1)[:900])
for (net_name, rule), history in runs.items():
    assert [r["epoch"] for r in history] == list(range(1, EPOCHS + 1)), (net_name, rule)
    assert all(0.0 <= r["test_accuracy"] <= 1.0 and np.isfinite(r["train_loss"]) for r in history)
    for r in history:
        assert all(np.isfinite(p["corr_WR"]) and 0.0 <= p["angle_RW"] <= 180.0 for p in r["layers"].values())

# %% [markdown]
# The logs start after the first epoch. The starting point, epoch 0, is the same
# network before any step: built with the run's seed, its accuracy measured, and the
# probes taken on the same probe batch (`hebbref.experiments.probes.probe`). The three
# rules start from the same W, so from the same accuracy (checked):

# %%
start = {}
for net_name in NETS:
    for rule in RULES:
        net = hebbref.build_network(net_name, input_shape=(1, 28, 28), n_classes=10, rule=rule, seed=0,
                                    dtype=base.dtype)
        start[net_name, rule] = {"test_accuracy": net.accuracy(x_test[:N_TEST].astype(net.dtype), y_test[:N_TEST]),
                                 "layers": probe(net, x_train[:base.probe_size].astype(net.dtype),
                                                 y_train[:base.probe_size])}
    assert len({start[net_name, rule]["test_accuracy"] for rule in RULES}) == 1
    assert start[net_name, "frfb"]["layers"] == start[net_name, "urfb"]["layers"]  # same W, same R

curves = {key: np.array([start[key]["test_accuracy"]] + [r["test_accuracy"] for r in runs[key]]) for key in runs}
for (net_name, rule), curve in curves.items():
    print(f"{net_name:6s} {rule:5s} test accuracy, epochs 0-{EPOCHS}:", np.round(curve, 3))

# %% [markdown]
# ## The alignment probes
#
# `bp` never uses R (a network built for `bp` still draws one, so its probes are
# numbers about a matrix that does nothing); we read them for `frfb` and `urfb`. The
# top layer's probes compare its R and W directly. For the layers below, the error that
# reaches them has already passed through the R above, so a small angle there means
# this layer's R agrees with its W, on the errors it is given. The first layer's R is
# never used: the error it would send down reaches the image.

# %%
layer_names = {net_name: list(runs[net_name, "urfb"][-1]["layers"]) for net_name in NETS}
probes = {}  # (net, rule) -> {"corr_WR" or "angle_RW": (epochs + 1, layers)}
for net_name in NETS:
    for rule in ("frfb", "urfb"):
        records = [start[net_name, rule]] + runs[net_name, rule]
        probes[net_name, rule] = {key: np.array([[r["layers"][name][key] for name in layer_names[net_name]]
                                                 for r in records]) for key in ("corr_WR", "angle_RW")}
        assert probes[net_name, rule]["angle_RW"].shape == (EPOCHS + 1, len(layer_names[net_name]))
        print(f"{net_name:6s} {rule:5s} angle(Rᵀδ, Wᵀδ) per layer at epoch 0 and after epoch {EPOCHS}:")
        for name, a, b in zip(layer_names[net_name], *probes[net_name, rule]["angle_RW"][[0, -1]]):
            print(f"    {name:8s} {a:5.1f}° -> {b:5.1f}°")

# %% [markdown]
# What this run shows, computed from the logs (and nothing more: with one seed and so
# few steps, differences of a few points between rules can be noise):

# %%
for net_name in NETS:
    final = {rule: curves[net_name, rule][-1] for rule in RULES}
    order = sorted(RULES, key=lambda rule: -final[rule])
    print(f"{net_name}: after {EPOCHS} epochs on {N_TRAIN} images, test accuracy "
          + ", ".join(f"{rule} {final[rule]:.3f}" for rule in order)
          + f" (epoch 0: {curves[net_name, 'bp'][0]:.3f}; guessing: {1 / len(np.unique(y_test)):.3f})")
    top = layer_names[net_name][-1]
    for rule in ("frfb", "urfb"):
        angles = probes[net_name, rule]["angle_RW"][:, -1]
        print(f"    {rule}: the top layer {top} sends down at {angles[0]:.1f}° before training, "
              f"{angles[-1]:.1f}° after")

# %%
fig, axes = plt.subplots(2, 3, figsize=(15, 7))
epochs = np.arange(EPOCHS + 1)
for row, net_name in enumerate(NETS):
    for rule in RULES:
        axes[row, 0].plot(epochs, curves[net_name, rule], marker="o", color=rule_colour(rule),
                          ls=rule_linestyle(rule), label=rule)
    axes[row, 0].set_title(f"{net_name}: test accuracy ({N_TRAIN} images)")
    axes[row, 0].set_xlabel("epoch")
    axes[row, 0].set_xticks(epochs)
    axes[row, 0].legend(fontsize=8)
    positions = np.arange(len(layer_names[net_name]))
    for offset, rule in ((-0.2, "frfb"), (0.2, "urfb")):
        axes[row, 1].bar(positions + offset, probes[net_name, rule]["angle_RW"][-1], width=0.4,
                         color=rule_colour(rule), label=f"{rule}, after epoch {EPOCHS}")
        axes[row, 1].plot(positions + offset, probes[net_name, rule]["angle_RW"][0], "k_", markersize=12)
        for i in range(len(positions)):
            axes[row, 2].plot(epochs, probes[net_name, rule]["corr_WR"][:, i], color=rule_colour(rule),
                              ls=rule_linestyle(rule), lw=0.6 + 1.4 * i / max(1, len(positions) - 1))
    axes[row, 1].axhline(90, color="grey", ls=":", lw=0.8)
    axes[row, 1].set_xticks(positions, layer_names[net_name], rotation=45, fontsize=7)
    axes[row, 1].set_title(f"{net_name}: angle(Rᵀδ, Wᵀδ) per layer (—: epoch 0)")
    axes[row, 1].legend(fontsize=7)
    axes[row, 2].set_title(f"{net_name}: corr(W, R) per layer (thicker: higher)")
    axes[row, 2].set_xlabel("epoch")
    axes[row, 2].set_xticks(epochs)
fig.tight_layout()
fig.savefig(FIGURES / "09_papers_networks.png", dpi=100)
print("saved", FIGURES / "09_papers_networks.png")

# %% [markdown]
# For the full picture run the same comparison on the whole data set, with more epochs
# and several seeds; RESULTS.md lists the commands the project used and what they
# measured. `compare` resumes: run it again with the same folder and it continues the
# unfinished runs and skips the finished ones.
#
# ## Exercises
#
# **1. The lineage of the probes.** Nøkland (2016), "direct feedback alignment", sends
# the output error straight to every hidden layer through its own fixed random matrix,
# skipping the layers in between. In a network where every hidden layer gets its error
# directly from the output, which of the two probes above still makes sense for a
# hidden layer, and what would you compare instead? (Answer in words; no code.)
#
# **2. Read a run from its folder alone.** Without `collect`, read
# `OUT/runs/<name>/log.jsonl` for `simple` trained by `urfb` and return its test accuracy
# per epoch and the top layer's angle per epoch. Worked solution, checked against what
# `collect` returned:

# %%
def read_run(folder):
    """(test accuracy per epoch, top layer's angle per epoch) from a run's log.jsonl."""
    records = [json.loads(line) for line in (Path(folder) / "log.jsonl").read_text().splitlines() if line.strip()]
    top_name = list(records[0]["layers"])[-1]
    return ([r["test_accuracy"] for r in records], [r["layers"][top_name]["angle_RW"] for r in records])


folder = next(config.out for config in grid_configs(base, out, NETS, RULES)
              if config.net == "simple" and config.rule == "urfb")
accuracy_read, angle_read = read_run(folder)
assert accuracy_read == [r["test_accuracy"] for r in runs["simple", "urfb"]]
np.testing.assert_array_equal(angle_read, probes["simple", "urfb"]["angle_RW"][1:, -1])
print(f"read from {Path(folder).name}: test accuracy {np.round(accuracy_read, 3)}, top angle {np.round(angle_read, 1)}")

# %% [markdown]
# *Answer to exercise 1.* With direct feedback there is no "error sent down through R
# by the layer above", so the angle between $R^\top\delta$ and $W^\top\delta$ of one
# layer has no counterpart; what can still be measured is the angle between the update
# each hidden layer receives and the update back-propagation would give it, as
# tutorial 5 does for every layer of a deep network.

# %% [markdown]
# The comparison's folder was temporary; it is removed here (skip this cell to look at
# `results.md` and the runs' folders yourself).

# %%
print("removing", work)
shutil.rmtree(work)
