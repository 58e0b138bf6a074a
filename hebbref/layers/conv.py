"""Convolution with tied weights, stride 1, "same" zero padding: the NumPy reference.  # SPEC §2, §5

Shapes: x (N, C_in, H, W); the filter bank W and its feedback twin R (C_out, C_in, k, k);
h and δ (N, C_out, H, W). Padding for a k×k kernel is ``(k-1)//2`` before and the rest
after, so an even kernel pads 0 before and 1 after, as TensorFlow does.

    h[n,o,i,j] = Σ_{c,a,b} W[o,c,a,b] xp[n,c,i+a,j+b]          conv_forward
    e[n,c,y,x] = Σ_{o,a,b} B[o,c,a,b] δ[n,o,y+p-a,x+p-b]        conv_input_error   (transposed conv)
    G[o,c,a,b] = Σ_{n,i,j} δ[n,o,i,j] xp[n,c,i+a,j+b]           conv_weight_increment

where xp is x zero-padded and p the padding before. The transposed convolution is
itself a "same" correlation: pad δ the other way round (after-padding first) and
correlate it with B flipped in space and with its two channel axes swapped.
Everything is vectorised with a sliding-window view and one tensor contraction.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..activations import DEFAULT_SLOPE
from .pooling import maxpool_ramp_backward, ramp_maxpool_forward


def same_padding(k):
    """(before, after) zero padding that keeps the size for a k-wide kernel at stride 1."""
    before = (k - 1) // 2
    return before, k - 1 - before


def pad_spatial(x, before, after):
    """Zero-pad the last two axes of (N, C, H, W) by ``before`` and ``after``."""
    return np.pad(x, ((0, 0), (0, 0), (before, after), (before, after)))


def windows(xp, k):
    """All k×k windows of a padded (N, C, Hp, Wp) array: a view (N, C, Hp-k+1, Wp-k+1, k, k)."""
    return sliding_window_view(xp, (k, k), axis=(2, 3))


def correlate_valid(xp, W):
    """Valid cross-correlation: (N, C, Hp, Wp) with (O, C, k, k) -> (N, O, Hp-k+1, Wp-k+1)."""
    k = W.shape[-1]
    h = np.tensordot(windows(xp, k), W, axes=([1, 4, 5], [1, 2, 3]))  # (N, H, W, O)
    return np.ascontiguousarray(h.transpose(0, 3, 1, 2))  # (N, O, H, W)


def conv_forward(x, W):
    """h = W ⊛ x, "same" padding: (N, C_in, H, W) -> (N, C_out, H, W); cache = padded x."""
    before, after = same_padding(W.shape[-1])
    xp = pad_spatial(x, before, after)  # (N, C_in, H+k-1, W+k-1)
    return correlate_valid(xp, W), xp


def conv_input_error(delta, cache, B):
    """e_below = Bᵀ δ as a transposed convolution: (N, C_out, H, W) -> (N, C_in, H, W)."""
    before, after = same_padding(B.shape[-1])
    delta_p = pad_spatial(delta, after, before)  # padding mirrored
    B_transposed = B[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C_in, C_out, k, k)
    return correlate_valid(delta_p, B_transposed)


def conv_backward(delta, cache, B):
    """(e_below, G): the input error Bᵀ δ and the increment Σ δ xᵀ of one δ, the two functions in a row.

    A compiled backend may compute both in one pass over δ (the network's conv layers ask for them together).
    """
    return conv_input_error(delta, cache, B), conv_weight_increment(delta, cache)


def conv_weight_increment(delta, cache):
    """G = Σ_{n,i,j} δ xᵀ, the increment summed over all positions: -> (C_out, C_in, k, k)."""
    xp = cache
    k = xp.shape[-1] - delta.shape[-1] + 1
    return np.tensordot(delta, windows(xp, k), axes=([0, 2, 3], [0, 2, 3]))  # (C_out, C_in, k, k)


def conv_ramp_maxpool_forward(x, W, k, t, slope=DEFAULT_SLOPE):
    """A conv layer, the ramp above it and the max pool above that, in a row: -> (y, conv cache, h, cache).  # SPEC §2

    The forward pass as a network takes it where the three sit in a row (``conv ramp
    pool``, ``simple``): h = W ⊛ x, y = maxpool(σ(h)) with a k×k window at stride t.
    Returns the pool's output, the conv layer's cache, the ramp's input h and the cache
    of ``maxpool_ramp_conv_backward``. A compiled backend may return, instead of h, a
    function of no arguments that forms it.
    """
    h, conv_cache = conv_forward(x, W)
    y, pool_cache = ramp_maxpool_forward(h, k, t, slope)
    return y, conv_cache, h, (conv_cache, h, pool_cache)


def maxpool_ramp_conv_backward(dy, cache, slope=DEFAULT_SLOPE):
    """The same block's backward pass: -> (δ, G).  # SPEC §3

    δ = (maxpool_backward of dy) ⊙ σ'(h), the error at the conv layer's output, and
    G = Σ δ xᵀ, its increment. The input error below, when one is needed, is the conv
    layer's own (``conv_input_error`` of δ). A compiled backend may return, instead of
    δ, a function of no arguments that forms it.
    """
    conv_cache, h, pool_cache = cache
    delta = maxpool_ramp_backward(dy, pool_cache, h, slope)
    return delta, conv_weight_increment(delta, conv_cache)
