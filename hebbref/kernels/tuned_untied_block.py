"""TUNED TIER. An untied layer, the ramp above it and the max pool above that, as one step each way.  # SPEC §2, §3, §5

The first block of untied ``simple`` (``lc5:32 ramp pool3s2``), as a network takes it
when the three sit in a row (``hebbref.network``):

    forward:   h = W ⊛_untied x,  y = maxpool(σ(h))             locally_connected_ramp_maxpool_forward
    backward:  δ = (dy sent to the winners) ⊙ σ'(h),  G = Σ_n δ xᵀ   maxpool_ramp_locally_connected_backward

Three paths, which ``plan.choose`` times against each other (each forward pass with the
backward pass it implies):

``images-last``: every array between the three layers is laid out with the images
last, (C, H, W, N), so that each kernel runs along the images and none transposes h
or δ, the two largest arrays of the block (C_out·H·W numbers per image, four times
the pool's output). The pool marks the winners where the ramp saturates, so the
backward pass reads no h:

    xp = x padded, laid out batch last (C_in, Hp, Wp, N)         tuned_locally_connected._batch_last
    h_last = the untied sums, left images last                   tuned_locally_connected.forward_images_last
    y, winner = the pool of σ(h_last), along the images, y
        written out (N, C, Ho, Wo) channel by channel             tuned_pooling.ramp_maxpool_images_last
    dy_last = dy laid out images last                             tuned_locally_connected.batch_last
    G = Σ_n δ xpᵀ, each location's δ (the winners' errors ⊙ σ',
        along the images) formed as the increment reaches it         increment_from_winners

The layers' own h (the ramp's input) and δ (the untied layer's), in the (N, C, H, W)
layout of the rest of the library, are formed only when something asks for them (a
probe, a direct-feedback rule, the input error of a layer that is not the first):
the path returns them as functions of no arguments (δ by
``tuned_pooling.maxpool_ramp_backward_images_last``; it and ``increment_from_winners``
form each location's δ with one function, ``tuned_pooling.delta_at``).

``registers`` (``tuned_untied_registers``, float32): ``images-last`` with the sums held
in vector registers and ramped and pooled as they are formed, so that h is never
written; its cache is an ``ImagesLast`` without h (summed again when asked for), and its
backward pass is this module's.

``in-turn``: the tuned backend's own functions in a row (its untied forward pass and
increment, ``ramp_maxpool_forward``, ``maxpool_ramp_backward``), each by its own plan
(``plan._in_turn``).

``images-last`` and ``in-turn`` give the same y and the same winners; δ is the same to
the bit, and G agrees up to the order of the sums over the images. ``registers`` adds
each sum's terms in another order, so its y agrees with theirs to rounding (and its
winners, but where two cells of a window differ by no more than that).
"""
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from ..layers.conv import same_padding
from . import tuned_pooling
from .tuned_pooling import delta_at, windows_holding
from .tuned_conv_direct import FASTMATH, pad_spatial
from .tuned_locally_connected import (RUN_PAD, _batch_last, batch_last, batch_last_taps, forward_images_last,
                                      location_products)

# images per tile of the untied sums and increment, by default: the whole batch of 500 in one tile was
# the fastest of 128, 256 and 512 for untied simple's block on the 2-core Xeon of BENCHMARKS.md
# (bench_conv_paths.py --block); a measured plan (plan.BLOCKS) times the three on the machine it runs on
IMAGES_PER_TILE = 512


@dataclass(frozen=True)
class ImagesLast:
    """The cache of the ``images-last`` and ``registers`` paths: what their backward pass reads."""

    x_last: np.ndarray  # xp batch last, (C_in, Hp, Wp, N)
    h_last: np.ndarray  # the ramp's input, (C_out, H, W, N), kept for the ramp's h when asked for (None: summed again)
    winner: np.ndarray  # each window's winner, marked as ramp_maxpool_images_last marks it, (C_out, Ho, Wo, N)
    window: tuple  # (k, t, top, left) of the pool
    tile_size: int  # images per tile of the increment
    size: tuple  # (H, W) of the layer's output
    W: np.ndarray = None  # the layer's filters as of the forward pass, where h_last is None

    def h(self):
        """The ramp's input h, (N, C_out, H, W): kept, or summed again from xp and W."""
        if self.h_last is not None:
            return images_first(self.h_last)
        return images_first(forward_images_last(self.x_last, self.W, self.tile_size))


def images_first(a_last):
    """(C, H, W, N) -> (N, C, H, W), contiguous."""
    N = a_last.shape[-1]
    return batch_last(a_last.reshape(-1, N)).reshape((N,) + a_last.shape[:-1])


def images_last(a):
    """(N, C, H, W) -> (C, H, W, N), contiguous."""
    N = a.shape[0]
    return batch_last(np.ascontiguousarray(a).reshape(N, -1)).reshape(a.shape[1:] + (N,))


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def increment_from_winners(dy, winner, x_last, H, W, k, pool_k, t, top, left, s, tile_size, zero):
    """G[i,j,o,c,a,b] = Σ_n δ[n,o,i,j] xp[n,c,i+a,j+b], δ formed location by location from the pool's errors: -> (H, W, C_out, C_in, k, k).

    ``dy`` and ``winner`` with the images last, (C_out, Ho, Wo, N), ``winner`` as
    ``tuned_pooling.ramp_maxpool_images_last`` marks it; ``x_last`` is xp batch last.
    One parallel iteration per row i of locations, as in
    ``tuned_locally_connected.weight_increment_batch_last``. Tile by tile, each
    location's δ, every channel along the tile's images, is formed in ``d`` (C_out,
    images) from the windows that hold the location (at most ⌈k/t⌉² of them) by
    ``tuned_pooling.delta_at``, the function that forms the deferred δ
    (``maxpool_ramp_backward_images_last``), and ``location_products`` (as in
    ``row_products``) adds the location's increments, two channels at a time, while d
    is in cache. δ itself is never written out.
    """
    O, Ho, Wo, N = dy.shape
    C, Hp, Wp, _ = x_last.shape
    taps = batch_last_taps(C, Hp, Wp, k, N)
    x_flat = x_last.reshape(-1)
    T = C * k * k
    G = np.zeros((H, W, O, T), dtype=dy.dtype)
    for i in prange(H):
        d = np.empty((O, tile_size + RUN_PAD), dtype=dy.dtype)
        scratch = np.zeros(T, dtype=dy.dtype)  # the twin sums of an odd last channel, dropped
        rows = windows_holding(i, pool_k, t, top, Ho)
        for n0 in range(0, N, tile_size):
            L = min(tile_size, N - n0)
            for j in range(W):
                columns = windows_holding(j, pool_k, t, left, Wo)
                for c in range(O):
                    delta_at(dy, winner, c, i, j, W, rows, columns, n0, s, zero, d[c, :L])
                location_products(G, i, j, d.reshape(-1), d.shape[1], x_flat, taps, Wp, N, n0, L, scratch, zero)
    return G.reshape(H, W, O, C, k, k)


def forward_images_last_path(x, W, k, t, slope, tile_size=None):
    """The block's forward pass with the images last: -> (y, xp, h as a function, cache)."""
    x = np.ascontiguousarray(x)
    W = np.ascontiguousarray(W)
    tile_size = tile_size or IMAGES_PER_TILE
    before, after = same_padding(W.shape[-1])
    xp = pad_spatial(x, before, after)  # (N, C_in, H+k-1, W+k-1): the untied layer's cache, as on its own paths
    x_last = _batch_last(xp)
    h_last = forward_images_last(x_last, W, tile_size)
    top, left, Ho, Wo = tuned_pooling._windows(x, k, t)
    y, winner = tuned_pooling.ramp_maxpool_images_last(h_last, k, t, top, left, Ho, Wo, h_last.dtype.type(slope))
    cache = ImagesLast(x_last, h_last, winner, (k, t, top, left), tile_size, h_last.shape[1:3])
    return y, xp, cache.h, cache


def backward_images_last_path(dy, cache, slope):
    """The block's backward pass with the images last: -> (δ as a function, G)."""
    k, t, top, left = cache.window
    dtype = cache.x_last.dtype
    dy_last = images_last(np.asarray(dy, dtype=dtype))
    H, W = cache.size
    k_conv = cache.x_last.shape[1] - H + 1
    G = increment_from_winners(dy_last, cache.winner, cache.x_last, H, W, k_conv, k, t, top, left, dtype.type(slope),
                               cache.tile_size, dtype.type(0))

    def delta():  # formed only when read
        return images_first(tuned_pooling.maxpool_ramp_backward_images_last(dy_last, cache.winner, H, W, k, t, top,
                                                                            left, dtype.type(slope)))
    return delta, G
