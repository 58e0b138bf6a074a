# %% [markdown]
# # 3. Updated random feedback: R learns with the same Hebbian increment as W
#
# The paper's method, `urfb` (SPEC §1, §3). The error still goes down through a
# separate feedback matrix R, but R is no longer fixed: it receives **the very same
# increment** as W.
#
# $$e_{l-1} = R_l^\top \delta_l, \qquad G_l = \sum_{\text{batch}} \delta_l\, x_{l-1}^\top, \qquad
# W_l \leftarrow W_l - \eta\, G_l, \qquad R_l \leftarrow R_l - \eta\, G_l$$
#
# $G_l$ is the product of the activities at the two ends of the synapse, the error unit
# above and the feed-forward unit below, so the R update is as local (Hebbian) as the W
# update. Three facts follow, and this tutorial checks each on a real training run:
#
# 1. $R_l(t) - W_l(t) = R_l(0) - W_l(0)$ for every layer at every step;
# 2. if R starts equal to W (the "symmetric" initialisation), `urfb` **is** back-prop;
# 3. from independent random starts, the correlation between W and R rises as W grows,
#    so the error sent down turns toward back-prop's faster than under `frfb`.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import hebbref
from hebbref.losses import hinge_loss
from hebbref.rules import feedback_matrix, feedback_update, forward_update

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = Path(os.environ.get("HEBBREF_FIGURES", HERE / "figures"))
FIGURES.mkdir(parents=True, exist_ok=True)
FAST = os.environ.get("HEBBREF_FAST", "") not in ("", "0")  # small data and few epochs

# %% [markdown]
# ## The two updates, by hand and by `hebbref.rules`
#
# `forward_update(W, G, η)` is $W \leftarrow W - \eta G$; `feedback_update(R, G, η, "urfb")`
# is $R \leftarrow R - \eta_R G$ with $\eta_R = \eta$. Both change their matrix by the same
# amount, so $R - W$ does not change.

# %%
rng = np.random.default_rng(0)
W, R, G = rng.normal(size=(3, 5, 4))  # three (5, 4) matrices
D = R - W
W_by_hand, R_by_hand = W - 0.1 * G, R - 0.1 * G
forward_update(W, G, eta=0.1)
feedback_update(R, G, eta=0.1, rule="urfb")
np.testing.assert_allclose(W, W_by_hand, rtol=1e-15)
np.testing.assert_allclose(R, R_by_hand, rtol=1e-15)
np.testing.assert_allclose(R - W, D, rtol=0, atol=1e-15)

# %% [markdown]
# ## Data
#
# `hebbref.load_dataset("fashion-mnist-mini", split)`: the class-balanced subset of
# Fashion-MNIST shipped inside hebbref (9,000 training and 2,000 test images, 28×28
# grey levels in [0, 1], ten classes; no download). `HEBBREF_FAST` uses the first N of each.

# %%
N_TRAIN, N_TEST, EPOCHS = (4000, 1000, 5) if FAST else (9000, 2000, 20)
x_train, y_train = hebbref.load_dataset("fashion-mnist-mini", "train")  # (9000, 1, 28, 28), (9000,)
x_test, y_test = hebbref.load_dataset("fashion-mnist-mini", "test")  # (2000, 1, 28, 28), (2000,)
x_train, y_train, x_test, y_test = x_train[:N_TRAIN], y_train[:N_TRAIN], x_test[:N_TEST], y_test[:N_TEST]
print(x_train.shape, x_test.shape)

# %% [markdown]
# ## A training run that records what each layer does
#
# Two hidden layers, `"dense100 ramp dense100 ramp out"`. Each step is written as its
# three passes (forward, backward, update; `Network.train_step` does the same in one
# call). Between backward and update we record, for each layer above the first, the
# angle between the error it sent down and the one back-prop would have sent,
# `layer.send_down(B)` against `layer.send_down(layer.W)`; after the update, the
# correlation of W and R and the drift of R − W.

# %%
NET, BATCH, ETA = "dense100 ramp dense100 ramp out", 50, 0.1


def angle_degrees(a, b):
    """The angle between two arrays seen as vectors: arccos(a·b / |a||b|), in degrees."""
    cosine = np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def correlation(W, R):
    """Pearson correlation of the entries of W and R."""
    return float(np.corrcoef(W.ravel(), R.ravel())[0, 1])


def train(rule, init="random", seed=0, keep_weights=False):
    net = hebbref.build_network(NET, input_shape=(1, 28, 28), n_classes=10, rule=rule, init=init,
                                seed=seed, backend="numpy")
    layers = net.parameters()
    D = [layer.R - layer.W for layer in layers]  # R(0) - W(0)
    record = {"angle": [], "correlation": [], "drift": [], "W": [], "accuracy": [net.accuracy(x_test, y_test)]}
    order = np.random.default_rng(seed)
    for epoch in range(EPOCHS):
        for batch in np.array_split(order.permutation(N_TRAIN), N_TRAIN // BATCH):
            o = net.forward(x_train[batch], train=True)
            _, e_L = hinge_loss(o, y_train[batch])
            net.backward(e_L)
            record["angle"].append([angle_degrees(layer.send_down(feedback_matrix(layer.W, layer.R, rule)),
                                                  layer.send_down(layer.W)) for layer in layers[1:]])
            net.update(ETA)
            record["correlation"].append([correlation(layer.W, layer.R) for layer in layers])
            record["drift"].append(max(np.abs(layer.R - layer.W - d).max() for layer, d in zip(layers, D)))
            if keep_weights:
                record["W"].append([layer.W.copy() for layer in layers])
        record["accuracy"].append(net.accuracy(x_test, y_test))
    return net, {key: np.array(value) if key != "W" else value for key, value in record.items()}


net_urfb, urfb = train("urfb")
net_frfb, frfb = train("frfb")
print("test accuracy per epoch, urfb:", np.round(urfb["accuracy"], 3))
print("test accuracy per epoch, frfb:", np.round(frfb["accuracy"], 3))

# %% [markdown]
# ## Fact 1: R − W is conserved
#
# Over the whole run the largest change of any entry of $R_l - W_l$, in any layer, is
# rounding error (float64), while W itself moved by much more:

# %%
print(f"largest |(R - W)(t) - (R - W)(0)| over {len(urfb['drift'])} steps: {urfb['drift'].max():.2e}")
assert urfb["drift"].max() < 1e-12
assert frfb["drift"].max() > 1e-2  # under frfb only W moves, so R - W changes

# %% [markdown]
# ## Fact 2: symmetric initialisation gives back-prop exactly
#
# With `init="symmetric"` R starts as a copy of W. Then $R - W = 0$ forever, the error
# goes down through $R = W$, and the trajectory is back-prop's. Two networks with one
# seed start from the same W and see the same batches, so we can compare every weight
# after every step: they are equal bit for bit.

# %%
_, bp_run = train("bp", seed=0, keep_weights=True)
_, symmetric_run = train("urfb", init="symmetric", seed=0, keep_weights=True)
for step, (W_bp, W_urfb) in enumerate(zip(bp_run["W"], symmetric_run["W"])):
    for a, b in zip(W_bp, W_urfb):
        np.testing.assert_array_equal(a, b, err_msg=f"step {step}")
np.testing.assert_array_equal(bp_run["accuracy"], symmetric_run["accuracy"])
print(f"urfb from R(0) = W(0) equals bp at all {len(bp_run['W'])} steps;",
      "test accuracy per epoch:", np.round(bp_run["accuracy"], 3))

# %% [markdown]
# ## Fact 3: the W–R correlation rises, and the feedback aligns faster
#
# Write $R = W + D$ with D fixed. As training makes W larger than its random start,
# W dominates R and their correlation grows toward 1. Under `frfb` R is fixed and only
# W can move toward it. The correlation at the start, and after training:

# %%
layer_names = [layer.name for layer in net_urfb.parameters()]
for rule, run in (("urfb", urfb), ("frfb", frfb)):
    print(rule, " ".join(f"{name}: {a:+.2f} -> {b:+.2f}" for name, a, b in
                         zip(layer_names, run["correlation"][0], run["correlation"][-1])))
assert np.all(urfb["correlation"][-1] > urfb["correlation"][0] + 0.05)
assert np.all(urfb["correlation"][-1] > frfb["correlation"][-1])

# %% [markdown]
# The angle between the error sent down and back-prop's, at the two layers above the
# first (mean of the last 20 steps):

# %%
for rule, run in (("urfb", urfb), ("frfb", frfb)):
    print(rule, " ".join(f"{name} sends down at {a:.1f}°" for name, a in
                         zip(layer_names[1:], run["angle"][-20:].mean(axis=0))))
assert np.all(urfb["angle"][-20:].mean(axis=0) < frfb["angle"][-20:].mean(axis=0))

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
steps = np.arange(1, len(urfb["drift"]) + 1)
for i, name in enumerate(layer_names):
    axes[0].plot(steps, urfb["correlation"][:, i], color=f"C{i}", label=f"urfb {name}")
    axes[0].plot(steps, frfb["correlation"][:, i], color=f"C{i}", ls="--", label=f"frfb {name}")
axes[0].set_title("correlation of W and R")
for i, name in enumerate(layer_names[1:]):
    axes[1].plot(steps, urfb["angle"][:, i], color=f"C{i + 1}", lw=0.8, label=f"urfb {name}")
    axes[1].plot(steps, frfb["angle"][:, i], color=f"C{i + 1}", lw=0.8, ls="--", label=f"frfb {name}")
axes[1].set_title("angle($B^T\\delta$, $W^T\\delta$), degrees")
for ax in axes[:2]:
    ax.set_xlabel("SGD step")
    ax.legend(fontsize=7)
epochs = np.arange(EPOCHS + 1)
axes[2].plot(epochs, bp_run["accuracy"], "o-", label="bp (= urfb, symmetric init)")
axes[2].plot(epochs, urfb["accuracy"], "s-", label="urfb")
axes[2].plot(epochs, frfb["accuracy"], "^-", label="frfb")
axes[2].set_xlabel("epoch")
axes[2].set_title("test accuracy")
axes[2].legend(fontsize=8)
fig.tight_layout()
fig.savefig(FIGURES / "03_urfb.png", dpi=100)
print("saved", FIGURES / "03_urfb.png")

# %% [markdown]
# The same Hebbian product that teaches W teaches R. Because R − W is fixed, R can only
# become *more* like W as W grows, and the error sent down becomes back-prop's error in
# the limit. Tutorial 7 makes this exact for linear networks: `urfb` has an extra
# dissipation term in the decay of the error.
