# %% [markdown]
# # 10. All the rules side by side
#
# Every rule in hebbref fits one frame (SPEC §3, §9). Each weighted layer l has a
# forward matrix $W_l$ and a feedback matrix $R_l$ of the same shape, and after the
# forward pass the error goes down the layers as
#
# $$e_{l-1} = B_l^\top \delta_l, \qquad \delta_l = e_l \odot \sigma'(h_l), \qquad
# W_l \leftarrow W_l - \eta\,(G_l + \lambda W_l), \quad G_l = \textstyle\sum_{\text{batch}} \delta_l x_{l-1}^\top .$$
#
# A rule is the answer to two questions: which matrix $B_l$ carries the error, and how
# $R_l$ changes. In hebbref a rule is one small class in `hebbref/rules.py`; the layers
# only do the math with the $B$ they are handed. This tutorial shows each rule's $B$ by
# hand, checks it against the library, and trains all nine on the same network.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import hebbref
from hebbref.experiments.probes import probe
from hebbref.palette import rule_colour, rule_linestyle
from hebbref.rules import RULES, sign_scale

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = Path(os.environ.get("HEBBREF_FIGURES", HERE / "figures"))
FIGURES.mkdir(parents=True, exist_ok=True)
FAST = os.environ.get("HEBBREF_FAST", "") not in ("", "0")  # small data and few epochs

for name, rule in RULES.items():
    print(f"{name:5s} {rule.summary}")

# %% [markdown]
# ## Each rule's B, by hand
#
# One small layer, $W$ and $R$ drawn at random. By hand:
#
# - `bp`: $B = W$; `frfb`, `urfb`, `kp`, `wm`: $B = R$;
# - `usf`: $B = s\,\mathrm{sign}(W)$ with $s = \lVert W\rVert / \sqrt{\#\{W \ne 0\}}$, so $\lVert B\rVert = \lVert W\rVert$;
# - `frsf`: $B = \mathrm{sign}(W) \odot |R|$; `brsf`: $B = \mathrm{sign}(W) \odot |M|$ with $M$ fresh each batch.
#
# `dfa` has no $B$ per layer: the output error reaches every hidden layer directly, below.

# %%
rng = np.random.default_rng(0)
W = rng.uniform(-1, 1, size=(3, 4))  # (D_out, D_in)
R = rng.uniform(-1, 1, size=(3, 4))
s = np.sqrt((W ** 2).sum() / W.size)  # W has no zero entry
by_hand = {"bp": W, "frfb": R, "urfb": R, "kp": R, "wm": R,
           "usf": s * np.sign(W), "frsf": np.sign(W) * np.abs(R)}
for name, B in by_hand.items():
    np.testing.assert_allclose(RULES[name]().feedback(W, R), B, rtol=1e-15)
np.testing.assert_allclose(sign_scale(W), s, rtol=1e-15)
np.testing.assert_allclose(np.linalg.norm(by_hand["usf"]), np.linalg.norm(W), rtol=1e-12)
print("usf scale s =", round(s, 4), "  ||B|| = ||W|| =", round(float(np.linalg.norm(W)), 4))

# %% [markdown]
# ## How R changes
#
# With step η and weight decay λ, `urfb` gives R the increment of W (without the decay),
# `kp` gives it the increment *and* the decay, so that
# $R - W = (1 - \eta\lambda)^t\,(R(0) - W(0))$: the difference shrinks and R becomes W.
# The others leave R alone, except `wm`, whose mirror step teaches R the direction of W
# from noise, $R \leftarrow R + \eta_m(\langle y\xi^\top\rangle - \lambda_m R)$, $y = W\xi$.
# We check the `kp` identity on a small network after 20 steps.

# %%
x_demo, y_demo = rng.random((8, 6)), rng.integers(0, 3, size=8)
ETA, LAMBDA, STEPS = 0.1, 0.5, 20
net = hebbref.build_network("dense5 ramp out", input_shape=(6,), n_classes=3, rule="kp", seed=1,
                            backend="numpy")
start = [p.R - p.W for p in net.parameters()]
for _ in range(STEPS):
    net.train_step(x_demo, y_demo, lr=ETA, weight_decay=LAMBDA)
for p, D in zip(net.parameters(), start):
    np.testing.assert_allclose(p.R - p.W, (1 - ETA * LAMBDA) ** STEPS * D, rtol=1e-10, atol=1e-14)
print(f"kp: R - W shrank by (1 - ηλ)^t = {(1 - ETA * LAMBDA) ** STEPS:.4f}, as the identity says")

# %% [markdown]
# ## Direct feedback (dfa)
#
# Under `dfa` (Nøkland 2016) a hidden layer gets $e_l = F_l\, e_L$ through a fixed
# random $F_l$ of shape $(n_l, C)$, then $\delta_l = e_l \odot \sigma'(h_l)$; nothing is
# sent down through $B$. We check one hidden layer's δ by hand.

# %%
net = hebbref.build_network("dense5 ramp dense4 ramp out", input_shape=(6,), n_classes=3, rule="dfa",
                            seed=2, backend="numpy")
o = net.forward(x_demo, train=True)  # (8, 3)
_, e_L = hebbref.get_loss("hinge")(o, y_demo)
net.backward(e_L)
first = net.parameters()[0]
h = x_demo @ first.W.T  # (8, 5), the first layer's field
delta_by_hand = (e_L @ net.rule.F[first.name].T) * 0.5 * (np.abs(0.5 * h) <= 1)  # (F e_L) ⊙ σ'(h)
np.testing.assert_allclose(first.delta, delta_by_hand, rtol=1e-12, atol=1e-15)
print("dfa: F shapes", {name: F.shape for name, F in net.rule.F.items()})

# %% [markdown]
# ## All nine on one network
#
# A dense network with two hidden layers on the embedded `fashion-mnist-mini`, the same
# seed (the same W, R and dropout masks) for every rule. After each epoch:
# test accuracy, and per layer the probes of `hebbref.experiments.probes`: the angle
# between the error the rule sends down and the one back-propagation would send
# (for `dfa`: its δ against back-prop's), and $\lVert B\rVert / \lVert W\rVert$.

# %%
N_TRAIN, N_TEST, EPOCHS, BATCH = (1500, 500, 3, 50) if FAST else (9000, 2000, 15, 50)
x_train, y_train = hebbref.load_dataset("fashion-mnist-mini", "train")  # (9000, 1, 28, 28), (9000,)
x_test, y_test = hebbref.load_dataset("fashion-mnist-mini", "test")  # (2000, 1, 28, 28), (2000,)
x_train, y_train, x_test, y_test = x_train[:N_TRAIN], y_train[:N_TRAIN], x_test[:N_TEST], y_test[:N_TEST]

history = {}
for name in RULES:
    net = hebbref.build_network("dense100 ramp dense100 ramp out", input_shape=(1, 28, 28), n_classes=10,
                                rule=name, seed=0, backend="numpy")
    order = np.random.default_rng(0)
    record = {"accuracy": [net.accuracy(x_test, y_test)], "angle": [], "norm_ratio": []}
    for epoch in range(EPOCHS):
        for batch in np.array_split(order.permutation(N_TRAIN), N_TRAIN // BATCH):
            net.train_step(x_train[batch], y_train[batch], lr=0.1)
        record["accuracy"].append(net.accuracy(x_test, y_test))
        probes = probe(net, x_train[:200], y_train[:200])
        record["angle"].append(probes["dense2"]["angle_RW"])
        record["norm_ratio"].append(probes["dense2"]["norm_ratio"])
    history[name] = record
    print(f"{name:5s} test accuracy {record['accuracy'][-1]:.3f}   angle at dense2 "
          f"{record['angle'][-1]:5.1f}°   ||B||/||W|| {record['norm_ratio'][-1]:.2f}")

# %% [markdown]
# What the numbers above must show, whatever the draw: every rule learns (above 25 %, the
# 10 % of chance two and a half times); back-propagation's angle is 0° and its ratio 1, and `usf`'s ratio is 1
# by its choice of scale; every rule whose B follows W's signs (`usf`, `frsf`, `brsf`)
# sends an error within 90° of back-prop's.

# %%
for name, record in history.items():
    assert record["accuracy"][-1] > 0.25, (name, record["accuracy"])
np.testing.assert_allclose(history["bp"]["angle"], 0, atol=1e-4)  # degrees; arccos rounding only
np.testing.assert_allclose(history["bp"]["norm_ratio"], 1, rtol=1e-12)
np.testing.assert_allclose(history["usf"]["norm_ratio"], 1, rtol=1e-6)
for name in ("usf", "frsf", "brsf"):
    assert max(history[name]["angle"]) < 90, (name, history[name]["angle"])

# %%
fig, (ax_acc, ax_angle) = plt.subplots(1, 2, figsize=(11, 4))
epochs = np.arange(EPOCHS + 1)
for name, record in history.items():
    style = dict(color=rule_colour(name), linestyle=rule_linestyle(name), label=name)
    ax_acc.plot(epochs, 100 * np.array(record["accuracy"]), marker=".", **style)
    ax_angle.plot(epochs[1:], record["angle"], marker=".", **style)
ax_acc.set(xlabel="epoch", ylabel="test accuracy %", title="every rule, one network")
ax_angle.set(xlabel="epoch", ylabel="degrees", title="angle to back-prop's error at dense2")
ax_acc.legend(ncol=3, fontsize=8, loc="lower right")
fig.tight_layout()
path = FIGURES / "10_all_the_rules.png"
fig.savefig(path, dpi=100)
print(f"saved {path}")
