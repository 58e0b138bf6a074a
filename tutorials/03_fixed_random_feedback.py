# %% [markdown]
# # 3. Fixed random feedback: the feedback signal comes to align with back-prop's
#
# Tutorial 2 ended with the weight-transport problem: back-propagation sends the error
# down through $W^\top$. The simplest way out (Lillicrap et al. 2016, "feedback
# alignment") is to send it down through a *fixed random* matrix R of the same shape
# and never change R. In hebbref this is the rule `frfb` (SPEC §1, §3):
#
# $$e_{l-1} = R_l^\top \delta_l, \qquad W_l \leftarrow W_l - \eta\, G_l, \qquad R_l \leftarrow R_l \quad (\eta_R = 0)$$
#
# At the start $R^\top\delta$ and $W^\top\delta$ are unrelated. This tutorial measures the
# angle between the two over training, and shows that it shrinks: W learns to agree with R.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import hebbref
from hebbref.palette import rule_colour, rule_linestyle
from hebbref.rules import RULES, feedback_matrix, feedback_update

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = Path(os.environ.get("HEBBREF_FIGURES", HERE / "figures"))
FIGURES.mkdir(parents=True, exist_ok=True)
FAST = os.environ.get("HEBBREF_FAST", "") not in ("", "0")  # small data and few epochs

# %% [markdown]
# ## The rule
#
# `hebbref.rules` holds the three rules in one table. For `frfb` the feedback matrix is
# R and its rate is $\eta_R = 0$: `feedback_update` leaves R untouched, bit for bit.

# %%
print(RULES["frfb"])
rng = np.random.default_rng(0)
W, R, G = rng.normal(size=(3, 5, 4))  # three (5, 4) matrices
R_before = R.copy()
feedback_update(R, G, eta=0.1, rule="frfb")
np.testing.assert_array_equal(R, R_before)
assert feedback_matrix(W, R, "frfb") is R and feedback_matrix(W, R, "bp") is W

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
print(x_train.shape, x_test.shape, np.bincount(y_train))

# %% [markdown]
# ## The angle between the feedback signal and back-prop's
#
# A network with one hidden layer, `"dense100 ramp out"`. We write each SGD step as its
# three passes (what `Network.train_step` does in one call) so that between the backward
# pass and the update we can ask the top layer what it sent down and what back-prop
# would have sent for the same δ: `layer.send_down(layer.R)` is $R^\top\delta$ (what
# `frfb` used), `layer.send_down(layer.W)` is $W^\top\delta$ (the true gradient's error).
# Their angle, over the whole batch:
#
# $$\angle(R^\top\delta,\ W^\top\delta) = \arccos\frac{\langle R^\top\delta,\ W^\top\delta\rangle}{\|R^\top\delta\|\,\|W^\top\delta\|}$$

# %%
def angle_degrees(a, b):
    """The angle between two arrays seen as vectors: arccos(a·b / |a||b|), in degrees."""
    cosine = np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


BATCH, ETA = 50, 0.1


def train(rule, seed=0):
    """Train one network; record the top layer's feedback angle after each step, accuracy per epoch."""
    net = hebbref.build_network("dense100 ramp out", input_shape=(1, 28, 28), n_classes=10,
                                rule=rule, seed=seed, backend="numpy")
    top = net.parameters()[-1]
    R_start = top.R.copy()
    order = np.random.default_rng(seed)
    angles, weight_angles, accuracy = [], [], [net.accuracy(x_test, y_test)]
    for epoch in range(EPOCHS):
        for batch in np.array_split(order.permutation(N_TRAIN), N_TRAIN // BATCH):
            o = net.forward(x_train[batch], train=True)  # SPEC §2
            loss, e_L = hebbref.losses.hinge_loss(o, y_train[batch])  # SPEC §4
            net.backward(e_L)  # SPEC §3: δ, G and the error sent down, in every layer
            sent = top.send_down(feedback_matrix(top.W, top.R, rule))  # what this rule sent
            angles.append(angle_degrees(sent, top.send_down(top.W)))  # ... against back-prop's
            weight_angles.append(angle_degrees(top.R, top.W))
            net.update(ETA)  # W -= η G (and R -= η_R G)
        accuracy.append(net.accuracy(x_test, y_test))
    return net, R_start, np.array(angles), np.array(weight_angles), accuracy


net_frfb, R_start, angles, weight_angles, accuracy_frfb = train("frfb")
print(f"frfb: angle between Rᵀδ and Wᵀδ: first step {angles[0]:.1f}°, last step {angles[-1]:.1f}°")
print(f"frfb: angle between R and W as vectors: {weight_angles[0]:.1f}° -> {weight_angles[-1]:.1f}°")

# %% [markdown]
# The angle over the last 20 steps is well below the angle over the first 20 (this
# checks the tutorial's claim on every run). R never moved, so every change in the
# angle comes from W:

# %%
print(f"mean angle, first 20 steps {angles[:20].mean():.1f}°, last 20 steps {angles[-20:].mean():.1f}°")
assert angles[-20:].mean() < angles[:20].mean() - 10.0
assert angles[:20].mean() > 75.0  # near 90° at the start
top = net_frfb.parameters()[-1]
np.testing.assert_array_equal(top.R, R_start)
np.testing.assert_allclose(top.send_down(top.R), top.delta @ top.R, rtol=1e-12)  # Rᵀδ, by hand
np.testing.assert_allclose(top.send_down(top.W), top.delta @ top.W, rtol=1e-12)  # Wᵀδ, by hand

# %% [markdown]
# ## Why W aligns with R (a heuristic sketch, not a proof)
#
# Under `frfb` the hidden layer changes by $-\eta\,(R^\top\delta \odot \sigma')\,x_0^\top$, so the
# hidden activity $x_1$ moves along $-R^\top\delta$. The top layer's increment
# $\delta\, x_1^\top$ then picks up terms of the form $-\eta\,\delta\,\delta^\top R$: W
# accumulates a component along R, and $W^\top\delta$ turns toward $R^\top\delta$. The
# network learns to make its own forward weights useful for the feedback it is given.
# Lillicrap et al. (2016) named this *feedback alignment* and analysed it for linear
# networks; here it is only measured.
#
# ## Accuracy: frfb against back-prop
#
# The same network, the same seed (so the same starting W and the same batches), trained by `bp`.

# %%
net_bp, _, angles_bp, _, accuracy_bp = train("bp")
np.testing.assert_allclose(angles_bp, 0.0, atol=1e-5)  # bp sends Wᵀδ itself: zero up to rounding
print("test accuracy per epoch, bp:  ", np.round(accuracy_bp, 3))
print("test accuracy per epoch, frfb:", np.round(accuracy_frfb, 3))
print(f"last epoch: bp {accuracy_bp[-1]:.3f}, frfb {accuracy_frfb[-1]:.3f}, gap {accuracy_bp[-1] - accuracy_frfb[-1]:+.3f}")
assert abs(accuracy_bp[-1] - accuracy_frfb[-1]) < 0.05  # within 5 points of accuracy

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
left.plot(angles, lw=0.8, color=rule_colour("frfb"), label="$\\angle(R^T\\delta, W^T\\delta)$, the error sent down")
left.plot(weight_angles, lw=1.5, color="k", label="$\\angle(R, W)$, the top layer's matrices")
left.axhline(90, color="grey", ls=":", lw=0.8)
left.set_xlabel("SGD step")
left.set_ylabel("angle (degrees)")
left.set_title("frfb: the feedback aligns")
left.legend(fontsize=8)
epochs = np.arange(EPOCHS + 1)
right.plot(epochs, accuracy_bp, marker="o", color=rule_colour("bp"), ls=rule_linestyle("bp"), label="bp")
right.plot(epochs, accuracy_frfb, marker="s", color=rule_colour("frfb"), ls=rule_linestyle("frfb"), label="frfb")
right.set_xlabel("epoch")
right.set_ylabel("test accuracy")
right.set_title(f"{N_TRAIN} training images")
right.legend()
fig.tight_layout()
fig.savefig(FIGURES / "03_alignment.png", dpi=100)
print("saved", FIGURES / "03_alignment.png")

# %% [markdown]
# The angle starts near 90° (R and W are independent; printed above) and falls by more
# than 10° (checked): the error that `frfb` sends down comes to make an acute angle with
# back-prop's. In this network with one hidden layer, `frfb` ended within 5 points of
# back-prop's test accuracy (checked above). Tutorial 4 shows the paper's remedy, and
# tutorial 5 what happens further down a deep network, where every layer must align
# with the R above it.

# %% [markdown]
# ## Where this sits
#
# Feedback alignment (Lillicrap et al. 2016) is the rule above. Nøkland (2016) went
# further with *direct* feedback alignment: every hidden layer receives the output
# error through its own fixed random matrix, straight from the top. Liao et al. (2016)
# kept only the signs of W on the way down, $B = \mathrm{sign}(W)$ ("sign symmetry"),
# and Xiao et al. (2018) trained ImageNet networks that way with accuracy close to
# back-propagation's. Sign symmetry still needs the feedback synapses to know something
# of the forward ones (their signs); `frfb` needs nothing, and `urfb` (tutorial 4)
# gets its agreement from a local Hebbian update instead.
#
# ## Exercises
#
# **1. Sign symmetry.** For the trained `frfb` network's top layer and the last batch's
# δ, send the error down through $\mathrm{sign}(W)$ and measure its angle to $W^\top\delta$.
# Compare with the angle of $R^\top\delta$. Then compute the angle between W and sign(W)
# as vectors and explain the number: for entries uniform on $(-a, a)$ the cosine is
# $\mathbb E|w| / \sqrt{\mathbb E w^2} = (a/2)/(a/\sqrt3) = \sqrt3/2$, i.e. 30°.
#
# **2. R never moves.** Check that the `frfb` run's R is bit for bit the one it started
# with, while W moved (done above); then say why the angle between R and W as
# vectors can still change.
#
# Worked solution to 1 (run by the test suite with the rest of the tutorial):

# %%
sign_sent = top.send_down(np.sign(top.W))  # sign(W)ᵀ δ, the last batch's δ
angle_sign = angle_degrees(sign_sent, top.send_down(top.W))
angle_R = angle_degrees(top.send_down(top.R), top.send_down(top.W))
print(f"top layer, last batch: sign(W)ᵀδ at {angle_sign:.1f}° to Wᵀδ, Rᵀδ at {angle_R:.1f}°")
assert angle_sign < angle_R

fresh = hebbref.build_network("dense100 ramp out", input_shape=(1, 28, 28), n_classes=10, rule="frfb",
                              seed=0, backend="numpy").parameters()[-1].W  # Glorot uniform, not trained
print(f"untrained W and sign(W): {angle_degrees(fresh, np.sign(fresh)):.2f}° (30° expected for uniform entries)")
np.testing.assert_allclose(angle_degrees(fresh, np.sign(fresh)), 30.0, atol=1.0)

# %% [markdown]
# *Answer to 2.* The angle between R and W is a property of both matrices; R is fixed,
# but W is trained, so the angle changes with W alone.
