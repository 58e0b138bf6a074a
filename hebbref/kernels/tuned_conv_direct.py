"""TUNED TIER. Tied convolution, stride 1, "same" padding, by direct loops: Numba CPU kernels.  # SPEC §2, §3, §5

The equations of ``hebbref.layers.conv`` (xp is x zero-padded, p the padding before):

    h[n,o,i,j] = Σ_{c,a,b} W[o,c,a,b] xp[n,c,i+a,j+b]          conv_forward
    e[n,c,y,x] = Σ_{o,a,b} B[o,c,a,b] δ[n,o,y+p-a,x+p-b]        conv_input_error   (B = W or R)
    G[o,c,a,b] = Σ_{n,i,j} δ[n,o,i,j] xp[n,c,i+a,j+b]           conv_weight_increment

The input error is the forward correlation of δ padded the other way round with B
flipped and its channel axes swapped (``readable.transposed_convolution``).

The loops are the readable tier's (``hebbref.kernels.readable``) reordered for speed:
``prange`` over the batch, the innermost loop running along the flattened image so
that it vectorises, and eight (or four) window terms and two output planes per pass
over the image (``add_terms``, ``add_products``: with eight, each loaded input value
serves 16 multiply-adds). These loops win when a sum has few terms (the first layer
on a grey or colour image); ``hebbref.kernels.plan.choose`` decides, per layer shape,
between them and the other paths, and between eight and four terms per pass, measured
like a block size: four won by far on a CPU with AVX2 alone, whose 16 vector registers
eight terms overfill. The untied kernels, which share ``add_terms`` and
``add_products``, take ``TERMS_PER_PASS``: eight where Numba compiles for AVX-512,
four elsewhere. Tested against the readable tier and the NumPy reference in
``tests/test_kernels_tuned.py``.

Shapes as in the reference: x (N, C_in, H, W); W, R (C_out, C_in, k, k); h, δ (N, C_out, H, W).
The cache of ``forward`` is the padded input xp (N, C_in, H+k-1, W+k-1) and the terms
per pass it took, which the weight increment takes too.
"""
import numba
import numpy as np
from numba import njit, prange

from ..layers.conv import same_padding
from .readable import transposed_convolution
from .tuned_simd import copy_run, wide_vector_registers, zero_run

# every fast-math flag except "no NaN" and "no inf": sums may be reassociated (vectorised)
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


@njit(cache=True)
def pad_plane(source, at, target, plane, H, W, before, after):
    """The H×W plane at source[at:] into target[plane:] zero-padded to (H+before+after)×(W+before+after), flat arrays.

    Only the border is zeroed: each cell is written once.
    """
    Wp = W + before + after
    zero_run(target, plane, before * Wp)
    zero_run(target, plane + (before + H) * Wp, after * Wp)
    for i in range(H):
        row = plane + (before + i) * Wp
        zero_run(target, row, before)
        copy_run(source, at + i * W, target, row + before, W)
        zero_run(target, row + before + W, after)


@njit(parallel=True, cache=True)
def pad_spatial(x, before, after):
    """Zero-pad the last two axes of (N, C, H, W): -> (N, C, H+before+after, W+before+after).

    The array is written once, not zeroed and then copied into, a plane at a time
    (``pad_plane``). The plane's loops are a function of their own rather than written in
    the parallel loop, where Numba's parallel passes spent most of the kernel's compile time
    on them: ``simple``'s first step with an empty cache took 55.3 s before and 53.8 s after,
    and the paths that pad ran no slower (BENCHMARKS.md, eleventh session).
    """
    N, C, H, W = x.shape
    Hp, Wp = H + before + after, W + before + after
    xp = np.empty((N, C, Hp, Wp), dtype=x.dtype)
    source = np.ascontiguousarray(x).reshape(-1)
    target = xp.reshape(-1)
    for n in prange(N):
        for c in range(C):
            pad_plane(source, (n * C + c) * H * W, target, (n * C + c) * Hp * Wp, H, W, before, after)
    return xp


@njit(cache=True)
def eight_terms(x, offsets, t, L):
    """Terms t to t+7 of a window over a flattened image: the views x[offsets[t+i] :][:L], i = 0..7."""
    return (x[offsets[t] : offsets[t] + L], x[offsets[t + 1] : offsets[t + 1] + L],
            x[offsets[t + 2] : offsets[t + 2] + L], x[offsets[t + 3] : offsets[t + 3] + L],
            x[offsets[t + 4] : offsets[t + 4] + L], x[offsets[t + 5] : offsets[t + 5] + L],
            x[offsets[t + 6] : offsets[t + 6] + L], x[offsets[t + 7] : offsets[t + 7] + L])


# inlined where it is called: as a call, each view it returns takes a reference to the array that
# every thread's views share, counted (atomically) on every pass; inlined, Numba drops the counts.
# On deep 2a, 2b and 3 the direct loops at four terms took 0.60 to 0.77 of their time as calls
# (BENCHMARKS.md, bench_conv_paths.py --against). eight_terms, inlined the same way, made the
# passes of eight terms slower on an AVX2 CPU (1.07 to 1.33 times), so it stays a call.
@njit(cache=True, inline="always")
def four_terms(x, offsets, t, L):
    """Terms t to t+3 of a window over a flattened image: the views x[offsets[t+i] :][:L], i = 0..3."""
    return (x[offsets[t] : offsets[t] + L], x[offsets[t + 1] : offsets[t + 1] + L],
            x[offsets[t + 2] : offsets[t + 2] + L], x[offsets[t + 3] : offsets[t + 3] + L])


# terms per pass of add_terms and add_products, by default: the untied kernels' only setting, and the
# direct conv paths' first candidate (the plan measures 8 and 4 for those, plan.BLOCKS). Eight need
# 16 vector registers for their factors or sums alone, which a CPU with AVX-512 has twice over and
# one with AVX2 only just: on an AMD EPYC with AVX2, four took 0.64 to 0.97 of the time of eight
# (BENCHMARKS.md, bench_conv_paths.py --against)
TERMS_PER_PASS = 8 if wide_vector_registers() else 4


@njit(cache=True, inline="always")
def paired(o, O):
    """The channel that goes with output channel o (even) in a pass over two planes: o + 1, or o if it is the last.

    ``add_terms`` and ``add_products`` make two planes per pass; with an odd number O of
    channels the last one is paired with itself, and its twin result is dropped.
    """
    return min(o + 1, O - 1)


@njit(cache=True, fastmath=FASTMATH)
def add_terms(p, q, x, offsets, w, v, L, width=TERMS_PER_PASS):
    """p += Σ_t w[t] x[offsets[t]:][:L] and q += Σ_t v[t] x[offsets[t]:][:L]: two output planes at once.

    ``width`` (8 or 4) terms per pass over the planes: with eight, each loaded x value
    serves 16 multiply-adds, against 3 memory operations per multiply-add when the
    terms are added one by one; four keep the factors and the loaded values in fewer
    registers. The last terms go four, then one at a time.
    """
    T = offsets.size
    t = 0
    while width >= 8 and t + 8 <= T:
        x0, x1, x2, x3, x4, x5, x6, x7 = eight_terms(x, offsets, t, L)
        w0, w1, w2, w3, w4, w5, w6, w7 = w[t], w[t + 1], w[t + 2], w[t + 3], w[t + 4], w[t + 5], w[t + 6], w[t + 7]
        v0, v1, v2, v3, v4, v5, v6, v7 = v[t], v[t + 1], v[t + 2], v[t + 3], v[t + 4], v[t + 5], v[t + 6], v[t + 7]
        for m in range(L):  # vectorised
            a0, a1, a2, a3, a4, a5, a6, a7 = x0[m], x1[m], x2[m], x3[m], x4[m], x5[m], x6[m], x7[m]
            p[m] += w0 * a0 + w1 * a1 + w2 * a2 + w3 * a3 + w4 * a4 + w5 * a5 + w6 * a6 + w7 * a7
            q[m] += v0 * a0 + v1 * a1 + v2 * a2 + v3 * a3 + v4 * a4 + v5 * a5 + v6 * a6 + v7 * a7
        t += 8
    while t + 4 <= T:
        x0, x1, x2, x3 = four_terms(x, offsets, t, L)
        w0, w1, w2, w3, v0, v1, v2, v3 = w[t], w[t + 1], w[t + 2], w[t + 3], v[t], v[t + 1], v[t + 2], v[t + 3]
        for m in range(L):  # vectorised
            a0, a1, a2, a3 = x0[m], x1[m], x2[m], x3[m]
            p[m] += w0 * a0 + w1 * a1 + w2 * a2 + w3 * a3
            q[m] += v0 * a0 + v1 * a1 + v2 * a2 + v3 * a3
        t += 4
    while t < T:  # the last T mod 4 terms, one per pass
        x0 = x[offsets[t] : offsets[t] + L]
        w0, v0 = w[t], v[t]
        for m in range(L):
            p[m] += w0 * x0[m]
            q[m] += v0 * x0[m]
        t += 1


@njit(cache=True, fastmath=FASTMATH)
def add_products(g, f, p, q, x, offsets, L, zero, width=TERMS_PER_PASS):
    """g[t] += p · x[offsets[t]:][:L] and f[t] += q · x[offsets[t]:][:L] for every term t: two planes at once.

    Sixteen dot products per pass with ``width`` 8 (eight terms, two planes), eight with
    4 (their sums then fit in half the registers): each loaded x value serves two. The
    last terms go four, then one at a time.
    """
    T = offsets.size
    t = 0
    while width >= 8 and t + 8 <= T:
        x0, x1, x2, x3, x4, x5, x6, x7 = eight_terms(x, offsets, t, L)
        g0 = g1 = g2 = g3 = g4 = g5 = g6 = g7 = zero
        f0 = f1 = f2 = f3 = f4 = f5 = f6 = f7 = zero
        for m in range(L):  # vectorised
            a, b = p[m], q[m]
            g0 += a * x0[m]
            g1 += a * x1[m]
            g2 += a * x2[m]
            g3 += a * x3[m]
            g4 += a * x4[m]
            g5 += a * x5[m]
            g6 += a * x6[m]
            g7 += a * x7[m]
            f0 += b * x0[m]
            f1 += b * x1[m]
            f2 += b * x2[m]
            f3 += b * x3[m]
            f4 += b * x4[m]
            f5 += b * x5[m]
            f6 += b * x6[m]
            f7 += b * x7[m]
        g[t], g[t + 1], g[t + 2], g[t + 3] = g[t] + g0, g[t + 1] + g1, g[t + 2] + g2, g[t + 3] + g3
        g[t + 4], g[t + 5], g[t + 6], g[t + 7] = g[t + 4] + g4, g[t + 5] + g5, g[t + 6] + g6, g[t + 7] + g7
        f[t], f[t + 1], f[t + 2], f[t + 3] = f[t] + f0, f[t + 1] + f1, f[t + 2] + f2, f[t + 3] + f3
        f[t + 4], f[t + 5], f[t + 6], f[t + 7] = f[t + 4] + f4, f[t + 5] + f5, f[t + 6] + f6, f[t + 7] + f7
        t += 8
    while t + 4 <= T:
        x0, x1, x2, x3 = four_terms(x, offsets, t, L)
        g0 = g1 = g2 = g3 = zero
        f0 = f1 = f2 = f3 = zero
        for m in range(L):  # vectorised
            a, b = p[m], q[m]
            g0 += a * x0[m]
            g1 += a * x1[m]
            g2 += a * x2[m]
            g3 += a * x3[m]
            f0 += b * x0[m]
            f1 += b * x1[m]
            f2 += b * x2[m]
            f3 += b * x3[m]
        g[t], g[t + 1], g[t + 2], g[t + 3] = g[t] + g0, g[t + 1] + g1, g[t + 2] + g2, g[t + 3] + g3
        f[t], f[t + 1], f[t + 2], f[t + 3] = f[t] + f0, f[t + 1] + f1, f[t + 2] + f2, f[t + 3] + f3
        t += 4
    while t < T:
        x0 = x[offsets[t] : offsets[t] + L]
        g0 = f0 = zero
        for m in range(L):
            g0 += p[m] * x0[m]
            f0 += q[m] * x0[m]
        g[t] += g0
        f[t] += f0
        t += 1


@njit(cache=True)
def tap_offsets(C, Hp, Wp, k):
    """Where term t = (c, a, b) of a window starts in one image's flattened padded planes."""
    offsets = np.empty(C * k * k, dtype=np.int64)
    for c in range(C):
        for a in range(k):
            for b in range(k):
                offsets[(c * k + a) * k + b] = c * Hp * Wp + a * Wp + b
    return offsets


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def correlate_valid_direct(xp, W, width=TERMS_PER_PASS):
    """Valid cross-correlation by loops: (N, C, Hp, Wp) with (O, C, k, k) -> (N, O, Hp-k+1, Wp-k+1).

    An output plane is kept with its rows Wp apart, as in xp, so that a term (c, a, b) of
    the window is one long shifted multiply-add over the flattened planes of the image
    (it vectorises with no short-row remainders); the Wp - W unused columns are dropped
    when copying out. Output planes are made two at a time (``add_terms``); with an odd
    number of outputs the last one is made twice (paired with itself).
    """
    N, C, Hp, Wp = xp.shape
    O, _, k, _ = W.shape
    H, Wd = Hp - k + 1, Wp - k + 1
    L = (H - 1) * Wp + Wd  # flat length that covers every output
    offsets = tap_offsets(C, Hp, Wp, k)
    x_flat = xp.reshape(N, C * Hp * Wp)
    w_flat = W.reshape(O, C * k * k)
    h = np.empty((N, O, H, Wd), dtype=xp.dtype)
    for n in prange(N):
        p = np.empty(L, dtype=xp.dtype)  # h[n, o] with rows Wp apart
        q = np.empty(L, dtype=xp.dtype)  # h[n, o + 1]
        for o in range(0, O, 2):
            o2 = paired(o, O)
            p[:] = 0
            q[:] = 0
            add_terms(p, q, x_flat[n], offsets, w_flat[o], w_flat[o2], L, width)
            for i in range(H):
                p_row, q_row = p[i * Wp : i * Wp + Wd], q[i * Wp : i * Wp + Wd]  # views: plain loads, no gather
                for j in range(Wd):
                    h[n, o, i, j] = p_row[j]
                    h[n, o2, i, j] = q_row[j]
    return h


@njit(cache=True, inline="always")
def copy_plane(plane, delta, n, o, stride):
    """δ[n, o] into ``plane`` with its rows ``stride`` apart; the gaps between the rows are left as they are (0)."""
    _, _, H, Wd = delta.shape
    for i in range(H):
        row = plane[i * stride : i * stride + Wd]  # a view: plain stores
        for j in range(Wd):
            row[j] = delta[n, o, i, j]


@njit(inline="always")
def planes_increment(form_plane, source, O, xp, k, chunks, zero, width):
    """G[o,c,a,b] = Σ_{n,i,j} δ[n,o,i,j] xp[n,c,i+a,j+b] by loops, each δ plane made by ``form_plane``: -> the threads'
    partial increments (chunks, O, C·k·k), which ``sum_of_parts`` adds up.

    ``form_plane(plane, source, n, o, Wp)`` writes δ[n, o] into ``plane`` with its rows
    Wp apart and 0 in the gaps (``copy_plane`` from δ itself; the conv block's
    ``plane_from_winners`` from the pool's errors), so that every term (c, a, b) is one long
    dot product with the shifted flattened planes of the image. The batch is cut into
    ``chunks`` pieces summed in parallel, then added up in NumPy; planes go two at a time
    (``add_products``; an odd last one is paired with itself and its twin sum dropped).
    ``zero`` is a 0 of the dtype to accumulate in.

    The loops are written once, here, and inlined into the two kernels that name their
    ``form_plane``: ``increment_of_planes`` below and the conv block's
    ``tuned_conv_block.increment_from_winners``. A compiled function that took
    ``form_plane`` as an argument could not be found again in Numba's disk cache: a
    function's type is named after its address in the process, so every new process
    compiled it again (about 6 s) and added one more copy to the cache.
    """
    N, C, Hp, Wp = xp.shape
    H = Hp - k + 1
    L = (H - 1) * Wp + Wp - k + 1  # flat length that covers every output, rows Wp apart
    offsets = tap_offsets(C, Hp, Wp, k)
    x_flat = xp.reshape(N, C * Hp * Wp)
    partial = np.zeros((chunks, O, C * k * k), dtype=xp.dtype)
    for part in prange(chunks):
        p = np.zeros(L, dtype=xp.dtype)  # δ[n, o] with rows Wp apart, 0 in the gaps
        q = np.zeros(L, dtype=xp.dtype)  # δ[n, o + 1]
        scratch = np.zeros(C * k * k, dtype=xp.dtype)
        for n in range(part * N // chunks, (part + 1) * N // chunks):
            for o in range(0, O, 2):
                o2 = paired(o, O)
                form_plane(p, source, n, o, Wp)
                form_plane(q, source, n, o2, Wp)
                f = partial[part, o2] if o2 != o else scratch  # the twin sum of an odd last plane is dropped
                add_products(partial[part, o], f, p, q, x_flat[n], offsets, L, zero, width)
    return partial


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def increment_of_planes(delta, xp, k, chunks, zero, width):
    """G's partial sums from δ (N, O, H, W) itself, each plane copied (``copy_plane``) into the loops of
    ``planes_increment``."""
    return planes_increment(copy_plane, delta, delta.shape[1], xp, k, chunks, zero, width)


def sum_of_parts(partial, k):
    """G (O, C, k, k) from the threads' partial increments (chunks, O, C·k·k) of ``planes_increment``: their sum.

    Taken in NumPy, after the kernel: a sum along an axis inside a kernel had Numba compile
    its general sum once per kernel and signature, about 2 s of a first step with an empty
    cache for the compiled kernels' sums together (BENCHMARKS.md, fourteenth session).
    """
    O, terms = partial.shape[1:]
    return partial.sum(axis=0).reshape(O, terms // (k * k), k, k)


def forward(x, W, width=None):
    """h = W ⊛ x, "same" padding: (N, C_in, H, W) -> (N, C_out, H, W); cache = (padded x, terms per pass)."""
    x, W = np.ascontiguousarray(x), np.ascontiguousarray(W)
    width = width or TERMS_PER_PASS
    before, after = same_padding(W.shape[-1])
    xp = pad_spatial(x, before, after)  # (N, C_in, H+k-1, W+k-1)
    return correlate_valid_direct(xp, W, width), (xp, width)


def input_error(delta, B, width=None):
    """e_below = Bᵀ δ, the transposed convolution: (N, C_out, H, W) -> (N, C_in, H, W)."""
    padding, B_flipped = transposed_convolution(B)
    delta_p = pad_spatial(np.ascontiguousarray(delta), *padding)  # (N, C_out, H+k-1, W+k-1)
    return correlate_valid_direct(delta_p, np.ascontiguousarray(B_flipped), width or TERMS_PER_PASS)


def weight_increment(delta, cache):
    """G = Σ_{n,i,j} δ xᵀ, summed over all positions: -> (C_out, C_in, k, k); cache = (xp, terms per pass) from ``forward``."""
    xp, width = cache
    delta = np.ascontiguousarray(delta, dtype=xp.dtype)  # one dtype, as on the other paths: G is summed in it
    k = xp.shape[-1] - delta.shape[-1] + 1
    chunks = min(delta.shape[0], numba.get_num_threads())
    return sum_of_parts(increment_of_planes(delta, xp, k, chunks, xp.dtype.type(0), width), k)
