"""Locally connected ("untied") layer: numba.cuda kernels.  # SPEC §5

The equations of ``hebbref.layers.locally_connected`` (xp is x zero-padded, p the padding before):

    h[n,o,i,j]     = Σ_{c,a,b} W[i,j,o,c,a,b] xp[n,c,i+a,j+b]                 locally_connected_forward
    e[n,c,y,x]     = Σ_{a,b,o} B[i,j,o,c,a,b] δ[n,o,i,j],  i = y+p-a, j = x+p-b  locally_connected_input_error
    G[i,j,o,c,a,b] = Σ_n δ[n,o,i,j] xp[n,c,i+a,j+b]                            locally_connected_weight_increment

Kernels, then host drivers, then the public functions. One GPU thread per output
element; the input error gathers (each input pixel sums what the locations that see
it send), so no thread writes where another does. Imported only when a GPU (or
``NUMBA_ENABLE_CUDASIM=1``) is there. The cache is the padded input, on the host.
"""
import numpy as np
from numba import cuda

from ..layers.conv import pad_spatial, same_padding
from .cuda_conv import THREADS_PER_BLOCK, blocks_for


# --- kernels ------------------------------------------------------------------------------
@cuda.jit
def forward_kernel(xp, W, h):
    """h[n,o,i,j] = Σ_{c,a,b} W[i,j,o,c,a,b] xp[n,c,i+a,j+b]; one thread per element of h."""
    N, O, H, Wd = h.shape
    C, k = W.shape[3], W.shape[4]
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
                acc += W[i, j, o, c, a, b] * xp[n, c, i + a, j + b]
    h[n, o, i, j] = acc


@cuda.jit
def input_error_kernel(delta, B, before, e):
    """e[n,c,y,x] = Σ over the locations (i, j) whose window holds (y, x); one thread per element of e."""
    N, C, H, Wd = e.shape
    O, k = B.shape[2], B.shape[4]
    t = cuda.grid(1)
    if t >= N * C * H * Wd:
        return
    x = t % Wd
    y = (t // Wd) % H
    c = (t // (Wd * H)) % C
    n = t // (Wd * H * C)
    acc = 0.0
    for a in range(k):
        i = y + before - a
        if 0 <= i < H:
            for b in range(k):
                j = x + before - b
                if 0 <= j < Wd:
                    for o in range(O):
                        acc += B[i, j, o, c, a, b] * delta[n, o, i, j]
    e[n, c, y, x] = acc


@cuda.jit
def weight_increment_kernel(delta, xp, G):
    """G[i,j,o,c,a,b] = Σ_n δ[n,o,i,j] xp[n,c,i+a,j+b]; one thread per element of G."""
    H, Wd, O, C, k, _ = G.shape
    N = delta.shape[0]
    t = cuda.grid(1)
    if t >= H * Wd * O * C * k * k:
        return
    b = t % k
    a = (t // k) % k
    c = (t // (k * k)) % C
    o = (t // (k * k * C)) % O
    j = (t // (k * k * C * O)) % Wd
    i = t // (k * k * C * O * Wd)
    acc = 0.0
    for n in range(N):
        acc += delta[n, o, i, j] * xp[n, c, i + a, j + b]
    G[i, j, o, c, a, b] = acc


# --- host drivers -------------------------------------------------------------------------
def on_device(*arrays):
    return [cuda.to_device(np.ascontiguousarray(a)) for a in arrays]


def forward_on_device(xp, W):
    H, Wd, O = W.shape[:3]
    h = cuda.device_array((xp.shape[0], O, H, Wd), dtype=xp.dtype)
    forward_kernel[blocks_for(h.size), THREADS_PER_BLOCK](*on_device(xp, W), h)
    return h.copy_to_host()


def input_error_on_device(delta, B):
    N = delta.shape[0]
    H, Wd, _, C, k, _ = B.shape
    e = cuda.device_array((N, C, H, Wd), dtype=delta.dtype)
    before, _ = same_padding(k)
    d_delta, d_B = on_device(delta, B)
    input_error_kernel[blocks_for(e.size), THREADS_PER_BLOCK](d_delta, d_B, before, e)
    return e.copy_to_host()


def weight_increment_on_device(delta, xp, k):
    N, O, H, Wd = delta.shape
    G = cuda.device_array((H, Wd, O, xp.shape[1], k, k), dtype=delta.dtype)
    weight_increment_kernel[blocks_for(G.size), THREADS_PER_BLOCK](*on_device(delta, xp), G)
    return G.copy_to_host()


# --- public functions: the reference's signatures ------------------------------------------
def locally_connected_forward(x, W):
    """h = W ⊛_untied x: (N, C_in, H, W) -> (N, C_out, H, W); cache = padded x."""
    before, after = same_padding(W.shape[-1])
    xp = pad_spatial(x, before, after)  # (N, C_in, H+k-1, W+k-1)
    return forward_on_device(xp, W), xp


def locally_connected_input_error(delta, cache, B):
    """e_below = Bᵀ δ location by location, gathered onto the input: -> (N, C_in, H, W)."""
    return input_error_on_device(delta, B)


def locally_connected_weight_increment(delta, cache):
    """G[i,j] = Σ_n δ[:, :, i, j] x_windowᵀ, one increment per location: -> (H, W, C_out, C_in, k, k)."""
    xp = cache
    k = xp.shape[-1] - delta.shape[-1] + 1
    return weight_increment_on_device(delta, xp, k)
