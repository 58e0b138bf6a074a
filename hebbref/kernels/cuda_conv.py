"""Tied convolution, stride 1, "same" padding: numba.cuda kernels.  # SPEC §2, §3, §5

The equations of ``hebbref.layers.conv`` (xp is x zero-padded, p the padding before):

    h[n,o,i,j] = Σ_{c,a,b} W[o,c,a,b] xp[n,c,i+a,j+b]          conv_forward
    e[n,c,y,x] = Σ_{o,a,b} B[o,c,a,b] δ[n,o,y+p-a,x+p-b]        conv_input_error   (B = W or R)
    G[o,c,a,b] = Σ_{n,i,j} δ[n,o,i,j] xp[n,c,i+a,j+b]           conv_weight_increment

Layout of this module (as in stumpy): the kernels, then the host drivers (copy in,
launch, copy out), then the public functions with the reference's signatures. One GPU
thread per output element; the weight increment gives one thread to each (example,
filter tap) and adds the examples up with atomic adds. The input error is the forward
correlation of δ padded the other way round with B flipped and transposed, as in the
reference. Imported only when a GPU (or ``NUMBA_ENABLE_CUDASIM=1``) is there. The cache
is the padded input, kept on the host.
"""
import math

import numpy as np
from numba import cuda

from ..layers.conv import pad_spatial, same_padding

THREADS_PER_BLOCK = 128


# --- kernels ------------------------------------------------------------------------------
@cuda.jit
def correlate_valid_kernel(xp, W, h):
    """h[n,o,i,j] = Σ_{c,a,b} W[o,c,a,b] xp[n,c,i+a,j+b]; one thread per element of h."""
    N, O, H, Wd = h.shape
    C, k = W.shape[1], W.shape[2]
    t = cuda.grid(1)
    if t >= N * O * H * Wd:
        return
    j = t % Wd
    i = (t // Wd) % H
    o = (t // (Wd * H)) % O
    n = t // (Wd * H * O)
    acc = 0.0
    for c in range(C):
        for a in range(k):
            for b in range(k):
                acc += W[o, c, a, b] * xp[n, c, i + a, j + b]
    h[n, o, i, j] = acc


@cuda.jit
def weight_increment_kernel(delta, xp, G):
    """G[o,c,a,b] += Σ_{i,j} δ[n,o,i,j] xp[n,c,i+a,j+b]; one thread per (n, o, c, a, b)."""
    N, O, H, Wd = delta.shape
    C, k = G.shape[1], G.shape[2]
    t = cuda.grid(1)
    if t >= N * O * C * k * k:
        return
    b = t % k
    a = (t // k) % k
    c = (t // (k * k)) % C
    o = (t // (k * k * C)) % O
    n = t // (k * k * C * O)
    acc = 0.0
    for i in range(H):
        for j in range(Wd):
            acc += delta[n, o, i, j] * xp[n, c, i + a, j + b]
    cuda.atomic.add(G, (o, c, a, b), acc)


# --- host drivers -------------------------------------------------------------------------
def blocks_for(count):
    return max(1, math.ceil(count / THREADS_PER_BLOCK))


def correlate_valid_on_device(xp, W):
    """Valid correlation on the GPU: (N, C, Hp, Wp) with (O, C, k, k) -> (N, O, Hp-k+1, Wp-k+1)."""
    N, _, Hp, Wp = xp.shape
    O, _, k, _ = W.shape
    h = cuda.device_array((N, O, Hp - k + 1, Wp - k + 1), dtype=xp.dtype)
    correlate_valid_kernel[blocks_for(h.size), THREADS_PER_BLOCK](
        cuda.to_device(np.ascontiguousarray(xp)), cuda.to_device(np.ascontiguousarray(W)), h)
    return h.copy_to_host()


def weight_increment_on_device(delta, xp, k):
    N, O = delta.shape[:2]
    C = xp.shape[1]
    G = cuda.to_device(np.zeros((O, C, k, k), dtype=delta.dtype))
    weight_increment_kernel[blocks_for(N * O * C * k * k), THREADS_PER_BLOCK](
        cuda.to_device(np.ascontiguousarray(delta)), cuda.to_device(np.ascontiguousarray(xp)), G)
    return G.copy_to_host()


# --- public functions: the reference's signatures ------------------------------------------
def conv_forward(x, W):
    """h = W ⊛ x, "same" padding: (N, C_in, H, W) -> (N, C_out, H, W); cache = padded x."""
    before, after = same_padding(W.shape[-1])
    xp = pad_spatial(x, before, after)  # (N, C_in, H+k-1, W+k-1)
    return correlate_valid_on_device(xp, W), xp


def conv_input_error(delta, cache, B):
    """e_below = Bᵀ δ as a transposed convolution: (N, C_out, H, W) -> (N, C_in, H, W)."""
    before, after = same_padding(B.shape[-1])
    delta_p = pad_spatial(delta, after, before)  # padding mirrored
    B_transposed = B[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C_in, C_out, k, k)
    return correlate_valid_on_device(delta_p, B_transposed)


def conv_weight_increment(delta, cache):
    """G = Σ_{n,i,j} δ xᵀ, the increment summed over all positions: -> (C_out, C_in, k, k)."""
    xp = cache
    k = xp.shape[-1] - delta.shape[-1] + 1
    return weight_increment_on_device(delta, xp, k)
