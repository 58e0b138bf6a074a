"""TUNED TIER. Max pooling with "same" padding: Numba CPU kernels.  # SPEC §2, §3

The equations of ``hebbref.layers.pooling``: window k×k, stride t, output ceil(n/t)
wide, TensorFlow's padding (padded cells never win). Each window's error goes to its
maximum, the first one in row-major order when there are ties; a cell that wins
several overlapping windows receives the sum of their errors.

    y[n,c,u,v] = max_{a,b} x[n,c,u·t+a-top, v·t+b-left]          maxpool_forward
    e[n,c,winner(u,v)] += dy[n,c,u,v]                            maxpool_backward

One plane (n, c) per parallel iteration, so the backward scatter has no races.
Shapes: x (N, C, H, W) -> y (N, C, Ho, Wo); the cache holds the winners' flat
indices inside their (H, W) plane, (N, C, Ho, Wo) int32, and (H, W).
"""
import numpy as np
from numba import njit, prange

from ..layers.pooling import pool_padding


@njit(parallel=True, cache=True)
def maxpool_windows(x, k, t, top, left, Ho, Wo):
    """The maximum of each window and where it is: -> y (N, C, Ho, Wo), winner (N, C, Ho, Wo).

    Each window is first clipped to the image, so the loops over it test nothing else.
    """
    N, C, H, W = x.shape
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    winner = np.empty((N, C, Ho, Wo), dtype=np.int32)
    for p in prange(N * C):
        n, c = p // C, p % C
        plane, y_plane, winner_plane = x[n, c], y[n, c], winner[n, c]
        for u in range(Ho):
            r0, r1 = max(u * t - top, 0), min(u * t - top + k, H)  # the window's rows inside the image
            for v in range(Wo):
                s0, s1 = max(v * t - left, 0), min(v * t - left + k, W)
                best = plane[r0, s0]
                where = r0 * W + s0
                for r in range(r0, r1):
                    for s in range(s0, s1):
                        if plane[r, s] > best:  # strictly larger: the first maximum wins
                            best = plane[r, s]
                            where = r * W + s
                y_plane[u, v] = best
                winner_plane[u, v] = where
    return y, winner


@njit(parallel=True, cache=True)
def scatter_to_winners(dy, winner, H, W):
    """e[n,c,winner] += dy[n,c,u,v]: (N, C, Ho, Wo) -> (N, C, H, W).

    Planes flattened: a winner's flat index addresses its cell directly, with no division
    into row and column (two integer divisions per window cost more than the rest).
    """
    N, C, Ho, Wo = dy.shape
    e = np.empty((N * C, H * W), dtype=dy.dtype)
    dy_rows, winner_rows = dy.reshape(N * C, Ho * Wo), winner.reshape(N * C, Ho * Wo)
    for p in prange(N * C):
        plane = e[p]
        for m in range(H * W):  # zeroed plane by plane, while it is in cache
            plane[m] = 0
        for m in range(Ho * Wo):
            plane[winner_rows[p, m]] += dy_rows[p, m]
    return e.reshape(N, C, H, W)


def maxpool_forward(x, k, t):
    """y = max over each k×k window at stride t: (N, C, H, W) -> (N, C, Ho, Wo); cache = winners."""
    H, W = x.shape[2:]
    top, _, Ho = pool_padding(H, k, t)
    left, _, Wo = pool_padding(W, k, t)
    y, winner = maxpool_windows(np.ascontiguousarray(x), k, t, top, left, Ho, Wo)
    return y, (winner, (H, W))


def maxpool_backward(dy, cache):
    """Route each window's error to its maximum: (N, C, Ho, Wo) -> (N, C, H, W)."""
    winner, (H, W) = cache
    return scatter_to_winners(np.ascontiguousarray(dy), winner, H, W)
