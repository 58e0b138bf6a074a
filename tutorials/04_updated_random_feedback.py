# %% [markdown]
# # 4. Updated random feedback: R learns with the same Hebbian increment as W
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
# 3. from independent random starts, $R = W + D$ with D fixed, so R and W can only
#    point the same way when W is large compared with D; nothing forces that, but in
#    the run below the cosine of W and R rises, and the error sent down turns toward
#    back-prop's faster than under `frfb` (measured, not proved).

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import hebbref
from hebbref.losses import hinge_loss
from hebbref.palette import rule_colour, rule_linestyle
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
assert x_train.shape == (9000, 1, 28, 28) and x_test.shape == (2000, 1, 28, 28)  # as stated above
assert 0 <= x_train.min() and x_train.max() <= 1 and np.array_equal(np.unique(y_train), np.arange(10))
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
# cosine of W and R (the two matrices seen as vectors), the sizes $\|W\|$ and
# $\|D\| = \|R(0) - W(0)\|$, and the drift of R − W.
#
# The first layer's R is left out of these records: the error it would send down goes
# to the input image, which has no weights to teach, so that R is never used. (Under
# `urfb` it is still updated, with the same increment as the first layer's W.)

# %%
NET, BATCH, ETA = "dense100 ramp dense100 ramp out", 50, 0.1


def angle_degrees(a, b):
    """The angle between two arrays seen as vectors: arccos(a·b / |a||b|), in degrees."""
    cosine = np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def cosine(W, R):
    """cos∠(W, R) = ⟨W, R⟩ / (‖W‖ ‖R‖), the matrices seen as vectors."""
    return float(np.dot(W.ravel(), R.ravel()) / (np.linalg.norm(W) * np.linalg.norm(R)))


def train(rule, init="random", seed=0, keep_weights=False):
    net = hebbref.build_network(NET, input_shape=(1, 28, 28), n_classes=10, rule=rule, init=init,
                                seed=seed, backend="numpy")
    layers = net.parameters()
    D = [layer.R - layer.W for layer in layers]  # R(0) - W(0)
    used = layers[1:]  # the layers whose R sends an error to a layer with weights
    record = {"angle": [], "cosine": [[cosine(layer.W, layer.R) for layer in used]],
              "norm_W": [[np.linalg.norm(layer.W) for layer in used]], "drift": [], "W": [],
              "accuracy": [net.accuracy(x_test, y_test)]}
    order = np.random.default_rng(seed)
    for epoch in range(EPOCHS):
        for batch in np.array_split(order.permutation(N_TRAIN), N_TRAIN // BATCH):
            o = net.forward(x_train[batch], train=True)
            _, e_L = hinge_loss(o, y_train[batch])
            net.backward(e_L)
            record["angle"].append([angle_degrees(layer.send_down(feedback_matrix(layer.W, layer.R, rule)),
                                                  layer.send_down(layer.W)) for layer in used])
            net.update(ETA)
            record["cosine"].append([cosine(layer.W, layer.R) for layer in used])
            record["norm_W"].append([np.linalg.norm(layer.W) for layer in used])
            record["drift"].append(max(np.abs(layer.R - layer.W - d).max() for layer, d in zip(layers, D)))
            if keep_weights:
                record["W"].append([layer.W.copy() for layer in layers])
        record["accuracy"].append(net.accuracy(x_test, y_test))
    record["norm_D"] = [np.linalg.norm(d) for d in D[1:]]
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
# ## Fact 3: what a fixed R − W does, and does not, imply
#
# Write $R = W + D$ with $D = R(0) - W(0)$ fixed (fact 1). R lies within distance
# $\|D\|$ of W, so once $\|W\| > \|D\|$ plain geometry bounds the angle between them
# (a ball of radius $\|D\|$ around W is seen from the origin under the half-angle
# $\arcsin(\|D\|/\|W\|)$):
#
# $$\cos\angle(W, R) \;\ge\; \sqrt{1 - \|D\|^2/\|W\|^2} \qquad\text{whenever } \|W\| > \|D\|.$$
#
# So W and R must come to point the same way *if* W grows large compared with D.
# Nothing in the rule makes W grow that much, nor in a helpful direction: W can move
# *against* D. Two numbers show it: with $D$ a unit vector $\hat D$, $W = 0.1\,\hat D$
# gives $R = 1.1\,\hat D$ (cosine +1), and $W = -0.5\,\hat D$ gives $R = 0.5\,\hat D$
# (cosine −1).

# %%
D_hat = np.array([1.0, 0.0])
for w, expected in ((0.1, 1.0), (-0.5, -1.0)):
    W_small = w * D_hat
    R_small = W_small + D_hat
    print(f"W = {w:+.1f} D̂, R = W + D̂ = {w + 1:+.1f} D̂: cos∠(W, R) = {cosine(W_small, R_small):+.1f}")
    np.testing.assert_allclose(cosine(W_small, R_small), expected, rtol=1e-15)

# the bound, checked on 1000 random pairs with ‖W‖ > ‖D‖ (the worst case is D ⟂ R)
for trial in range(1000):
    W_random, D_random = rng.normal(size=(2, 30))
    D_random *= rng.uniform(0.0, 0.99) * np.linalg.norm(W_random) / np.linalg.norm(D_random)
    ratio = np.linalg.norm(W_random) / np.linalg.norm(D_random)
    assert cosine(W_random, W_random + D_random) >= np.sqrt(1 - 1 / ratio**2) - 1e-12

# %% [markdown]
# What the training run did, for the two layers whose R is used: the cosine of W and R
# at the start and at the end, and the size of W compared with D. Under `frfb` R is
# fixed and only W can move toward it.

# %%
layer_names = [layer.name for layer in net_urfb.parameters()[1:]]
for rule, run in (("urfb", urfb), ("frfb", frfb)):
    print(rule, " ".join(f"{name}: cos {a:+.2f} -> {b:+.2f}, ‖W‖/‖D‖ {w / d:.2f} -> {w_end / d:.2f};"
                         for name, a, b, w, w_end, d in zip(layer_names, run["cosine"][0], run["cosine"][-1],
                                                           run["norm_W"][0], run["norm_W"][-1], run["norm_D"])))
ratio = urfb["norm_W"] / urfb["norm_D"]  # (steps + 1, layers)
applies = ratio > 1
bound = np.sqrt(1 - 1 / np.where(applies, ratio, 1.0) ** 2)
assert np.all(urfb["cosine"][applies] >= bound[applies] - 1e-12)
print(f"urfb: ‖W‖ > ‖D‖, where the bound applies, at {applies.sum()} of {applies.size} (step, layer) records")
if FAST:
    assert applies.sum() == 0  # what the text below says of the FAST run
assert np.all(urfb["cosine"][-1] > urfb["cosine"][0] + 0.05)  # the cosine rose in both layers ...
assert np.all(urfb["cosine"][-1] > frfb["cosine"][-1])  # ... and ended above frfb's
if FAST:
    assert np.all(urfb["cosine"][-1] < 0.9)  # ... but far from 1: W and R are still far apart

# %% [markdown]
# In the `HEBBREF_FAST` run ‖W‖ stays below ‖D‖ throughout (the count printed above
# is 0), so the bound says nothing there: the rise of the cosine is measured, not
# forced by geometry. There the cosine ends well below 1 (checked: below 0.9).

# %% [markdown]
# The angle between the error sent down and back-prop's, at the same two layers (mean
# of the last 20 steps):

# %%
for rule, run in (("urfb", urfb), ("frfb", frfb)):
    print(rule, " ".join(f"{name} sends down at {a:.1f}°" for name, a in
                         zip(layer_names, run["angle"][-20:].mean(axis=0))))
assert np.all(urfb["angle"][-20:].mean(axis=0) < frfb["angle"][-20:].mean(axis=0))

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
steps = np.arange(len(urfb["cosine"]))
for rule, run in (("urfb", urfb), ("frfb", frfb)):
    for i, name in enumerate(layer_names):
        width = 0.9 + 1.2 * i  # the upper layer drawn thicker
        axes[0].plot(steps, run["cosine"][:, i], color=rule_colour(rule), ls=rule_linestyle(rule), lw=width,
                     label=f"{rule} {name}")
        axes[1].plot(steps[1:], run["angle"][:, i], color=rule_colour(rule), ls=rule_linestyle(rule),
                     lw=0.5 * width, label=f"{rule} {name}")
axes[0].set_title("cos∠(W, R)")
axes[1].set_title("angle($B^T\\delta$, $W^T\\delta$), degrees")
for ax in axes[:2]:
    ax.set_xlabel("SGD step")
    ax.legend(fontsize=7)
epochs = np.arange(EPOCHS + 1)
axes[2].plot(epochs, bp_run["accuracy"], marker="o", color=rule_colour("bp"), ls=rule_linestyle("bp"),
             label="bp (= urfb, symmetric init)")
for rule, run, marker in (("urfb", urfb, "s"), ("frfb", frfb, "^")):
    axes[2].plot(epochs, run["accuracy"], marker=marker, color=rule_colour(rule), ls=rule_linestyle(rule), label=rule)
axes[2].set_xlabel("epoch")
axes[2].set_title("test accuracy")
axes[2].legend(fontsize=8)
fig.tight_layout()
fig.savefig(FIGURES / "04_urfb.png", dpi=100)
print("saved", FIGURES / "04_urfb.png")

# %% [markdown]
# The same Hebbian product that teaches W teaches R, so the difference R − W never
# changes. That alone does not make the feedback become back-prop's: R and W are
# forced together only if W grows large compared with the fixed D, and W can move
# against D. In this run the cosine of W and R rose (staying below 0.9 in the
# `HEBBREF_FAST` run), and the error each layer sent down was closer to back-prop's
# than under `frfb` (both printed and checked above); the accuracies printed above show
# where each rule got to. Tutorial 6 (the linear theory) studies, for linear networks,
# how the update of R changes the decay of the error.

# %% [markdown]
# ## Where this sits
#
# Giving the feedback weights the same increment as the forward ones goes back to
# Zipser & Rumelhart (1990). Kolen & Pollack (1994) gave both the same weight decay as
# well, $W \leftarrow W - \eta(G + \lambda W)$ and $R \leftarrow R - \eta(G + \lambda R)$,
# so that $R - W$ shrinks by the factor $(1 - \eta\lambda)$ every step and the two
# converge (tutorial 1's exercise checks it); Akrout et al. (2019) trained ImageNet
# networks with this rule and with "weight mirrors" and came close to back-propagation.
# `urfb` is the case λ = 0: R − W neither grows nor shrinks (fact 1).
#
# ## Exercise
#
# Under `urfb`, write the error a layer sends down as back-prop's error plus a
# correction: $R^\top\delta = W^\top\delta + D^\top\delta$ with $D = R(0) - W(0)$. Check it
# on a small network after a few training steps, and say what happens to the correction
# when δ shrinks as the network learns.
#
# Worked solution (run by the test suite with the rest of the tutorial):

# %%
small = hebbref.build_network("dense30 ramp out", input_shape=(1, 28, 28), n_classes=10, rule="urfb",
                              seed=3, backend="numpy")
top_small = small.parameters()[-1]
D_top = top_small.R - top_small.W  # R(0) - W(0)
for step in range(20):
    small.train_step(x_train[50 * step:50 * (step + 1)], y_train[50 * step:50 * (step + 1)], lr=ETA)
_, e_L = hinge_loss(small.forward(x_train[:50], train=True), y_train[:50])
small.backward(e_L)
np.testing.assert_allclose(top_small.send_down(top_small.R),
                           top_small.send_down(top_small.W) + top_small.delta @ D_top, rtol=1e-10, atol=1e-14)
print("Rᵀδ = Wᵀδ + Dᵀδ after 20 steps of urfb")

# %% [markdown]
# *Answer.* The correction $D^\top\delta$ is linear in δ: it shrinks with δ, but so does
# back-prop's part $W^\top\delta$, so the *angle* between $R^\top\delta$ and $W^\top\delta$
# does not improve just because δ gets small; it improves only as $W^\top\delta$ comes to
# dominate $D^\top\delta$ (fact 3 above).
