"""Locally connected ("untied") layer: the NumPy reference.  # SPEC §5

The connectivity of a stride-1 "same" conv layer with a k×k kernel, but every output
location (i, j) has its own filter, for W and for R.

Shapes: x (N, C_in, H, W); W and R (H, W, C_out, C_in, k, k); h and δ (N, C_out, H, W).

    h[n,o,i,j]   = Σ_{c,a,b} W[i,j,o,c,a,b] xp[n,c,i+a,j+b]           locally_connected_forward
    e[n,c,·,·]  += Σ_o B[i,j,o,c,a,b] δ[n,o,i,j]  at xp[n,c,i+a,j+b]   locally_connected_input_error
    G[i,j,o,c,a,b] = Σ_n δ[n,o,i,j] xp[n,c,i+a,j+b]                     locally_connected_weight_increment

Each location is one small matrix product, so all H·W of them are one batched matmul
over "columns" (the im2col layout): cols (H·W, N, C_in·k·k).
"""
import numpy as np

from ..activations import DEFAULT_SLOPE
from .conv import pad_spatial, same_padding, windows
from .pooling import maxpool_ramp_backward, ramp_maxpool_forward


def im2col_by_location(xp, k, H, W):
    """Padded (N, C, Hp, Wp) -> columns (H·W, N, C·k·k): one row per example and location."""
    N, C = xp.shape[:2]
    win = windows(xp, k)  # (N, C, H, W, k, k)
    return np.ascontiguousarray(win.transpose(2, 3, 0, 1, 4, 5)).reshape(H * W, N, C * k * k)


def locally_connected_forward(x, W):
    """h = W ⊛_untied x: (N, C_in, H, W) -> (N, C_out, H, W); cache = (columns, padded shape)."""
    H, Wd, C_out, C_in, k, _ = W.shape
    before, after = same_padding(k)
    xp = pad_spatial(x, before, after)  # (N, C_in, H+k-1, W+k-1)
    cols = im2col_by_location(xp, k, H, Wd)  # (HW, N, C_in·k·k)
    filters = W.reshape(H * Wd, C_out, C_in * k * k)  # (HW, C_out, C_in·k·k)
    h = np.matmul(cols, filters.transpose(0, 2, 1))  # (HW, N, C_out)
    h = h.reshape(H, Wd, -1, C_out).transpose(2, 3, 0, 1)  # (N, C_out, H, W)
    return np.ascontiguousarray(h), (cols, xp.shape)


def _delta_by_location(delta):
    """(N, C_out, H, W) -> (H·W, N, C_out)."""
    N, C_out, H, Wd = delta.shape
    return np.ascontiguousarray(delta.transpose(2, 3, 0, 1)).reshape(H * Wd, N, C_out)


def locally_connected_input_error(delta, cache, B):
    """e_below = Bᵀ δ location by location, scattered back onto the input: -> (N, C_in, H, W)."""
    _, padded_shape = cache
    H, Wd, C_out, C_in, k, _ = B.shape
    N = delta.shape[0]
    filters = B.reshape(H * Wd, C_out, C_in * k * k)
    dcols = np.matmul(_delta_by_location(delta), filters)  # (HW, N, C_in·k·k)
    dcols = dcols.reshape(H, Wd, N, C_in, k, k)
    e_padded = np.zeros(padded_shape, dtype=delta.dtype)  # (N, C_in, H+k-1, W+k-1)
    for a in range(k):  # loop over the k·k filter taps only; every pixel is vectorised
        for b in range(k):
            e_padded[:, :, a : a + H, b : b + Wd] += dcols[:, :, :, :, a, b].transpose(2, 3, 0, 1)
    before, _ = same_padding(k)
    return np.ascontiguousarray(e_padded[:, :, before : before + H, before : before + Wd])


def locally_connected_weight_increment(delta, cache):
    """G[i,j] = Σ_n δ[:, :, i, j] x_windowᵀ, one increment per location: -> (H, W, C_out, C_in, k, k)."""
    cols, padded_shape = cache
    N, C_out, H, Wd = delta.shape
    C_in = padded_shape[1]
    k = padded_shape[2] - H + 1
    G = np.matmul(_delta_by_location(delta).transpose(0, 2, 1), cols)  # (HW, C_out, C_in·k·k)
    return G.reshape(H, Wd, C_out, C_in, k, k)


def locally_connected_ramp_maxpool_forward(x, W, k, t, slope=DEFAULT_SLOPE):
    """An untied layer, the ramp above it and the max pool above that, in a row: -> (y, untied cache, h, cache).  # SPEC §2, §5

    The forward pass as a network takes it where the three sit in a row (``lc ramp
    pool``, untied ``simple``): h = W ⊛_untied x, y = maxpool(σ(h)) with a k×k window at
    stride t. Returns the pool's output, the untied layer's cache, the ramp's input h
    and the cache of ``maxpool_ramp_locally_connected_backward``. A compiled backend may
    keep h in a layout of its own and return, instead of h, a function of no arguments
    that forms it.
    """
    h, lc_cache = locally_connected_forward(x, W)
    y, pool_cache = ramp_maxpool_forward(h, k, t, slope)
    return y, lc_cache, h, (lc_cache, h, pool_cache)


def maxpool_ramp_locally_connected_backward(dy, cache, slope=DEFAULT_SLOPE):
    """The same block's backward pass: -> (δ, G).  # SPEC §3, §5

    δ = (maxpool_backward of dy) ⊙ σ'(h), the error at the untied layer's output, and
    G = Σ_n δ xᵀ, its increment. The input error below, when one is needed, is the
    untied layer's own (``locally_connected_input_error`` of δ). A compiled backend may
    return, instead of δ, a function of no arguments that forms it.
    """
    lc_cache, h, pool_cache = cache
    delta = maxpool_ramp_backward(dy, pool_cache, h, slope)
    return delta, locally_connected_weight_increment(delta, lc_cache)
