# %% [markdown]
# # 1. The three rules from scratch
#
# A network learns by sending its output error back down, layer by layer, and changing
# each weight by (error above) × (activity below). Back-propagation (`bp`) sends the
# error down through the **same** weights W that carried the signal up. A brain would
# need each synapse to be used in both directions, or a second set of synapses that
# somehow knows the first one's strengths. Amit (2019) gives every layer a second,
# separate set of *feedback* synapses R, of W's shape, and sends the error down through
# R instead. Two ways to treat R:
#
# - `frfb`, fixed random feedback: R is random and never changes (Lillicrap et al.
#   2016, "feedback alignment");
# - `urfb`, updated random feedback, the paper's method: R starts random and receives
#   **the same increment as W**. Giving the feedback weights the forward weights'
#   increment goes back to Zipser & Rumelhart (1990); Kolen & Pollack (1994) added
#   weight decay to both, which makes R and W converge to each other (the exercise at
#   the end does it).
#
# This tutorial writes all three in about 30 lines of NumPy on a 2-D problem you can
# look at, then trains the same networks with hebbref and checks that the two give the
# same numbers, step for step. Later tutorials take each piece apart.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Circle, FancyArrowPatch

import hebbref
from hebbref.palette import rule_colour, rule_linestyle

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = Path(os.environ.get("HEBBREF_FIGURES", HERE / "figures"))
FIGURES.mkdir(parents=True, exist_ok=True)
FAST = os.environ.get("HEBBREF_FAST", "") not in ("", "0")  # fewer training steps
RULES = ("bp", "frfb", "urfb")

# %% [markdown]
# ## The picture: two pathways
#
# Activity goes **up** through the forward weights W. The error goes **down** through
# the feedback weights B of each layer: $B = W$ for `bp` (the same synapses, used
# backwards), $B = R$ for `frfb` and `urfb` (other synapses). In a network with one
# hidden layer only the top layer's feedback is ever used: the error the first layer
# would send down reaches the input, which has nothing to learn.

# %%
def draw_pathways(ax):
    """Units as circles; forward arrows (W, up) on the left of each link, feedback (R, down) on the right."""
    layers = {"input x": (2, 0.0), "hidden x₁ = σ(W₁ x)": (5, 1.0), "output o = W₂ x₁": (2, 2.0)}
    positions = []
    for name, (n, level) in layers.items():
        xs = np.linspace(-1.5, 1.5, n) if n > 2 else np.array([-0.6, 0.6])
        positions.append([(x, level) for x in xs])
        for x in xs:
            ax.add_patch(Circle((x, level), 0.13, facecolor="white", edgecolor="k", zorder=3))
        ax.text(2.0, level, name, va="center", fontsize=9)
    for (below, above), label in zip(zip(positions[:-1], positions[1:]), ("1", "2")):
        for xb, yb in below:
            for xa, ya in above:
                ax.add_patch(FancyArrowPatch((xb - 0.04, yb + 0.13), (xa - 0.04, ya - 0.13), arrowstyle="-|>",
                                             mutation_scale=7, color="0.35", lw=0.6))
                if label == "2":  # only the top layer's feedback is used
                    ax.add_patch(FancyArrowPatch((xa + 0.04, ya - 0.13), (xb + 0.04, yb + 0.13), arrowstyle="-|>",
                                                 mutation_scale=7, color=rule_colour("urfb"), lw=0.6, ls="--"))
    ax.text(-2.6, 0.5, "W₁ (up)", color="0.35", fontsize=9, va="center")
    ax.text(-2.6, 1.55, "W₂ (up)", color="0.35", fontsize=9, va="center")
    ax.text(-2.6, 1.35, "R₂ (down)", color=rule_colour("urfb"), fontsize=9, va="center")
    ax.set_xlim(-2.8, 4.2)
    ax.set_ylim(-0.4, 2.4)
    ax.set_aspect("equal")
    ax.axis("off")


fig, ax = plt.subplots(figsize=(7, 3.2))
draw_pathways(ax)
ax.set_title("forward pathway W carries activity up; feedback pathway R carries the error down", fontsize=9)
fig.tight_layout()
fig.savefig(FIGURES / "01_pathways.png", dpi=100)
print("saved", FIGURES / "01_pathways.png")

# %% [markdown]
# ## A problem you can see
#
# Two interleaved half-moons in the plane, 200 points for training and 200 for testing.
# hebbref's layers have no biases (SPEC §2), and the ramp is an odd function, so every
# such network satisfies $o(-x) = -o(x)$: it can only separate classes that are mirror
# images of each other through the origin. The two moons, centred, are exactly that
# (moon 1 is moon 0 turned by 180°), so no bias is needed.

# %%
def moons(n, rng, noise=0.1, scale=4.0):
    """n points (n, 2) and labels (n,): label 0 on the upper arc, label 1 its mirror image through 0."""
    t = rng.uniform(0, np.pi, n)
    label = rng.integers(0, 2, n)
    side = np.where(label == 0, 1.0, -1.0)[:, None]
    points = side * np.stack([np.cos(t) - 0.5, np.sin(t) - 0.25], axis=1)
    return scale * (points + noise * rng.normal(size=points.shape)), label


rng = np.random.default_rng(0)
x_train, y_train = moons(200, rng)  # (200, 2), (200,)
x_test, y_test = moons(200, rng)
print(x_train.shape, np.bincount(y_train))
assert x_train.shape == x_test.shape == (200, 2)

# %% [markdown]
# ## The three rules, from scratch
#
# A network with one hidden layer of 20 units: $h_1 = W_1 x$, $x_1 = \sigma(h_1)$ with the
# saturated ramp $\sigma(h) = \mathrm{clip}(h/2, -1, 1)$, and two linear outputs
# $o = W_2 x_1$. The cost is the hinge cost of SPEC §4 (tutorial 7 explains it); its
# error $e = \partial\,\mathrm{loss}/\partial o$ is −1 at the label while $o_y < 1$,
# $+1/(C-1)$ at another class while $o_c > -1$, and 0 otherwise, divided by the batch
# size. One step, on the whole training set at once:
#
# $$G_2 = e^\top x_1, \qquad \delta_1 = (e\,B_2) \odot \sigma'(h_1), \qquad G_1 = \delta_1^\top x,
# \qquad W_l \leftarrow W_l - \eta\,G_l, \qquad R_2 \leftarrow R_2 - \eta\,G_2 \text{ (urfb only)}$$
#
# (one example per row, so $B^\top\delta$ is written `e @ B`). That is the whole method:

# %%
def ramp(h):
    return np.clip(0.5 * h, -1.0, 1.0)


def ramp_slope(h):
    return np.where(np.abs(0.5 * h) <= 1.0, 0.5, 0.0)


def hinge(o, y):
    """Mean hinge loss (μ = 1) and its error e = ∂loss/∂o, (B, C)."""
    C, target = o.shape[1], np.eye(o.shape[1])[y] == 1
    loss = np.where(target, np.maximum(0, 1 - o), np.maximum(0, 1 + o) / (C - 1)).sum(axis=1).mean()
    return loss, np.where(target, -1.0 * (o < 1), (o > -1) / (C - 1)) / len(y)


def train_from_scratch(rule, W1, W2, R2, x, y, lr, steps):
    """Full-batch training by bp, frfb or urfb; returns the final weights and the loss before each step."""
    W1, W2, R2, losses = W1.copy(), W2.copy(), R2.copy(), []
    for _ in range(steps):
        h1 = x @ W1.T  # forward: activity goes up through W
        x1 = ramp(h1)
        o = x1 @ W2.T
        loss, e = hinge(o, y)
        B2 = W2 if rule == "bp" else R2  # the only line where the rules differ ...
        delta1 = (e @ B2) * ramp_slope(h1)  # ... the error goes down through B2
        G2, G1 = e.T @ x1, delta1.T @ x  # Hebbian increments: error above × activity below
        W1, W2 = W1 - lr * G1, W2 - lr * G2
        if rule == "urfb":
            R2 = R2 - lr * G2  # ... and R2 gets W2's increment
        losses.append(loss)
    return W1, W2, R2, np.array(losses)


# %% [markdown]
# The starting weights: hebbref's, so that the comparison below starts from the same
# point. They are Glorot uniform (SPEC §3), W and R drawn independently:
# $W \sim U(-a, a)$ with $a = \sqrt{6/(\text{fan-in} + \text{fan-out})}$.

# %%
NET, HIDDEN, LR, STEPS = "dense20 ramp out", 20, 0.3, 800 if FAST else 2000
start = hebbref.build_network(NET, input_shape=(2,), n_classes=2, rule="urfb", seed=0, backend="numpy")
first, top = start.parameters()
W1_0, W2_0, R2_0 = first.W.copy(), top.W.copy(), top.R.copy()  # (20, 2), (2, 20), (2, 20)
assert np.abs(W1_0).max() <= np.sqrt(6 / (2 + HIDDEN)) and np.abs(R2_0).max() <= np.sqrt(6 / (HIDDEN + 2))
np.testing.assert_allclose(start.forward(-x_train), -start.forward(x_train), rtol=1e-15)  # o(-x) = -o(x)

scratch = {rule: train_from_scratch(rule, W1_0, W2_0, R2_0, x_train, y_train, LR, STEPS) for rule in RULES}


def accuracy(W1, W2, x, y):
    return float(np.mean((ramp(x @ W1.T) @ W2.T).argmax(axis=1) == y))


for rule, (W1, W2, R2, losses) in scratch.items():
    print(f"{rule:5s} loss {losses[0]:.3f} -> {losses[-1]:.4f}   test accuracy {accuracy(W1, W2, x_test, y_test):.3f}")

# %% [markdown]
# ## The same with hebbref
#
# `hebbref.build_network(NET, input_shape=(2,), n_classes=2, rule=...)` builds the same
# network; `Network.train_step(x, y, lr)` is one step (forward, hinge error, backward
# through W or R, update). Built with the same seed, each starts from the weights used
# above. Every step's loss and the final weights agree with the from-scratch code to
# rounding error:

# %%
library = {}
for rule in RULES:
    net = hebbref.build_network(NET, input_shape=(2,), n_classes=2, rule=rule, seed=0, backend="numpy")
    np.testing.assert_array_equal(net.parameters()[0].W, W1_0)  # same seed, same start
    np.testing.assert_array_equal(net.parameters()[1].R, R2_0)
    losses = np.array([net.train_step(x_train, y_train, lr=LR, loss="hinge") for _ in range(STEPS)])
    library[rule] = net, losses
    W1, W2, R2, scratch_losses = scratch[rule]
    np.testing.assert_allclose(losses, scratch_losses, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(net.parameters()[0].W, W1, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(net.parameters()[1].W, W2, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(net.parameters()[1].R, R2, rtol=1e-10, atol=1e-13)
    largest = max(np.abs(net.parameters()[0].W - W1).max(), np.abs(net.parameters()[1].W - W2).max())
    print(f"{rule:5s} {STEPS} steps: hebbref and the 30 lines agree; largest weight difference {largest:.1e}")
    assert net.accuracy(x_test, y_test) > 0.9  # every rule learns the moons

np.testing.assert_array_equal(library["frfb"][0].parameters()[1].R, R2_0)  # frfb's R never moved
assert not np.array_equal(library["urfb"][0].parameters()[1].R, R2_0)  # urfb's did

# %% [markdown]
# All three rules learn this problem (test accuracy above 90%, checked). The loss
# curves and the decision boundaries, coloured by the class each network picks:

# %%
fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
for rule in RULES:
    axes[0].semilogy(library[rule][1], color=rule_colour(rule), ls=rule_linestyle(rule), label=rule)
axes[0].set_xlabel("step (whole training set)")
axes[0].set_ylabel("training loss")
axes[0].legend()
grid = np.stack(np.meshgrid(np.linspace(-8, 8, 201), np.linspace(-6, 6, 151)), axis=-1)  # (151, 201, 2)
for ax, rule in zip(axes[1:], RULES):
    net = library[rule][0]
    choice = net.predict(grid.reshape(-1, 2)).reshape(grid.shape[:2])
    ax.contourf(grid[..., 0], grid[..., 1], choice, levels=[-0.5, 0.5, 1.5], colors=["#dddddd", "#aaaaaa"])
    for label, marker in ((0, "o"), (1, "^")):
        pick = y_test == label
        ax.scatter(x_test[pick, 0], x_test[pick, 1], s=10, marker=marker, color=rule_colour(rule),
                   edgecolor="k", linewidth=0.3)
    ax.set_title(f"{rule}: test accuracy {net.accuracy(x_test, y_test):.3f}", color=rule_colour(rule))
    ax.set_aspect("equal")
fig.tight_layout()
fig.savefig(FIGURES / "01_moons.png", dpi=100)
print("saved", FIGURES / "01_moons.png")

# %% [markdown]
# Look at `train_from_scratch` again: the three rules differ in one line (which matrix
# carries the error down) and one update (whether R learns). The rest of the
# tutorials asks what those two lines change: why `bp`'s line is the one a brain
# cannot compute (tutorial 2), why a fixed random R still teaches (tutorial 3), what
# R's update buys (tutorial 4), and what happens in deeper networks (tutorial 5).
#
# ## Exercises
#
# **1. Kolen–Pollack.** Kolen & Pollack (1994) gave W and R the same increment *and* the
# same weight decay λ: $W \leftarrow W - \eta(G + \lambda W)$, $R \leftarrow R - \eta(G + \lambda R)$.
# Add it to `train_from_scratch` and show that then $R - W$ shrinks by the factor
# $(1 - \eta\lambda)$ every step, whatever the data, so R and W converge to each other.
# (Akrout et al. 2019 trained ImageNet networks this way.)
#
# **2. Symmetric start.** Start `urfb` from $R_2(0) = W_2(0)$ and show that it is `bp`.
#
# Worked solutions (run by the test suite with the rest of the tutorial):

# %%
def train_kolen_pollack(W1, W2, R2, x, y, lr, steps, decay):
    """urfb plus weight decay on W and R alike (Kolen & Pollack 1994); returns W2 - R2 after each step."""
    W1, W2, R2, differences = W1.copy(), W2.copy(), R2.copy(), []
    for _ in range(steps):
        h1 = x @ W1.T
        x1 = ramp(h1)
        _, e = hinge(x1 @ W2.T, y)
        delta1 = (e @ R2) * ramp_slope(h1)
        G2, G1 = e.T @ x1, delta1.T @ x
        W1 = W1 - lr * (G1 + decay * W1)
        W2, R2 = W2 - lr * (G2 + decay * W2), R2 - lr * (G2 + decay * R2)
        differences.append(W2 - R2)
    return differences


decay, steps = 0.05, 200
differences = train_kolen_pollack(W1_0, W2_0, R2_0, x_train, y_train, LR, steps, decay)
predicted = [(1 - LR * decay) ** (t + 1) * (W2_0 - R2_0) for t in range(steps)]
np.testing.assert_allclose(differences, predicted, rtol=1e-9, atol=1e-15)
print(f"Kolen-Pollack: ‖W2 - R2‖ {np.linalg.norm(W2_0 - R2_0):.3f} -> {np.linalg.norm(differences[-1]):.2e}"
      f" after {steps} steps = (1 - ηλ)^{steps} times the start")

W1_s, W2_s, _, losses_symmetric = train_from_scratch("urfb", W1_0, W2_0, W2_0, x_train, y_train, LR, 200)
W1_b, W2_b, _, losses_bp = train_from_scratch("bp", W1_0, W2_0, R2_0, x_train, y_train, LR, 200)
np.testing.assert_array_equal(losses_symmetric, losses_bp)
np.testing.assert_array_equal(W1_s, W1_b)
print("urfb from R2(0) = W2(0) is bp, bit for bit, for 200 steps")
