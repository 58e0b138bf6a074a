"""The readable tier: each equation of a layer as ONE plain loop body, compiled three ways.  # SPEC §2, §3, §5

A *body* computes one element of an output from its index, in plain Python that Numba
can compile for a CPU and for a GPU alike (the way minitorch and umap write kernels):

    conv_forward_at(n, o, i, j, xp, W)        h[n,o,i,j]      = Σ_{c,a,b} W[o,c,a,b] xp[n,c,i+a,j+b]
    conv_weight_increment_at(o, c, a, b, δ, xp)  G[o,c,a,b]   = Σ_{n,i,j} δ[n,o,i,j] xp[n,c,i+a,j+b]
    untied_forward_at(n, o, i, j, xp, W)      h[n,o,i,j]      = Σ_{c,a,b} W[i,j,o,c,a,b] xp[n,c,i+a,j+b]
    untied_input_error_at(n, c, y, x, δ, B)   e[n,c,y,x]      = Σ_{a,b,o} B[i,j,o,c,a,b] δ[n,o,i,j],
                                                                i = y+p-a, j = x+p-b
    untied_weight_increment_at(i, j, o, q, δ, xp)  G[i,j,o,c,a,b] = Σ_n δ[n,o,i,j] xp[n,c,i+a,j+b],
                                                                q = (c·k + a)·k + b
    maxpool_winner_at(n, c, u, v, x)          where the maximum of window (u, v) is (first in row-major order)
    maxpool_value_at(n, c, u, v, x, winner)   y[n,c,u,v] = x at that place
    maxpool_backward_at(n, c, y, x, dy, winner)  e[n,c,y,x] = Σ of dy over the windows that (y, x) won
    ramp_at(m, h), ramp_derivative_at(m, h), ramp_backward_at(m, e, h)   σ(h), σ'(h), e ⊙ σ'(h)

The conv input error has no body of its own: it is the forward body applied to δ padded
the other way round with B flipped in space and its channel axes swapped
(``transposed_convolution``, the composition the NumPy reference uses).

``compiled_three_ways(body)`` turns a body into

    .serial     ``njit``: the output's loops, one after another
    .parallel   ``njit(parallel=True)``: the same loops, the outermost one a ``prange``
    .cuda       a ``numba.cuda`` kernel, one GPU thread per output element, calling the
                body compiled as a device function (``readable_cuda.py``, built on first use)

each called as ``f(out, A, B, params)``: it fills ``out`` with body(index, A, B, params).
``params`` is a tuple of integers (the pooling window), ``(0,)`` when a body needs none;
the elementwise bodies of the ramp (``compiled_three_ways_flat``) take the slope s
instead. The sums of products run in float64 whatever the arrays' dtype; the result is
stored in the output's dtype. The compiled loops are built when first called and are not cached on
disk (Numba does not cache closures): a first call in a process compiles.

The public functions at the end have the signatures of the NumPy reference
(``hebbref.layers``, ``hebbref.activations``) plus ``how`` (``"serial"``,
``"parallel"``, ``"cuda"``). ``hebbref.backends`` uses them as the ``readable`` backend
(``how="parallel"``) and as the ``cuda`` backend (``how="cuda"``). They are what the
tuned tier (``hebbref.kernels.tuned``) is tested against, beside the NumPy reference.
Shapes as in the reference.
"""
import numpy as np
from numba import njit, prange

from ..activations import DEFAULT_SLOPE
from ..layers.conv import pad_spatial, same_padding
from ..layers.pooling import pool_padding

NO_PARAMS = (0,)
HOW = ("serial", "parallel", "cuda")


# --- the bodies: one output element each --------------------------------------------------
def conv_forward_at(n, o, i, j, xp, W, params):
    """h[n,o,i,j] = Σ_{c,a,b} W[o,c,a,b] xp[n,c,i+a,j+b]  (xp: x zero-padded).  # SPEC §2"""
    _, C, k, _ = W.shape
    total = 0.0
    for c in range(C):
        for a in range(k):
            for b in range(k):
                total += W[o, c, a, b] * xp[n, c, i + a, j + b]
    return total


def conv_weight_increment_at(o, c, a, b, delta, xp, params):
    """G[o,c,a,b] = Σ_{n,i,j} δ[n,o,i,j] xp[n,c,i+a,j+b].  # SPEC §3, §5"""
    N, _, H, Wd = delta.shape
    total = 0.0
    for n in range(N):
        for i in range(H):
            for j in range(Wd):
                total += delta[n, o, i, j] * xp[n, c, i + a, j + b]
    return total


def untied_forward_at(n, o, i, j, xp, W, params):
    """h[n,o,i,j] = Σ_{c,a,b} W[i,j,o,c,a,b] xp[n,c,i+a,j+b]: each location its own filter.  # SPEC §5"""
    C, k = W.shape[3], W.shape[4]
    total = 0.0
    for c in range(C):
        for a in range(k):
            for b in range(k):
                total += W[i, j, o, c, a, b] * xp[n, c, i + a, j + b]
    return total


def untied_input_error_at(n, c, y, x, delta, B, params):
    """e[n,c,y,x] = Σ_{a,b,o} B[i,j,o,c,a,b] δ[n,o,i,j] over the locations i = y+p-a, j = x+p-b that see (y, x).  # SPEC §5"""
    H, Wd, O, _, k, _ = B.shape
    p = (k - 1) // 2  # the padding before, as in hebbref.layers.conv.same_padding
    total = 0.0
    for a in range(k):
        i = y + p - a
        if 0 <= i < H:
            for b in range(k):
                j = x + p - b
                if 0 <= j < Wd:
                    for o in range(O):
                        total += B[i, j, o, c, a, b] * delta[n, o, i, j]
    return total


def untied_weight_increment_at(i, j, o, q, delta, xp, params):
    """G[i,j,o,c,a,b] = Σ_n δ[n,o,i,j] xp[n,c,i+a,j+b], with (c, a, b) flattened into q = (c·k + a)·k + b.  # SPEC §5"""
    k = params[0]
    c, a, b = q // (k * k), q // k % k, q % k
    total = 0.0
    for n in range(delta.shape[0]):
        total += delta[n, o, i, j] * xp[n, c, i + a, j + b]
    return total


def maxpool_winner_at(n, c, u, v, x, unused, params):
    """Flat index r·W + s in the plane of the largest x in window (u, v); the first one on ties.  # SPEC §2

    params = (k, t, top, left): window, stride and padding before (hebbref.layers.pooling);
    the window is clipped to the image, so padding never wins.
    """
    k, t, top, left = params[0], params[1], params[2], params[3]
    _, _, H, W = x.shape
    r0, r1 = max(u * t - top, 0), min(u * t - top + k, H)
    s0, s1 = max(v * t - left, 0), min(v * t - left + k, W)
    best, where = x[n, c, r0, s0], r0 * W + s0
    for r in range(r0, r1):
        for s in range(s0, s1):
            if x[n, c, r, s] > best:  # strictly larger: the first maximum wins
                best, where = x[n, c, r, s], r * W + s
    return where


def maxpool_value_at(n, c, u, v, x, winner, params):
    """y[n,c,u,v] = x at the winner of window (u, v).  # SPEC §2"""
    W = x.shape[3]
    where = winner[n, c, u, v]
    return x[n, c, where // W, where % W]


def maxpool_backward_at(n, c, y, x, dy, winner, params):
    """e[n,c,y,x] = Σ dy[n,c,u,v] over the windows (u, v) that hold (y, x) and whose winner it is.  # SPEC §3

    params = (k, t, top, left, W) with W the input's width. Window u covers rows
    u·t - top ... u·t - top + k - 1, so the windows over row y are ceil((y+top-k+1)/t) ... floor((y+top)/t).
    """
    k, t, top, left, W = params[0], params[1], params[2], params[3], params[4]
    _, _, Ho, Wo = dy.shape
    total = 0.0
    for u in range(max(0, -((k - 1 - y - top) // t)), min(Ho, (y + top) // t + 1)):
        for v in range(max(0, -((k - 1 - x - left) // t)), min(Wo, (x + left) // t + 1)):
            if winner[n, c, u, v] == y * W + x:
                total += dy[n, c, u, v]
    return total


def ramp_at(m, h, unused, s):
    """σ(h) = clip(s·h, -1, 1), at flat position m.  # SPEC §2"""
    return min(max(s * h[m], -1), 1)


def ramp_derivative_at(m, h, unused, s):
    """σ'(h) = s where |s·h| <= 1, else 0.  # SPEC §3"""
    return s if abs(s * h[m]) <= 1 else 0


def ramp_backward_at(m, e, h, s):
    """δ = e ⊙ σ'(h), without forming σ'(h).  # SPEC §3"""
    return e[m] * s if abs(s * h[m]) <= 1 else 0


# --- compiling a body three ways ----------------------------------------------------------
class compiled_three_ways:
    """A body of four indices compiled as serial loops, parallel loops and a CUDA kernel.

    Each fills ``out`` (4-d) with ``body(p, q, r, s, A, B, params)`` at every index.
    """

    def __init__(self, body):
        self.body = body
        at = njit(body)

        @njit
        def serial(out, A, B, params):
            P, Q, R, S = out.shape
            for p in range(P):
                for q in range(Q):
                    for r in range(R):
                        for s in range(S):
                            out[p, q, r, s] = at(p, q, r, s, A, B, params)

        @njit(parallel=True)
        def parallel(out, A, B, params):
            P, Q, R, S = out.shape
            for p in prange(P):  # the only change: the outer loop is shared by the threads
                for q in range(Q):
                    for r in range(R):
                        for s in range(S):
                            out[p, q, r, s] = at(p, q, r, s, A, B, params)

        self.serial, self.parallel, self._cuda = serial, parallel, None

    @property
    def cuda(self):
        """The CUDA kernel (``readable_cuda.kernel_for``), built on first use: numba.cuda is imported only then."""
        if self._cuda is None:
            from . import readable_cuda

            self._cuda = readable_cuda.kernel_for(self.body)
        return self._cuda


class compiled_three_ways_flat(compiled_three_ways):
    """The same for a body of one flat index, ``body(m, A, B, s)`` with a scalar s: elementwise maps."""

    def __init__(self, body):
        self.body = body
        at = njit(body)

        @njit
        def serial(out, A, B, s):
            for m in range(out.size):
                out[m] = at(m, A, B, s)

        @njit(parallel=True)
        def parallel(out, A, B, s):
            for m in prange(out.size):
                out[m] = at(m, A, B, s)

        self.serial, self.parallel, self._cuda = serial, parallel, None

    @property
    def cuda(self):
        if self._cuda is None:
            from . import readable_cuda

            self._cuda = readable_cuda.flat_kernel_for(self.body)
        return self._cuda


CONV_FORWARD = compiled_three_ways(conv_forward_at)
CONV_WEIGHT_INCREMENT = compiled_three_ways(conv_weight_increment_at)
UNTIED_FORWARD = compiled_three_ways(untied_forward_at)
UNTIED_INPUT_ERROR = compiled_three_ways(untied_input_error_at)
UNTIED_WEIGHT_INCREMENT = compiled_three_ways(untied_weight_increment_at)
MAXPOOL_WINNER = compiled_three_ways(maxpool_winner_at)
MAXPOOL_VALUE = compiled_three_ways(maxpool_value_at)
MAXPOOL_BACKWARD = compiled_three_ways(maxpool_backward_at)
RAMP = compiled_three_ways_flat(ramp_at)
RAMP_DERIVATIVE = compiled_three_ways_flat(ramp_derivative_at)
RAMP_BACKWARD = compiled_three_ways_flat(ramp_backward_at)


def row_major(A):
    """A with the plain row-major strides of its shape: A itself if it has them, else a copy.

    ``np.ascontiguousarray`` is not enough: NumPy calls an array contiguous whatever the
    strides of its axes of length 1, and a reversed axis of length 1 (B flipped in space
    when k = 1) keeps a negative one, which numba.cuda cannot copy to the GPU.
    """
    A = np.ascontiguousarray(A)
    plain, step = [], A.itemsize
    for length in reversed(A.shape):
        plain.insert(0, step)
        step *= length
    return A if A.strides == tuple(plain) else A.copy()


def run(compiled, how, shape, dtype, A, B, params=NO_PARAMS):
    """A new array of ``shape`` and ``dtype`` filled by ``compiled`` run ``how``; NumPy in, NumPy out."""
    A, B = row_major(A), row_major(B)
    if how == "cuda":
        from .readable_cuda import run_on_device

        return run_on_device(compiled.cuda, shape, dtype, A, B, params)
    if how not in HOW:
        raise ValueError(f"how must be one of {HOW}, not {how!r}")
    out = np.empty(shape, dtype=dtype)
    getattr(compiled, how)(out, A, B, params)
    return out


# --- the transposed convolution, composed once ---------------------------------------------
def transposed_convolution(B):
    """The input error e = Bᵀ δ as a "same" correlation, in the NumPy reference's terms.  # SPEC §3

    e[n,c,y,x] = Σ_{o,a,b} B[o,c,a,b] δ[n,o,y+p-a,x+p-b] is the forward correlation of δ
    padded the other way round (``after`` zeros before, ``before`` after) with B flipped
    in space and its two channel axes swapped. Returns ((before, after) for δ, B_flipped
    (C_in, C_out, k, k)); every kernel of hebbref that computes the input error as a
    correlation takes its operands from here.
    """
    before, after = same_padding(B.shape[-1])
    return (after, before), B[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C_in, C_out, k, k)


# --- public functions: the reference's signatures, plus how -------------------------------
def conv_forward(x, W, how="parallel"):
    """h = W ⊛ x, "same" padding: (N, C_in, H, W) -> (N, C_out, H, W); cache = padded x."""
    N, _, H, Wd = x.shape
    before, after = same_padding(W.shape[-1])
    xp = pad_spatial(x, before, after)  # (N, C_in, H+k-1, W+k-1)
    return run(CONV_FORWARD, how, (N, W.shape[0], H, Wd), np.result_type(x, W), xp, W), xp


def conv_input_error(delta, cache, B, how="parallel"):
    """e_below = Bᵀ δ, the transposed convolution: (N, C_out, H, W) -> (N, C_in, H, W)."""
    N, _, H, Wd = delta.shape
    padding, B_flipped = transposed_convolution(B)
    delta_p = pad_spatial(delta, *padding)  # (N, C_out, H+k-1, W+k-1)
    return run(CONV_FORWARD, how, (N, B.shape[1], H, Wd), np.result_type(delta, B), delta_p, B_flipped)


def conv_weight_increment(delta, cache, how="parallel"):
    """G = Σ_{n,i,j} δ xᵀ: -> (C_out, C_in, k, k)."""
    xp = cache
    k = xp.shape[-1] - delta.shape[-1] + 1
    shape = (delta.shape[1], xp.shape[1], k, k)
    return run(CONV_WEIGHT_INCREMENT, how, shape, np.result_type(delta, xp), delta, xp)


def locally_connected_forward(x, W, how="parallel"):
    """h = W ⊛_untied x: (N, C_in, H, W) -> (N, C_out, H, W); cache = padded x."""
    H, Wd, C_out, _, k, _ = W.shape
    before, after = same_padding(k)
    xp = pad_spatial(x, before, after)  # (N, C_in, H+k-1, W+k-1)
    return run(UNTIED_FORWARD, how, (x.shape[0], C_out, H, Wd), np.result_type(x, W), xp, W), xp


def locally_connected_input_error(delta, cache, B, how="parallel"):
    """e_below = Bᵀ δ location by location, gathered onto the input: -> (N, C_in, H, W)."""
    N, _, H, Wd = delta.shape
    return run(UNTIED_INPUT_ERROR, how, (N, B.shape[3], H, Wd), np.result_type(delta, B), delta, B)


def locally_connected_weight_increment(delta, cache, how="parallel"):
    """G[i,j] = Σ_n δ[:, :, i, j] x_windowᵀ: -> (H, W, C_out, C_in, k, k)."""
    xp = cache
    N, C_out, H, Wd = delta.shape
    C_in, k = xp.shape[1], xp.shape[-1] - Wd + 1
    G = run(UNTIED_WEIGHT_INCREMENT, how, (H, Wd, C_out, C_in * k * k), np.result_type(delta, xp), delta, xp, (k,))
    return G.reshape(H, Wd, C_out, C_in, k, k)


def maxpool_forward(x, k, t, how="parallel"):
    """y = max over each k×k window at stride t: (N, C, H, W) -> (N, C, Ho, Wo); cache = (winners, (H, W))."""
    N, C, H, W = x.shape
    top, _, Ho = pool_padding(H, k, t)
    left, _, Wo = pool_padding(W, k, t)
    winner = run(MAXPOOL_WINNER, how, (N, C, Ho, Wo), np.int64, x, x, (k, t, top, left))
    y = run(MAXPOOL_VALUE, how, (N, C, Ho, Wo), x.dtype, x, winner)
    return y, (winner, (k, t, top, left, W), H)


def maxpool_backward(dy, cache, how="parallel"):
    """Route each window's error to its maximum: (N, C, Ho, Wo) -> (N, C, H, W)."""
    winner, params, H = cache
    N, C = dy.shape[:2]
    return run(MAXPOOL_BACKWARD, how, (N, C, H, params[-1]), dy.dtype, dy, winner, params)


def _elementwise(compiled, how, A, B, slope):
    A = np.ascontiguousarray(A)
    s = A.dtype.type(slope)  # s·h in the dtype of h, as the reference computes it
    return run(compiled, how, (A.size,), A.dtype, A.reshape(-1), np.ascontiguousarray(B).reshape(-1), s).reshape(A.shape)


def ramp(h, slope=DEFAULT_SLOPE, how="parallel"):
    """σ(h) = clip(s·h, -1, 1).  # SPEC §2"""
    return _elementwise(RAMP, how, h, h, slope)


def ramp_derivative(h, slope=DEFAULT_SLOPE, how="parallel"):
    """σ'(h) = s where |s·h| <= 1, else 0.  # SPEC §3"""
    return _elementwise(RAMP_DERIVATIVE, how, h, h, slope)


def ramp_backward(e, h, slope=DEFAULT_SLOPE, how="parallel"):
    """δ = e ⊙ σ'(h) in one pass.  # SPEC §3"""
    e = np.ascontiguousarray(e, dtype=np.result_type(e, h))
    return _elementwise(RAMP_BACKWARD, how, e, h, slope)
