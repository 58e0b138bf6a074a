"""Max pooling with "same" padding, disjoint or overlapping windows: the NumPy reference.  # SPEC §2, §3

Window k×k, stride t; the output is ceil(n/t) wide. As in TensorFlow the padding is
``max((out-1)·t + k - n, 0)`` in total, half (rounded down) before. Padded cells hold
-inf, so they never win. The error goes to the position of each window's maximum
(the first one in row-major order when there are ties); with overlapping windows a
cell that wins several windows receives the sum of their errors.

Shapes: x (N, C, H, W) -> (N, C, ceil(H/t), ceil(W/t)).
"""
import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..activations import DEFAULT_SLOPE, ramp, ramp_backward, ramp_backward_of_sum, ramp_plus


def pool_padding(n, k, t):
    """(before, after, out) for one spatial axis of length n."""
    out = math.ceil(n / t)
    total = max((out - 1) * t + k - n, 0)
    return total // 2, total - total // 2, out


def maxpool_forward(x, k, t):
    """y = max over each k×k window at stride t: (N, C, H, W) -> (N, C, Ho, Wo)."""
    N, C, H, W = x.shape
    top, bottom, Ho = pool_padding(H, k, t)
    left, right, Wo = pool_padding(W, k, t)
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=-np.inf)
    s = xp.strides
    win = as_strided(xp, shape=(N, C, Ho, Wo, k, k),
                     strides=(s[0], s[1], s[2] * t, s[3] * t, s[2], s[3]), writeable=False)
    win = win.reshape(N, C, Ho, Wo, k * k)  # copies: (N, C, Ho, Wo, k·k)
    tap = win.argmax(axis=-1)  # (N, C, Ho, Wo): which cell of the window won
    y = np.take_along_axis(win, tap[..., None], axis=-1)[..., 0]
    # flat index of each winner inside the padded array, for the backward scatter
    rows = np.arange(Ho)[:, None] * t + tap // k  # (N, C, Ho, Wo)
    cols = np.arange(Wo)[None, :] * t + tap % k
    plane = (np.arange(N)[:, None] * C + np.arange(C)[None, :])[:, :, None, None]
    winner = (plane * xp.shape[2] + rows) * xp.shape[3] + cols
    return y, (winner, xp.shape, (top, left), (H, W))


def maxpool_backward(dy, cache):
    """Route each window's error to its maximum: (N, C, Ho, Wo) -> (N, C, H, W)."""
    winner, padded_shape, (top, left), (H, W) = cache
    dxp = np.bincount(winner.ravel(), weights=dy.ravel(), minlength=math.prod(padded_shape))
    dxp = dxp.reshape(padded_shape).astype(dy.dtype, copy=False)
    return np.ascontiguousarray(dxp[:, :, top : top + H, left : left + W])


def ramp_maxpool_forward(h, k, t, slope=DEFAULT_SLOPE):
    """maxpool_forward(σ(h), k, t): a ramp and the max pool above it, in a row; -> (y, cache).  # SPEC §2

    The two steps of the forward pass as a network takes them where a pool sits right
    above a ramp (``ramp pool``); a compiled backend applies σ as it reads each
    plane, without writing σ(h) out. The winners are those of σ(h): cells that the ramp
    saturates tie, and the first of them wins.
    """
    return maxpool_forward(ramp(h, slope), k, t)


def ramp_plus_maxpool_forward(h, a, k, t, slope=DEFAULT_SLOPE):
    """maxpool_forward(σ(h) + a, k, t): a sum block's output and the max pool above it, in a row; -> (y, cache).  # SPEC §2

    The forward pass as a network takes it where a pool sits right above a sum block
    (``sum[...] pool``, ``deep``): h is the block's second field, a the first ramp's
    output. A compiled backend forms σ(h) + a as it reads each plane, without writing
    it out. The pool's backward pass is ``maxpool_backward``'s, as after
    ``maxpool_forward``.
    """
    return maxpool_forward(ramp_plus(h, a, slope), k, t)


def maxpool_ramp_backward(dy, cache, h, slope=DEFAULT_SLOPE):
    """δ = (maxpool_backward of dy) ⊙ σ'(h): the error through a max pool and the ramp below it.  # SPEC §3

    ``h`` is the ramp's input. The two steps of the backward pass in a row, as a network
    takes them where a pool sits right above a ramp (``ramp pool``); a compiled
    backend does both in one pass over each plane.
    """
    return ramp_backward(maxpool_backward(dy, cache), h, slope)


def maxpool_ramp_backward_of_sum(e1, dy, cache, h, slope=DEFAULT_SLOPE):
    """δ = (e1 + maxpool_backward of dy) ⊙ σ'(h): a sum block's first ramp, with a max pool above the block.  # SPEC §3

    The error at a = σ(h), the block's first ramp, is the sum of two: ``e1``, the one
    that comes down through the block's second conv, and the error at the block's
    output a + b, which here comes down through the pool above (``dy`` at the pool's
    output). The steps in a row, as a network takes them for ``sum[...] pool``; a
    compiled backend does them in one pass over each plane, without writing the
    pool's error out.
    """
    return ramp_backward_of_sum(e1, maxpool_backward(dy, cache), h, slope)
