# %% [markdown]
# # 2. Back-propagation by hand, and the weight-transport problem
#
# This tutorial works one SGD step of a tiny network by hand, line by line, and after
# every line checks that hebbref's function for that equation gives the same numbers.
# Then it points at the one line that a brain cannot compute, the *weight-transport
# problem*, and at Amit's answer: a second set of synapses `R` that carries the error down.
#
# The network (SPEC §2): 3 inputs, 4 hidden units with the saturated ramp, 3 linear
# outputs, no biases. In hebbref's text grammar it is `"dense4 ramp out"`.
#
# ```
# x0 (3) --W1--> h1 (4) --σ--> x1 (4) --W2--> o (3)
# ```

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import hebbref
from hebbref.activations import ramp, ramp_derivative
from hebbref.layers import dense_forward, dense_input_error, dense_weight_increment
from hebbref.losses import hinge_loss
from hebbref.palette import rule_colour
from hebbref.rules import feedback_matrix, forward_update

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = Path(os.environ.get("HEBBREF_FIGURES", HERE / "figures"))
FIGURES.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# A batch of B = 2 examples with labels, and a network whose weights we read out of it.
# `rule="bp"` is ordinary back-propagation; `backend="numpy"` is the reference code.

# %%
x0 = np.array([[2.0, -1.0, 3.0],
               [0.5, 1.0, -1.0]])  # (B, 3)
y = np.array([0, 2])  # labels, (B,)
B, C, eta, mu = 2, 3, 0.1, 1.0

net = hebbref.build_network("dense4 ramp out", input_shape=(3,), n_classes=C, rule="bp",
                            seed=1, backend="numpy")
layer1, layer2 = net.parameters()
W1, W2 = layer1.W.copy(), layer2.W.copy()  # (4, 3), (3, 4)
print(net.summary())
print("W1 =\n", W1.round(3), "\nW2 =\n", W2.round(3))

# %% [markdown]
# ## Forward pass (SPEC §2)
#
# $$h_1 = W_1 x_0, \qquad x_1 = \sigma(h_1) = \mathrm{clip}(s\,h_1, -1, 1),\ s = 0.5, \qquad o = h_2 = W_2 x_1$$
#
# By hand, one example per row (so `W x` is `x @ W.T`); then the library's
# `hebbref.layers.dense_forward` and `hebbref.activations.ramp`, and the whole network.

# %%
h1 = x0 @ W1.T  # (B, 4)
x1 = np.clip(0.5 * h1, -1.0, 1.0)  # (B, 4)
o = x1 @ W2.T  # (B, C)
print("h1 =", h1.round(4), "\nx1 =", x1.round(4), "\no  =", o.round(4))

np.testing.assert_allclose(dense_forward(x0, W1)[0], h1, rtol=1e-15)
np.testing.assert_allclose(ramp(h1, 0.5), x1, rtol=1e-15)
np.testing.assert_allclose(dense_forward(x1, W2)[0], o, rtol=1e-15)
np.testing.assert_allclose(net.forward(x0), o, rtol=1e-15)

# %% [markdown]
# ## The loss and the output error (SPEC §4)
#
# The Hebbian hinge cost of one example with label y, off-class factor μ:
#
# $$\ell = \max(0, 1 - o_y) + \frac{\mu}{C-1}\sum_{c\ne y}\max(0, 1 + o_c)$$
#
# The batch loss is the **mean** over the B examples, so the output error
# $e_L = \partial\,\mathrm{loss}/\partial o$ carries a factor 1/B:
# $-1/B$ at the label if $o_y < 1$, $+\frac{\mu}{C-1}/B$ at another class if $o_c > -1$, else 0.

# %%
loss_by_hand = 0.0
e_L = np.zeros_like(o)  # (B, C)
for n in range(B):
    for c in range(C):
        if c == y[n]:
            loss_by_hand += max(0.0, 1.0 - o[n, c]) / B
            e_L[n, c] = -1.0 / B if o[n, c] < 1.0 else 0.0
        else:
            loss_by_hand += mu / (C - 1) * max(0.0, 1.0 + o[n, c]) / B
            e_L[n, c] = mu / (C - 1) / B if o[n, c] > -1.0 else 0.0
print("loss =", round(loss_by_hand, 6), "\ne_L =\n", e_L)

loss_library, e_L_library = hinge_loss(o, y, mu)
np.testing.assert_allclose(loss_library, loss_by_hand, rtol=1e-14)
np.testing.assert_allclose(e_L_library, e_L, rtol=1e-15)

# %% [markdown]
# ## Backward pass (SPEC §3), top layer first
#
# $$\delta_l = e_l \odot \sigma'(h_l), \qquad G_l = \sum_{\text{batch}} \delta_l\, x_{l-1}^\top,
# \qquad e_{l-1} = W_l^\top \delta_l$$
#
# The output layer is linear ($\sigma' = 1$), so $\delta_2 = e_L$. The increment $G_2$ is
# a sum over the batch of outer products: the error unit above times the activity below.

# %%
delta2 = e_L  # (B, C)
G2 = sum(np.outer(delta2[n], x1[n]) for n in range(B))  # (C, 4)
np.testing.assert_allclose(dense_weight_increment(delta2, x1), G2, rtol=1e-14)

# %% [markdown]
# The error sent down to the hidden layer, $e_1 = W_2^\top \delta_2$: hidden unit j
# receives $\sum_c W_2[c, j]\,\delta_{2,c}$. Then the ramp's derivative,
# $\sigma'(h) = s$ where $|s h| \le 1$ and 0 where the ramp is saturated. In example 0
# three hidden units are saturated: no error passes through them, and their row of
# $G_1$ gets nothing from that example.

# %%
e1 = delta2 @ W2  # (B, 4): row n is W2ᵀ δ2[n]
sigma_prime = np.where(np.abs(0.5 * h1) <= 1.0, 0.5, 0.0)  # (B, 4)
delta1 = e1 * sigma_prime  # (B, 4)
G1 = delta1.T @ x0  # (4, 3) = Σ_n δ1[n] x0[n]ᵀ
print("e1 =", e1.round(4), "\nσ'(h1) =", sigma_prime, "\nG1 =\n", G1.round(4))

np.testing.assert_allclose(dense_input_error(delta2, x1, W2), e1, rtol=1e-15)
np.testing.assert_allclose(ramp_derivative(h1, 0.5), sigma_prime, rtol=0)
np.testing.assert_allclose(dense_weight_increment(delta1, x0), G1, rtol=1e-14)

# %% [markdown]
# ## G is the gradient
#
# Back-propagation is exact: $G_l = \partial\,\mathrm{loss}/\partial W_l$. A central
# finite difference of the network's batch loss (`net.loss`) with respect to every
# entry of $W_1$ and $W_2$ gives the same numbers.

# %%
def finite_difference(W, step=1e-6):
    """∂loss/∂W entry by entry, (loss(W + step) - loss(W - step)) / 2 step."""
    grad = np.zeros_like(W)
    for index in np.ndindex(W.shape):
        saved = W[index]
        W[index] = saved + step
        up = net.loss(x0, y, loss="hinge", mu=mu)
        W[index] = saved - step
        down = net.loss(x0, y, loss="hinge", mu=mu)
        W[index] = saved
        grad[index] = (up - down) / (2 * step)
    return grad


np.testing.assert_allclose(finite_difference(layer1.W), G1, rtol=1e-6, atol=1e-9)
np.testing.assert_allclose(finite_difference(layer2.W), G2, rtol=1e-6, atol=1e-9)
print("finite differences agree with G1 and G2")

# %% [markdown]
# ## The update, and the same step by the library
#
# $$W_l \leftarrow W_l - \eta\, G_l$$
#
# Every error is computed with the weights *before* the step; only then are the
# weights changed. `Network.train_step` does forward, loss, backward and update in one call.

# %%
W1_next, W2_next = W1.copy(), W2.copy()
forward_update(W1_next, G1, eta)  # W1 -= η G1, in place
forward_update(W2_next, G2, eta)
np.testing.assert_allclose(W1_next, W1 - eta * G1, rtol=1e-15)

loss_before = net.train_step(x0, y, lr=eta, loss="hinge", mu=mu)
np.testing.assert_allclose(loss_before, loss_by_hand, rtol=1e-14)
np.testing.assert_allclose(layer1.G, G1, rtol=1e-14)
np.testing.assert_allclose(layer1.W, W1_next, rtol=1e-14)
np.testing.assert_allclose(layer2.W, W2_next, rtol=1e-14)
print("loss before the step", round(loss_before, 4), "after", round(net.loss(x0, y), 4))

# %% [markdown]
# ## The weight-transport problem
#
# Look again at the line $e_1 = W_2^\top \delta_2$. Hidden unit j needs
# $W_2[c, j]$, the strength of the synapse from j **up to** output c, to weigh the error
# coming **down** from c. A real synapse transmits in one direction; the error would
# have to come back through other synapses, and nothing makes their strengths equal
# to $W_2$. Back-propagation needs the forward weights "transported" to the feedback
# path (Grossberg 1987, Crick 1989).
#
# Amit (2019), like feedback alignment (Lillicrap et al. 2016), gives every layer a
# separate feedback matrix R of the same shape as W and sends the error down through it:
#
# $$e_{l-1} = B^\top \delta_l, \qquad B = W \text{ (bp)} \quad\text{or}\quad B = R \text{ (frfb, urfb)}$$
#
# `hebbref.rules.feedback_matrix` picks B. A network built with the same seed and
# `rule="frfb"` has the same W and an R drawn independently (Glorot uniform, SPEC §3).

# %%
net_feedback = hebbref.build_network("dense4 ramp out", input_shape=(3,), n_classes=C, rule="frfb",
                                     seed=1, backend="numpy")
top = net_feedback.parameters()[1]
np.testing.assert_array_equal(top.W, W2)  # same seed, same W
assert feedback_matrix(top.W, top.R, "bp") is top.W
assert feedback_matrix(top.W, top.R, "frfb") is top.R

_, e = hinge_loss(net_feedback.forward(x0, train=True), y, mu)
net_feedback.backward(e)
e1_backprop = top.send_down(top.W)  # what back-prop would send: W2ᵀ δ2
e1_feedback = top.send_down(top.R)  # what the feedback synapses send: R2ᵀ δ2
np.testing.assert_allclose(e1_backprop, delta2 @ W2, rtol=1e-15)
np.testing.assert_allclose(e1_feedback, delta2 @ top.R, rtol=1e-15)


def angle_degrees(a, b):
    """The angle between two arrays seen as vectors: arccos(a·b / |a||b|), in degrees."""
    cosine = np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


print(f"angle between R2ᵀδ2 and W2ᵀδ2 at the start: {angle_degrees(e1_feedback, e1_backprop):.1f}°")

# %% [markdown]
# A random R sends an error unrelated to back-prop's: R is drawn independently of W
# from a distribution symmetric about 0, so R and −R are equally likely and the cosine
# between $R^\top\delta$ and $W^\top\delta$ averages 0 over the draws of R (the angle
# printed above is one draw). Tutorial 3 shows that learning with a *fixed* random R
# still works because W comes to align with R; tutorial 4 gives R the very same
# Hebbian increment as W (the paper's `urfb`) and measures how much closer to
# back-prop's the error sent down gets.
#
# The figure: the error each hidden unit receives for example 0, through W2 (back-prop)
# and through R2 (the feedback synapses).

# %%
fig, ax = plt.subplots(figsize=(5, 3))
units = np.arange(e1_backprop.shape[1])
ax.bar(units - 0.2, e1_backprop[0], width=0.4, color=rule_colour("bp"), label="back-prop: $W_2^T\\delta_2$")
ax.bar(units + 0.2, e1_feedback[0], width=0.4, color=rule_colour("frfb"), label="feedback: $R_2^T\\delta_2$")
ax.axhline(0, color="k", lw=0.5)
ax.set_xlabel("hidden unit j")
ax.set_ylabel("error $e_{1,j}$ (example 0)")
ax.set_xticks(units)
ax.legend()
fig.tight_layout()
fig.savefig(FIGURES / "02_error_sent_down.png", dpi=100)
print("saved", FIGURES / "02_error_sent_down.png")

# %% [markdown]
# ## Exercises
#
# **1. The off-class factor μ.** Redo the output error by hand for μ = 0.5 (each wrong
# class counts half as much) and check it against `hinge_loss(o, y, mu=0.5)` and
# against a finite difference of the loss.
#
# **2. Saturation stops learning.** Show that a hidden unit that is saturated for an
# example ($|s\,h| > 1$) gets nothing in its row of $G_1$ from that example, whatever
# error arrives from above.
#
# Worked solutions (run by the test suite with the rest of the tutorial):

# %%
def output_error_by_hand(o, y, mu):
    """e_L = ∂loss/∂o of the mean hinge loss, by the cases of SPEC §4."""
    B, C = o.shape
    e = np.zeros_like(o)
    for n in range(B):
        for c in range(C):
            if c == y[n]:
                e[n, c] = -1.0 / B if o[n, c] < 1.0 else 0.0
            else:
                e[n, c] = mu / (C - 1) / B if o[n, c] > -1.0 else 0.0
    return e


e_half = output_error_by_hand(o, y, 0.5)
np.testing.assert_allclose(hinge_loss(o, y, 0.5)[1], e_half, rtol=1e-15)
step = 1e-6
numeric = np.zeros_like(o)
for n, c in np.ndindex(o.shape):
    bump = np.zeros_like(o)
    bump[n, c] = step
    numeric[n, c] = (hinge_loss(o + bump, y, 0.5)[0] - hinge_loss(o - bump, y, 0.5)[0]) / (2 * step)
np.testing.assert_allclose(numeric, e_half, atol=1e-8)
print("μ = 0.5: e_L by hand =", e_half.round(4).tolist())

saturated = np.abs(0.5 * h1[0]) > 1.0  # hidden units saturated for example 0, (4,)
print("hidden units saturated for example 0:", np.flatnonzero(saturated).tolist())
assert saturated.sum() == 3  # as said above: three of the four
some_error = np.random.default_rng(2).normal(size=(1, W1.shape[0]))  # any error arriving at the hidden layer
G1_example0 = dense_weight_increment(some_error * ramp_derivative(h1[:1], 0.5), x0[:1])  # (4, 3)
np.testing.assert_array_equal(G1_example0[saturated], 0.0)
assert np.all(G1_example0[~saturated] != 0.0)
