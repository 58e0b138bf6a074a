# %% [markdown]
# # 7. The Hebbian hinge cost: a last-layer update that is local
#
# With `urfb` every update inside the network is a product of two activities at the two
# ends of a synapse (tutorial 4). One signal is left: the error at the output,
# $e_L = \partial\,\mathrm{loss}/\partial o$. The usual choice, softmax cross-entropy,
# makes the error at output unit c depend on **every** output. Amit proposes a hinge
# cost in which each output unit's error depends only on its own output and on whether
# it is the labelled class (SPEC §4):
#
# $$\ell = \max(0, 1 - o_y) + \frac{\mu}{C-1}\sum_{c\ne y}\max(0, 1 + o_c)$$
#
# $$e_c = \frac{\partial \ell}{\partial o_c} = \begin{cases} -1 & c = y,\ o_y < 1\\
# +\mu/(C-1) & c \ne y,\ o_c > -1 \\ 0 & \text{otherwise}\end{cases}$$
#
# The last layer's update $\Delta W_{L,cj} = -\eta\, e_c\, x_{L-1,j}$ is then a product of
# the activity of output unit c (with its label) and of hidden unit j: a Hebbian update.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import hebbref
from hebbref.layers import dense_weight_increment
from hebbref.losses import hinge_loss, softmax_cross_entropy
from hebbref.palette import rule_colour

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = Path(os.environ.get("HEBBREF_FIGURES", HERE / "figures"))
FIGURES.mkdir(parents=True, exist_ok=True)
FAST = os.environ.get("HEBBREF_FAST", "") not in ("", "0")  # small data and few epochs

# %% [markdown]
# ## The hinge cost and its error, by hand
#
# One example, C = 10 outputs, label y = 3, μ = 1. `hebbref.losses.hinge_loss(o, y, mu)`
# returns the batch-mean loss and $e_L$ (with the factor 1/B; here B = 1).

# %%
C, mu = 10, 1.0
rng = np.random.default_rng(4)
o = rng.uniform(-1.6, 1.6, size=(1, C))  # (B=1, C)
y = np.array([3])

ell = max(0.0, 1 - o[0, 3]) + mu / (C - 1) * sum(max(0.0, 1 + o[0, c]) for c in range(C) if c != 3)
e_by_hand = np.array([[(-1.0 if o[0, c] < 1 else 0.0) if c == 3 else
                       (mu / (C - 1) if o[0, c] > -1 else 0.0) for c in range(C)]])
loss, e = hinge_loss(o, y, mu)
np.testing.assert_allclose(loss, ell, rtol=1e-14)
np.testing.assert_allclose(e, e_by_hand, rtol=1e-15)
print("o   =", o.round(2), "\ne_c =", e.round(3))

# %% [markdown]
# $e_L$ is the gradient of the loss: a central finite difference in each output agrees.

# %%
step = 1e-6
finite_difference = np.array([[(hinge_loss(o + step * np.eye(C)[c], y, mu)[0]
                                - hinge_loss(o - step * np.eye(C)[c], y, mu)[0]) / (2 * step)
                               for c in range(C)]])
np.testing.assert_allclose(finite_difference, e, atol=1e-8)

# %% [markdown]
# ## Local or not: change one output, watch another unit's error
#
# Softmax cross-entropy: $p_c = e^{o_c} / \sum_k e^{o_k}$, $\ell = -\log p_y$, and
#
# $$e_c = p_c - [c = y]$$
#
# The denominator $\sum_k e^{o_k}$ involves every output, so the error at unit c changes
# when any other output changes. For the hinge cost it does not. Below we replace one
# output $o_k$ by a new value and record $|\Delta e_c|$ for every unit c: the picture is
# the "who depends on whom" matrix of each cost.

# %%
def error_dependence(loss_fn, o, y):
    """|Δe_c| (row c) when o_k (column k) alone is moved by +1.5."""
    _, e = loss_fn(o, y, mu)
    change = np.zeros((C, C))
    for k in range(C):
        moved = o.copy()
        moved[0, k] += 1.5
        _, e_moved = loss_fn(moved, y, mu)
        change[:, k] = np.abs(e_moved - e)[0]
    return change


hinge_change = error_dependence(hinge_loss, o, y)
softmax_change = error_dependence(softmax_cross_entropy, o, y)
off_diagonal = ~np.eye(C, dtype=bool)
print("hinge:   largest change of e_c when another output o_k moves:", hinge_change[off_diagonal].max())
print("softmax: smallest change of e_c when another output o_k moves:", softmax_change[off_diagonal].min())
assert np.all(hinge_change[off_diagonal] == 0.0)  # unit c never sees another output
assert np.all(softmax_change[off_diagonal] > 0.0)  # unit c always does

# %% [markdown]
# Concretely: output unit 0, and we move output 7.

# %%
c, k = 0, 7
moved = o.copy()
moved[0, k] += 1.5
for name, loss_fn in (("hinge", hinge_loss), ("softmax", softmax_cross_entropy)):
    before, after = loss_fn(o, y, mu)[1][0, c], loss_fn(moved, y, mu)[1][0, c]
    print(f"{name:8s} e_{c} before {before:+.4f}, after moving o_{k}: {after:+.4f}")

# %% [markdown]
# ## The last-layer update is a product of two activities
#
# $G_{L,cj} = \sum_n e_{n,c}\, x_{L-1,n,j}$: with the hinge cost, unit c's factor
# $e_{n,c}$ is computed from $o_{n,c}$ and the label alone. `dense_weight_increment` is the
# same Hebbian product, by hand:

# %%
x_hidden = rng.uniform(-1, 1, size=(5, 6))  # (B=5, hidden 6): the activity below
o_batch = rng.uniform(-1.5, 1.5, size=(5, C))
y_batch = rng.integers(0, C, size=5)
_, e_batch = hinge_loss(o_batch, y_batch, mu)  # (5, C), includes 1/B
G_by_hand = np.zeros((C, 6))
for n in range(5):
    for c in range(C):
        for j in range(6):
            G_by_hand[c, j] += e_batch[n, c] * x_hidden[n, j]  # (error at c) × (activity at j)
np.testing.assert_allclose(dense_weight_increment(e_batch, x_hidden), G_by_hand, rtol=1e-13)

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
grid = np.linspace(-2.5, 2.5, 501)
axes[0].plot(grid, [hinge_loss(np.array([[g, 0.0]]), np.array([0]), 1.0)[1][0, 0] for g in grid],
             label="$e_y$ (label unit)")
axes[0].plot(grid, [hinge_loss(np.array([[0.0, g]]), np.array([0]), 1.0)[1][0, 1] for g in grid],
             label="$e_c$, $c \\neq y$ (μ/(C-1) = 1 here)")
axes[0].set_xlabel("own output $o_c$")
axes[0].set_title("hinge: error of a unit vs its own output")
axes[0].legend(fontsize=8, loc="upper left")
for ax, change, name in ((axes[1], hinge_change, "hinge"), (axes[2], softmax_change, "softmax")):
    image = ax.imshow(change, cmap="viridis")
    ax.set_xlabel("output moved, k")
    ax.set_ylabel("error unit c")
    ax.set_title(f"{name}: |Δ e_c| when o_k moves")
    fig.colorbar(image, ax=ax, fraction=0.046)
fig.tight_layout()
fig.savefig(FIGURES / "07_locality.png", dpi=100)
print("saved", FIGURES / "07_locality.png")

# %% [markdown]
# In the hinge matrix nothing off the diagonal is lit: each unit's error reacts to its
# own output only. Most of the diagonal is dark too: a unit's error is a step function
# of its own output, so moving $o_c$ by +1.5 changes $e_c$ only if the move crosses
# that unit's margin ($o_y$ crossing +1 for the label, $o_c$ crossing −1 for another
# class). The softmax matrix is full. Counted:

# %%
lit = np.flatnonzero(np.diag(hinge_change))
crossed = [c for c in range(C) if (o[0, c] < 1 <= o[0, c] + 1.5 if c == y[0] else o[0, c] <= -1 < o[0, c] + 1.5)]
print(f"hinge: {len(lit)} of {C} diagonal cells lit, units {lit.tolist()}; units whose move crossed the margin: {crossed}")
assert lit.tolist() == crossed and len(lit) < C / 2  # most of the diagonal is dark
print(f"softmax: {np.count_nonzero(softmax_change)} of {C * C} cells lit")
assert np.count_nonzero(softmax_change) == C * C

# %% [markdown]
# ## The two costs compared in training
#
# The same network and seed trained by `urfb` and by `bp`, once with each cost
# (`Network.train_step(x, y, lr, loss=...)`).
#
# The images: `hebbref.load_dataset("fashion-mnist-mini", split)`, the class-balanced
# subset of Fashion-MNIST shipped inside hebbref (9,000 training and 2,000 test images,
# 28×28 grey levels in [0, 1], ten classes; no download). `HEBBREF_FAST` uses the first N of each.

# %%
N_TRAIN, N_TEST, EPOCHS = (4000, 1000, 4) if FAST else (9000, 2000, 20)
x_train, y_train = hebbref.load_dataset("fashion-mnist-mini", "train")  # (9000, 1, 28, 28), (9000,)
x_test, y_test = hebbref.load_dataset("fashion-mnist-mini", "test")  # (2000, 1, 28, 28), (2000,)
assert x_train.shape == (9000, 1, 28, 28) and x_test.shape == (2000, 1, 28, 28)  # as stated above
assert 0 <= x_train.min() and x_train.max() <= 1 and np.array_equal(np.unique(y_train), np.arange(10))
x_train, y_train, x_test, y_test = x_train[:N_TRAIN], y_train[:N_TRAIN], x_test[:N_TEST], y_test[:N_TEST]
NET, BATCH, ETA = "dense100 ramp out", 50, 0.1


def train(rule, loss, seed=0):
    net = hebbref.build_network(NET, input_shape=(1, 28, 28), n_classes=10, rule=rule, seed=seed,
                                backend="numpy")
    order = np.random.default_rng(seed)
    accuracy = [net.accuracy(x_test, y_test)]
    for epoch in range(EPOCHS):
        for batch in np.array_split(order.permutation(N_TRAIN), N_TRAIN // BATCH):
            net.train_step(x_train[batch], y_train[batch], lr=ETA, loss=loss)
        accuracy.append(net.accuracy(x_test, y_test))
    return np.array(accuracy)


runs = {(rule, loss): train(rule, loss) for rule in ("urfb", "bp") for loss in ("hinge", "softmax")}
for (rule, loss), accuracy in runs.items():
    print(f"{rule:5s} {loss:8s} test accuracy per epoch:", np.round(accuracy, 3))
assert all(accuracy[-1] > 0.5 for accuracy in runs.values())  # every combination learns

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.6))
for (rule, loss), accuracy in runs.items():
    ax.plot(accuracy, marker="o" if loss == "hinge" else "s", ls="-" if loss == "hinge" else "--",
            color=rule_colour(rule), label=f"{rule}, {loss}")  # colour: the rule; line: the cost
ax.set_xlabel("epoch")
ax.set_ylabel("test accuracy")
ax.set_title(f"{NET}, {N_TRAIN} training images")
ax.legend()
fig.tight_layout()
fig.savefig(FIGURES / "07_hinge_vs_softmax.png", dpi=100)
print("saved", FIGURES / "07_hinge_vs_softmax.png")

# %% [markdown]
# The paper reports that the local cost performs like the usual one (claim 5, SPEC §7);
# the accuracies printed above show how close the two come in this run (run without
# `HEBBREF_FAST` for longer training). With `urfb` and the hinge cost, every update in
# the network, W and R, in every layer, is a local product of two activities.

# %% [markdown]
# ## Exercise
#
# Softmax's output errors always sum to zero over the classes, $\sum_c (p_c - [c = y]) = 0$.
# What do the hinge cost's errors of one example sum to, as a function of μ, when every
# output is on the wrong side of its margin ($o_y < 1$ and $o_c > -1$ for $c \ne y$)?
# For which μ do they sum to zero, and what does that mean for the total change of the
# output units' weights?
#
# Worked solution (run by the test suite with the rest of the tutorial): with B = 1,
# $e_y = -1$ and each of the C − 1 others is $\mu/(C-1)$, so the sum is $\mu - 1$; it is
# zero for μ = 1, the paper's setting, and then $\sum_c G_{L,cj} = 0$ for every hidden
# unit j: the increments of the output units' weights from any one hidden unit add up to zero.

# %%
o_wrong = np.zeros((1, C))  # every margin violated: o_y = 0 < 1, o_c = 0 > -1
for mu_try in (0.5, 1.0, 2.0):
    _, e_try = hinge_loss(o_wrong, y, mu_try)
    np.testing.assert_allclose(e_try.sum(), mu_try - 1.0, atol=1e-15)
    print(f"μ = {mu_try}: errors sum to {e_try.sum():+.3f}")
_, e_softmax = softmax_cross_entropy(o, y, mu)
np.testing.assert_allclose(e_softmax.sum(), 0.0, atol=1e-15)
_, e_wrong = hinge_loss(o_wrong, y, 1.0)
np.testing.assert_allclose(dense_weight_increment(e_wrong, x_hidden[:1]).sum(axis=0), 0.0, atol=1e-15)
