# %% [markdown]
# # 8. Tied and untied layers: the same connectivity, one filter or one per location
#
# A convolutional layer shares ("ties") one filter bank across the whole image. Weight
# sharing is another thing a brain cannot do: a synapse at one place in the visual field
# cannot copy its change to the synapses at every other place. The paper therefore also
# trains **untied**, locally connected layers (SPEC §5): exactly the conv layer's
# connectivity (same kernel, stride 1, "same" padding), but every output location
# (i, j) has its own filter, in W and in R, updated only with that location's products.
#
# Tied (conv), with xp the zero-padded input:
#
# $$h[n,o,i,j] = \sum_{c,a,b} W[o,c,a,b]\; xp[n,c,i+a,j+b], \qquad
# G[o,c,a,b] = \sum_{n,i,j} \delta[n,o,i,j]\; xp[n,c,i+a,j+b]$$
#
# Untied (locally connected):
#
# $$h[n,o,i,j] = \sum_{c,a,b} W[i,j,o,c,a,b]\; xp[n,c,i+a,j+b], \qquad
# G[i,j,o,c,a,b] = \sum_{n} \delta[n,o,i,j]\; xp[n,c,i+a,j+b]$$
#
# The only difference: the tied increment sums over positions (i, j), the untied one keeps
# them apart.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import hebbref
from hebbref.palette import rule_colour
from hebbref.layers import (
    conv_forward,
    conv_input_error,
    conv_weight_increment,
    locally_connected_forward,
    locally_connected_input_error,
    locally_connected_weight_increment,
)

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = Path(os.environ.get("HEBBREF_FIGURES", HERE / "figures"))
FIGURES.mkdir(parents=True, exist_ok=True)
FAST = os.environ.get("HEBBREF_FAST", "") not in ("", "0")  # small data and few epochs

# %% [markdown]
# ## One output of a conv layer, by hand
#
# `conv_forward(x, W)` returns h and a cache (the padded input). A 3×3 kernel pads one
# pixel on each side; output (i, j) reads the window `xp[:, :, i:i+3, j:j+3]`.

# %%
rng = np.random.default_rng(5)
N, C_in, C_out, H, Wd, k = 2, 3, 4, 6, 6, 3
x = rng.normal(size=(N, C_in, H, Wd))  # (N, C_in, H, W)
W = rng.normal(size=(C_out, C_in, k, k))  # one filter bank
R = rng.normal(size=(C_out, C_in, k, k))  # its feedback twin
h, cache = conv_forward(x, W)  # (N, C_out, H, W)
xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))  # (N, C_in, H+2, W+2)
n, o, i, j = 1, 2, 0, 4
h_by_hand = sum(W[o, c, a, b] * xp[n, c, i + a, j + b] for c in range(C_in) for a in range(k) for b in range(k))
np.testing.assert_allclose(h[n, o, i, j], h_by_hand, rtol=1e-13)

# %% [markdown]
# ## Same connectivity: an untied layer holding one filter everywhere *is* the conv layer
#
# Copy the conv filter bank to every location, W and R alike: `(C_out, C_in, k, k)` becomes
# `(H, W, C_out, C_in, k, k)`. Then the locally connected forward pass equals the conv
# pass, the error it sends down through the copied R equals the transposed convolution
# with R, and its per-location increments, summed over locations, are the conv increment.

# %%
W_untied = np.broadcast_to(W, (H, Wd) + W.shape).copy()  # (H, W, C_out, C_in, k, k)
R_untied = np.broadcast_to(R, (H, Wd) + R.shape).copy()
h_untied, cache_untied = locally_connected_forward(x, W_untied)
np.testing.assert_allclose(h_untied, h, rtol=1e-12, atol=1e-12)

delta = rng.normal(size=h.shape)  # some error arriving at the layer, (N, C_out, H, W)
np.testing.assert_allclose(locally_connected_input_error(delta, cache_untied, R_untied),
                           conv_input_error(delta, cache, R), rtol=1e-12, atol=1e-12)
G_untied = locally_connected_weight_increment(delta, cache_untied)  # (H, W, C_out, C_in, k, k)
np.testing.assert_allclose(G_untied.sum(axis=(0, 1)), conv_weight_increment(delta, cache),
                           rtol=1e-12, atol=1e-12)
print("untied with one filter everywhere = conv: forward, error sent down, summed increment")

# %% [markdown]
# ## The two connectivities, drawn
#
# Each output location (i, j) reads the same 3×3 window of the padded input in both
# layers. The difference is what it multiplies the window by: in the tied (conv) layer
# one filter, shared by every location; in the untied (locally connected) layer a filter
# of its own. Below, three locations and the filter each one uses (input channel 0,
# output channel 0). For the picture the untied filters are drawn independently at
# random, as `build_network(..., untied_init="independent")` does; with the paper's
# default they start as copies of one filter and drift apart in training (below).

# %%
locations_drawn = [(0, 0), (2, 3), (4, 1)]
edge_colours = ["#E69F00", "#56B4E9", "#CC79A7"]
W_own = rng.normal(size=W_untied.shape)  # (H, W, C_out, C_in, k, k): one filter bank per location
fig, axes = plt.subplots(2, 1 + len(locations_drawn), figsize=(10, 5))
for row, (name, filters) in enumerate((("tied (conv)", [W[0, 0]] * len(locations_drawn)),
                                       ("untied (locally connected)", [W_own[i, j, 0, 0]
                                                                       for i, j in locations_drawn]))):
    axes[row, 0].imshow(xp[0, 0], cmap="Greys")
    for (i, j), colour in zip(locations_drawn, edge_colours):
        axes[row, 0].add_patch(plt.Rectangle((j - 0.5, i - 0.5), k, k, fill=False, edgecolor=colour, lw=2.5))
    axes[row, 0].set_title(f"{name}:\npadded input, three windows", fontsize=9)
    limit = max(np.abs(f).max() for f in filters)
    for ax, filt, (i, j), colour in zip(axes[row, 1:], filters, locations_drawn, edge_colours):
        ax.imshow(filt, cmap="RdBu_r", vmin=-limit, vmax=limit)
        for side in ax.spines.values():
            side.set_edgecolor(colour)
            side.set_linewidth(3)
        ax.set_title(f"filter used at ({i},{j})", fontsize=9)
    for ax in axes[row]:
        ax.set_xticks([])
        ax.set_yticks([])
fig.tight_layout()
fig.savefig(FIGURES / "08_connectivity.png", dpi=100)
print("saved", FIGURES / "08_connectivity.png")
tied_drawn = [W[0, 0]] * len(locations_drawn)
untied_drawn = [W_own[i, j, 0, 0] for i, j in locations_drawn]
assert all(np.array_equal(f, tied_drawn[0]) for f in tied_drawn)  # one filter everywhere
assert not np.array_equal(untied_drawn[0], untied_drawn[1]) and not np.array_equal(untied_drawn[1], untied_drawn[2])

# %% [markdown]
# The increments at different locations differ, because each location sees its own
# part of the image and its own error. After one step the untied filters are no longer
# copies of each other; the tied filter moves by their sum.

# %%
spread_after_one_step = np.abs(G_untied - G_untied.mean(axis=(0, 1))).max()
print(f"largest difference between one location's increment and the mean increment: {spread_after_one_step:.3f}")
assert spread_after_one_step > 0.1

# %% [markdown]
# ## Training a tied and an untied network
#
# `build_network(..., untied=True)` turns every `conv` into its locally connected twin.
# With the paper's default `untied_init="tied"`, every location starts from the same
# Glorot filter (W and R drawn independently), so both networks start from the same
# function. Both are trained with `urfb` and the hinge cost; the paper used batch 50
# and step 0.1 for its untied phases (SPEC §6).
#
# The images: `hebbref.load_dataset("fashion-mnist-mini", split)`, the class-balanced
# subset of Fashion-MNIST shipped inside hebbref (9,000 training and 2,000 test images,
# 28×28 grey levels in [0, 1], ten classes; no download). `HEBBREF_FAST` uses the first N of each.

# %%
N_TRAIN, N_TEST, EPOCHS = (3000, 500, 4) if FAST else (9000, 2000, 15)
x_train, y_train = hebbref.load_dataset("fashion-mnist-mini", "train")  # (9000, 1, 28, 28), (9000,)
x_test, y_test = hebbref.load_dataset("fashion-mnist-mini", "test")  # (2000, 1, 28, 28), (2000,)
assert x_train.shape == (9000, 1, 28, 28) and x_test.shape == (2000, 1, 28, 28)  # as stated above
assert 0 <= x_train.min() and x_train.max() <= 1 and np.array_equal(np.unique(y_train), np.arange(10))
x_train, y_train, x_test, y_test = x_train[:N_TRAIN], y_train[:N_TRAIN], x_test[:N_TEST], y_test[:N_TEST]
NET, BATCH, ETA = "conv5:8 ramp pool2 dense100 ramp out", 50, 0.1


def filter_spread(W):
    """RMS over locations of |W[i,j] - mean filter|, relative to |mean filter|: 0 when tied."""
    mean = W.mean(axis=(0, 1))  # (C_out, C_in, k, k)
    distance = np.sqrt(((W - mean) ** 2).sum(axis=(2, 3, 4, 5)))  # (H, W)
    return float(np.sqrt((distance**2).mean()) / np.linalg.norm(mean))


def train(untied, seed=0):
    net = hebbref.build_network(NET, input_shape=(1, 28, 28), n_classes=10, rule="urfb", untied=untied,
                                seed=seed, backend="numpy")
    first = net.parameters()[0]
    W_start = first.W.copy()
    order = np.random.default_rng(seed)
    spread, accuracy = [filter_spread(first.W)] if untied else [], [net.accuracy(x_test, y_test)]
    for epoch in range(EPOCHS):
        for batch in np.array_split(order.permutation(N_TRAIN), N_TRAIN // BATCH):
            net.train_step(x_train[batch], y_train[batch], lr=ETA, loss="hinge")
            if untied:
                spread.append(filter_spread(first.W))
        accuracy.append(net.accuracy(x_test, y_test))
    return net, W_start, np.array(spread), np.array(accuracy)


tied_net, tied_start, _, tied_accuracy = train(untied=False)
untied_net, untied_start, spread, untied_accuracy = train(untied=True)
print(tied_net.parameters()[0].name, tied_net.parameters()[0].W.shape, "|",
      untied_net.parameters()[0].name, untied_net.parameters()[0].W.shape)
print("test accuracy per epoch, tied:  ", np.round(tied_accuracy, 3))
print("test accuracy per epoch, untied:", np.round(untied_accuracy, 3))

# %% [markdown]
# Both start from the same filter (the seed draws the same Glorot bank), copied to every
# location in the untied layer; the untied filters then drift apart:

# %%
np.testing.assert_array_equal(untied_start, np.broadcast_to(tied_start, untied_start.shape))
assert tied_accuracy[0] == untied_accuracy[0]  # the same function at the start
print(f"spread of the untied filters: {spread[0]:.3f} at the start, {spread[-1]:.3f} after training")
assert spread[0] < 1e-12 and spread[-1] > 0.02

# %% [markdown]
# A tap of a filter that only ever reads the zero padding gets the increment
# $\delta \cdot 0 = 0$ and never moves. The filter at the corner (0, 0) of a 5×5 kernel
# has its first two rows and columns over the padding:

# %%
corner = untied_net.parameters()[0].W[0, 0]  # (C_out, C_in, 5, 5)
np.testing.assert_array_equal(corner[:, :, :2, :], untied_start[0, 0][:, :, :2, :])
np.testing.assert_array_equal(corner[:, :, :, :2], untied_start[0, 0][:, :, :, :2])
print("the corner filter's taps over the padding are exactly where they started")

# %% [markdown]
# ## The filters as pictures
#
# Every untied filter started as the tied network's starting filter (first column).
# What each location has *learned* is its change from that start, $W[i,j] - W(0)$. The
# tied filter's change (second column, its own colour scale) is one and the same at every
# location. Its increment sums over all H·W positions, yet its change is not H·W times
# that of an untied location: the positions' increments point in different directions
# and partly cancel, and the two networks followed different paths. Measured below as
# the norm of the tied change over the root-mean-square, over locations, of the norm of
# an untied location's change. The untied changes, on one colour scale per row, differ
# from location to location.

# %%
locations = [(4, 4), (4, 14), (14, 14), (14, 24), (24, 14)]
W_tied, W_untied_trained = tied_net.parameters()[0].W, untied_net.parameters()[0].W
change_tied = W_tied - tied_start  # (C_out, C_in, k, k)
change_untied = W_untied_trained - untied_start  # (H, W, C_out, C_in, k, k)
H_map, W_map = change_untied.shape[:2]  # 28, 28: one filter bank per location
factor = np.linalg.norm(change_tied) / np.sqrt((change_untied**2).sum(axis=(2, 3, 4, 5)).mean())
print(f"‖tied change‖ / RMS over locations of ‖untied change‖ = {factor:.1f}  (H·W = {H_map * W_map})")
assert 1 < factor < H_map * W_map / 4  # larger, but far from H·W times larger
channels = range(4)
columns = 2 + len(locations)
fig, axes = plt.subplots(len(channels), columns, figsize=(1.6 * columns, 1.7 * len(channels)))
for row, channel in enumerate(channels):
    untied_limit = max(np.abs(change_untied[i, j, channel, 0]).max() for i, j in locations)
    panels = ([(tied_start[channel, 0], "start (all)"), (change_tied[channel, 0], "tied: change")]
              + [(change_untied[i, j, channel, 0], f"untied ({i},{j})") for i, j in locations])
    for column, (ax, (panel, title)) in enumerate(zip(axes[row], panels)):
        limit = np.abs(panel).max() if column < 2 else untied_limit
        ax.imshow(panel, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_xticks([])
        ax.set_yticks([])
        if row == 0:
            ax.set_title(title, fontsize=8)
    axes[row, 0].set_ylabel(f"channel {channel}", fontsize=8)
fig.tight_layout()
fig.savefig(FIGURES / "08_untied_filters.png", dpi=100)
print("saved", FIGURES / "08_untied_filters.png")

# %% [markdown]
# The spread of the untied filters over training; a map of how far each location's
# filter bank moved, $\|W[i,j] - W(0)[i,j]\|$; and both networks' accuracy.

# %%
moved = np.sqrt((change_untied**2).sum(axis=(2, 3, 4, 5)))  # (H, W)
fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 3.4))
left.plot(spread)
left.set_xlabel("SGD step")
left.set_ylabel("RMS |W[i,j] − mean| / |mean|")
left.set_title("untied filters drift apart")
image = middle.imshow(moved, cmap="magma")
fig.colorbar(image, ax=middle, fraction=0.046)
middle.set_title("untied: |W[i,j] − W(0)[i,j]| by location")
right.plot(tied_accuracy, "o-", color=rule_colour("urfb"), label="tied (conv), urfb")
right.plot(untied_accuracy, "s--", color=rule_colour("urfb"), label="untied (locally connected), urfb")
right.set_xlabel("epoch")
right.set_ylabel("test accuracy")
right.legend()
fig.tight_layout()
fig.savefig(FIGURES / "08_drift.png", dpi=100)
print("saved", FIGURES / "08_drift.png")

# %% [markdown]
# The untied layer has H·W times more weights (checked below), learns each location
# from only the examples' content at that location, and still learns: its test accuracy
# ends well above the 10% of guessing (checked: above 30%). The paper reports that
# untied layers perform similarly to tied ones in its long runs (claim 4, SPEC §7); in
# this short `HEBBREF_FAST` run the untied network, whose every filter sees only its own
# location's increments, ended below the tied one (checked). The map shows how unevenly
# the locations learn: a location moves only when an error reaches it, and max pooling
# sends each window's error to its maximum alone.

# %%
assert untied_net.parameters()[0].W.size == H_map * W_map * tied_net.parameters()[0].W.size
assert untied_accuracy[-1] > 0.3
if FAST:
    assert untied_accuracy[-1] < tied_accuracy[-1]

# %% [markdown]
# ## Exercise
#
# Weight sharing is what a brain cannot do; show that it is *all* the tied layer adds.
# Take the untied layer whose every location holds the same filter (the copies
# `W_untied` above), give every location the **mean** of the locations' increments
# instead of its own, and show that (a) the filters stay copies of each other and
# (b) the step equals the conv layer's step with the learning rate divided by H·W.
#
# Worked solution (run by the test suite with the rest of the tutorial):

# %%
eta = 0.1
shared_step = W_untied - eta * G_untied.mean(axis=(0, 1))  # every location: the mean increment
assert np.all(shared_step == shared_step[0, 0])  # (a) still one filter everywhere
np.testing.assert_allclose(shared_step[0, 0], W - eta / (H * Wd) * conv_weight_increment(delta, cache),
                           rtol=1e-12, atol=1e-12)  # (b)
print(f"mean of the untied increments = conv increment / (H·W), H·W = {H * Wd}")
