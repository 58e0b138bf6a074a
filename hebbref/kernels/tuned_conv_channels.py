"""TUNED TIER. Tied convolution, stride 1, "same" padding, by blocks of output channels summed in vector registers.  # SPEC §2, §3, §5

The equations of ``hebbref.layers.conv`` (xp is x zero-padded, p the padding before):

    h[n,o,i,j] = Σ_{c,a,b} W[o,c,a,b] xp[n,c,i+a,j+b]          conv_forward
    e[n,c,y,x] = Σ_{o,a,b} B[o,c,a,b] δ[n,o,y+p-a,x+p-b]        conv_input_error   (B = W or R)
    G[o,c,a,b] = Σ_{n,i,j} δ[n,o,i,j] xp[n,c,i+a,j+b]           conv_weight_increment

``tuned_conv_rows`` runs its vectors along a row of the image, and wastes most of their
lanes on a narrow image (11 or 6 wide in ``deep``'s later blocks). Here the vectors run
along the output channels instead, which a layer has many of, so no lane is wasted
whatever the image's size:

**Forward pass and input error** (``correlate_channels``). Eight output positions
(i, j) at once, for a block of ``BLOCK`` = 2·LANES output channels: 16 vectors of sums in
registers (``tuned_simd``). A window term t = (c, a, b) loads the two vectors of weights
W[o..o+BLOCK, t] (laid out with the channels last beforehand, ``weights_by_block``) and
adds them times each of the eight inputs xp[n, c, i+a, j+b] of the positions, each read
once and broadcast (``add_term``): 16 fused multiply-adds for two loads and eight
broadcasts. The positions are taken in the order of the output, i·W + j, in blocks of
eight; a last, short block repeats its last position. The sums land in a buffer with the
channels last, which is written out with the channels first after each block of channels.

**Weight increment** (``increment_channels``). For eight window terms and a block of
output channels, 16 vectors of sums over all positions of an image: each position adds
δ[n, o..o+BLOCK, i, j] (δ copied with the channels last first) times the eight inputs
xp[n, c, i+a, j+b] of the terms. Each thread adds its images' sums into partial sums of
its own, added up at the end.

**Six at a time.** Eight positions or terms hold 16 sums, two vectors of the block and a
broadcast input: 19 vector registers. AVX-512 has 32; AVX2 has 16, and there LLVM keeps
sums on the stack, a store and a load in every step (``benchmarks/find_gathers.py``).
The loops of one image and one block of channels (``correlate_group``, ``increment_group``)
are therefore built twice from one body, for eight and for six (12 sums, 15 registers),
``span`` a constant of each build; ``SPAN``, the default, is 8 with AVX-512 and 6 without,
and the plan times both (``plan.BLOCKS``). The parallel kernels over the images take
``span`` at run time and call the build for it, so each is built once.

**The conv block** (``conv ramp pool``, ``tuned_conv_block``'s "channels" path) runs the same
loops: ``pool_of_correlation`` keeps one image's sums in a buffer with the channels last,
a row per position, and pools σ of them from there (the layout ``tuned_pooling``'s window
walk takes), so h is never written; ``increment_from_winners`` forms each image's δ in the
increment's layout straight from the pool's errors and winners. Each kernel is one image's
loop for one block of channels (``correlate_group``, ``increment_group``, written once) run by
a parallel kernel over the images and blocks; the two increments share that
kernel too (``increment_over_images``), each naming how it forms an image's δ.

The input error is the forward correlation of δ padded the other way round with B
flipped and its channel axes swapped (``readable.transposed_convolution``). Each thread
takes a contiguous run of images and copies each into a padded buffer of its own
(``tuned_conv_rows.copy_padded``). Output channels past the last whole block compute
with zero weights (or zero δ) and are not written.

float32 only (``plan.DTYPES``). Shapes as in the reference: x (N, C_in, H, W); W, R
(C_out, C_in, k, k); h, δ (N, C_out, H, W). The cache of ``forward`` is (x, k, span). Tested
against the readable tier and the NumPy reference in ``tests/test_conv_rows.py``.
"""
import numpy as np
from numba import literally, njit, prange

from ..layers.conv import same_padding
from .readable import transposed_convolution
from .tuned_conv_rows import add_into, aligned_zeros, copy_padded, runs_per_thread
from .tuned_pooling import pool_image_of_runs
from .tuned_simd import LANES, turn_over, vfma, vload, vsplat_at, vstore, vzero

BLOCK = 2 * LANES  # output channels per block: two vectors
# output positions (forward pass, input error) or window terms (increment) per pass, by default: eight take
# 16 vectors of sums and, with the block's two vectors and a broadcast input, 19 registers, which a CPU with
# AVX-512 has (32) and one with AVX2 has not (16: LLVM keeps sums on the stack); six take 15. The plan
# measures both (plan.BLOCKS)
SPAN = 8 if LANES == 16 else 6


def weights_by_block(W):
    """W (O, C, k, k) -> flat (⌈O/BLOCK⌉, C·k·k, BLOCK): a term's weights of a block of channels together (zeros past O)."""
    O, C, k, _ = W.shape
    groups = -(-O // BLOCK)
    padded = np.zeros((groups * BLOCK, C * k * k), np.float32)
    padded[:O] = W.reshape(O, -1)
    return np.ascontiguousarray(padded.reshape(groups, BLOCK, C * k * k).transpose(0, 2, 1)).reshape(-1)


@njit(cache=True)
def positions(H, W, Wp, span):
    """The index i·Wp + j in a padded plane of every output (i, j), in the output's order, in whole blocks of ``span`` (the
    last position repeated)."""
    P = H * W
    Pq = -(-P // span) * span
    q = np.empty(Pq, np.int64)
    for p in range(Pq):
        r = min(p, P - 1)
        q[p] = (r // W) * Wp + r % W
    return q


@njit(cache=True)
def term_offsets(C, k, plane, Wp, count):
    """offsets[(c·k + a)·k + b] = c·plane + a·Wp + b, the start of term (c, a, b) in a padded image; ``count`` ≥ C·k·k entries,
    the extra ones 0."""
    offsets = np.zeros(count, np.int64)
    for c in range(C):
        for a in range(k):
            for b in range(k):
                offsets[(c * k + a) * k + b] = c * plane + a * Wp + b
    return offsets


@njit(cache=True, inline="always")
def add_term(xb, at, v0, v1, s, t):
    """One input xb[at], broadcast, times the two vectors of a block: -> s + xb[at]·v0, t + xb[at]·v1."""
    e = vsplat_at(xb, at)
    return vfma(e, v0, s), vfma(e, v1, t)


@njit(cache=True)
def correlate_group(xb, weights, wg, T, offs, q, Pq, out, at0, stride, span):
    """One image (padded, in ``xb``), one block of channels (its weights from ``wg``): the sums at position p
    into out[at0 + p·stride : … + BLOCK], for the Pq positions (whole passes of ``span``).

    ``literally(span)`` has Numba compile the body once for each span (8 or 6) with ``span`` a
    constant, so each build keeps only its own lines. It is called, not inlined: inlined, it was
    typed and lowered again in each kernel that runs it, and ``simple``'s first step with an
    empty cache took 59.6 s (f7b0801) against 55.3 s called (cf55ffa), the kernels no faster
    (BENCHMARKS.md, eleventh session). The parallel kernels call it through ``correlate_block``,
    which picks the build for the span they are given. It is a module function, not a closure: a
    kernel that called a closure's compiled function could not be found again in Numba's disk
    cache (that function's type is named after its address in the process)."""
    literally(span)
    for p in range(0, Pq, span):
        q0 = q[p]; q1 = q[p + 1]; q2 = q[p + 2]; q3 = q[p + 3]; q4 = q[p + 4]  # noqa: E702
        q5 = q[p + 5]; q6 = q[p + span - 2]; q7 = q[p + span - 1]  # noqa: E702 (q6, q7 read by span 8 only)
        s0 = vzero(); s1 = vzero(); s2 = vzero(); s3 = vzero()  # noqa: E702
        s4 = vzero(); s5 = vzero(); s6 = vzero(); s7 = vzero()  # noqa: E702
        t0 = vzero(); t1 = vzero(); t2 = vzero(); t3 = vzero()  # noqa: E702
        t4 = vzero(); t5 = vzero(); t6 = vzero(); t7 = vzero()  # noqa: E702
        for t in range(T):
            w0 = vload(weights, wg + t * BLOCK)
            w1 = vload(weights, wg + t * BLOCK + LANES)
            o = offs[t]
            s0, t0 = add_term(xb, o + q0, w0, w1, s0, t0)
            s1, t1 = add_term(xb, o + q1, w0, w1, s1, t1)
            s2, t2 = add_term(xb, o + q2, w0, w1, s2, t2)
            s3, t3 = add_term(xb, o + q3, w0, w1, s3, t3)
            s4, t4 = add_term(xb, o + q4, w0, w1, s4, t4)
            s5, t5 = add_term(xb, o + q5, w0, w1, s5, t5)
            if span == 8:
                s6, t6 = add_term(xb, o + q6, w0, w1, s6, t6)
                s7, t7 = add_term(xb, o + q7, w0, w1, s7, t7)
        at = at0 + p * stride
        vstore(out, at, s0); vstore(out, at + LANES, t0); at += stride  # noqa: E702
        vstore(out, at, s1); vstore(out, at + LANES, t1); at += stride  # noqa: E702
        vstore(out, at, s2); vstore(out, at + LANES, t2); at += stride  # noqa: E702
        vstore(out, at, s3); vstore(out, at + LANES, t3); at += stride  # noqa: E702
        vstore(out, at, s4); vstore(out, at + LANES, t4); at += stride  # noqa: E702
        vstore(out, at, s5); vstore(out, at + LANES, t5); at += stride  # noqa: E702
        if span == 8:
            vstore(out, at, s6); vstore(out, at + LANES, t6); at += stride  # noqa: E702
            vstore(out, at, s7); vstore(out, at + LANES, t7)  # noqa: E702


@njit(cache=True)
def increment_group(xb, ds, Oq, g, Tq, offs, q, P, Pp, span):
    """One image (padded, in ``xb``; its δ with the channels last, Oq apart, in ``ds``), one block of channels
    g: each window term's sums over the P positions added into the partial sums Pp[t·Oq + g·BLOCK …]."""
    literally(span)
    for t in range(0, Tq, span):
        o0 = offs[t]; o1 = offs[t + 1]; o2 = offs[t + 2]; o3 = offs[t + 3]  # noqa: E702
        o4 = offs[t + 4]; o5 = offs[t + 5]  # noqa: E702
        o6 = offs[t + span - 2]; o7 = offs[t + span - 1]  # noqa: E702 (read by span 8 only)
        s0 = vzero(); s1 = vzero(); s2 = vzero(); s3 = vzero()  # noqa: E702
        s4 = vzero(); s5 = vzero(); s6 = vzero(); s7 = vzero()  # noqa: E702
        t0 = vzero(); t1 = vzero(); t2 = vzero(); t3 = vzero()  # noqa: E702
        t4 = vzero(); t5 = vzero(); t6 = vzero(); t7 = vzero()  # noqa: E702
        for p in range(P):
            d0 = vload(ds, p * Oq + g * BLOCK)
            d1 = vload(ds, p * Oq + g * BLOCK + LANES)
            r = q[p]
            s0, t0 = add_term(xb, o0 + r, d0, d1, s0, t0)
            s1, t1 = add_term(xb, o1 + r, d0, d1, s1, t1)
            s2, t2 = add_term(xb, o2 + r, d0, d1, s2, t2)
            s3, t3 = add_term(xb, o3 + r, d0, d1, s3, t3)
            s4, t4 = add_term(xb, o4 + r, d0, d1, s4, t4)
            s5, t5 = add_term(xb, o5 + r, d0, d1, s5, t5)
            if span == 8:
                s6, t6 = add_term(xb, o6 + r, d0, d1, s6, t6)
                s7, t7 = add_term(xb, o7 + r, d0, d1, s7, t7)
        at = t * Oq + g * BLOCK  # (term t, channel g·BLOCK) in the partial sums
        add_into(Pp, at, s0); add_into(Pp, at + LANES, t0); at += Oq  # noqa: E702
        add_into(Pp, at, s1); add_into(Pp, at + LANES, t1); at += Oq  # noqa: E702
        add_into(Pp, at, s2); add_into(Pp, at + LANES, t2); at += Oq  # noqa: E702
        add_into(Pp, at, s3); add_into(Pp, at + LANES, t3); at += Oq  # noqa: E702
        add_into(Pp, at, s4); add_into(Pp, at + LANES, t4); at += Oq  # noqa: E702
        add_into(Pp, at, s5); add_into(Pp, at + LANES, t5); at += Oq  # noqa: E702
        if span == 8:
            add_into(Pp, at, s6); add_into(Pp, at + LANES, t6); at += Oq  # noqa: E702
            add_into(Pp, at, s7); add_into(Pp, at + LANES, t7)  # noqa: E702


@njit(inline="always")
def increment_over_images(form_delta, source, x, k, before, O, H, W, chunks, span):
    """G[o,c,a,b] = Σ_{n,i,j} δ[n,o,i,j] xp[n,c,i+a,j+b]: the loops of both channel increments, each image's δ
    formed by ``form_delta(ds, source, n, O, Oq, P)`` -> the threads' partial sums (chunks, Tq·Oq) float32, which
    ``sum_of_parts`` adds up and lays out as G (O, C, k, k).

    ``ds`` holds δ[n] with the channels last, a row of Oq per position (the channels past O
    stay 0), and one spare row P that the sums never read (``delta_of_winners`` adds the
    errors of saturated winners there). Each thread takes a run of ``chunks`` images into
    partial sums of its own, added up at the end. Inlined into the two kernels that name
    their ``form_delta`` (``delta_turned_over`` and ``delta_of_winners``), as
    ``tuned_conv_direct.planes_increment`` is: a cached kernel that took the function as an
    argument would be compiled again in every process.
    """
    N, C = x.shape[0], x.shape[1]
    Hp, Wp = H + k - 1, W + k - 1
    plane = Hp * Wp
    P = H * W
    q = positions(H, W, Wp, span)
    T = C * k * k
    Tq = -(-T // span) * span
    offs = term_offsets(C, k, plane, Wp, Tq)  # the terms past T read the image's first cell; their sums are dropped
    groups = -(-O // BLOCK)
    Oq = groups * BLOCK
    partial = np.zeros((chunks, Tq * Oq), dtype=np.float32)
    for part in prange(chunks):
        xb = np.zeros(C * plane + Wp, dtype=np.float32)
        ds = aligned_zeros((P + 1) * Oq)
        Pp = partial[part]
        for n in range(part * N // chunks, (part + 1) * N // chunks):
            copy_padded(x, n, before, Hp, Wp, xb)
            form_delta(ds, source, n, O, Oq, P)
            for g in range(groups):
                if span == 8:  # the build of the one-image loop for the span given
                    increment_group(xb, ds, Oq, g, Tq, offs, q, P, Pp, 8)
                else:
                    increment_group(xb, ds, Oq, g, Tq, offs, q, P, Pp, 6)
    return partial


@njit(cache=True, inline="always")
def delta_turned_over(ds, delta_flat, n, O, Oq, P):
    """δ[n], (O, P) in the flat δ, into ``ds`` as (P, Oq): the channels last."""
    turn_over(delta_flat, n * O * P, P, ds, 0, Oq, O, P)


@njit(cache=True, inline="always")
def delta_of_winners(ds, source, n, O, Oq, P):
    """δ[n] into ``ds`` as (P, Oq) from the pool's errors and marked winners, ``source`` = (errors, marks, s), both
    (N, O, Ho·Wo): each window's error added at its winner, windows in order, then every cell times s, as
    ``tuned_conv_block.delta_plane`` forms a plane.

    A winner that saturates the ramp (a negative mark) adds its error to the spare row P,
    which the sums never read: every error is added somewhere, with no branch (a branch on
    the mark's sign, mispredicted wherever live and saturated winners mix, cost about as
    much as the increment's loops: BENCHMARKS.md, tenth session).
    """
    errors, marks, s = source
    ds[:] = 0
    for o in range(O):
        for m in range(errors.shape[2]):
            cell = marks[n, o, m]
            row = cell if cell >= 0 else P
            ds[row * Oq + o] += errors[n, o, m]
    for i in range(P * Oq):
        ds[i] *= s


@njit(inline="always")
def correlate_block(xb, weights, wg, T, offs, q, Pq, out, at0, stride, span):
    """``correlate_group`` for a span given at run time: its build for eight positions, or for six."""
    if span == 8:
        correlate_group(xb, weights, wg, T, offs, q, Pq, out, at0, stride, 8)
    else:
        correlate_group(xb, weights, wg, T, offs, q, Pq, out, at0, stride, 6)


@njit(inline="always")
def image_layout(C, H, W, k, span):
    """A padded image as both correlations read it: -> (Hp, Wp, plane, q, T, offs), its height, row length and
    size, every output position's index in whole passes of ``span`` (``positions``), and the number of window
    terms and their offsets (``term_offsets``), for C channels of H×W padded for a k×k kernel."""
    Hp, Wp = H + k - 1, W + k - 1
    plane = Hp * Wp
    T = C * k * k
    return Hp, Wp, plane, positions(H, W, Wp, span), T, term_offsets(C, k, plane, Wp, T)


@njit(parallel=True, cache=True)
def correlate_channels(x, weights, O, k, before, chunks, span):
    """out[n,o,i,j] = Σ_{c,a,b} W[o,c,a,b] xp[n,c,i+a,j+b]: (N, C, H, W) -> (N, O, H, W) float32.

    xp is x zero-padded by ``before`` at the top and left and k - 1 - before at the bottom
    and right; ``weights`` is ``weights_by_block(W)``; ``chunks`` runs of images, one per thread.
    """
    N, C, H, W = x.shape
    Hp, Wp, plane, q, T, offs = image_layout(C, H, W, k, span)
    Pq = q.size
    P = H * W
    groups = -(-O // BLOCK)
    out = np.empty((N, O, H, W), dtype=np.float32)
    flat = out.reshape(-1)
    for part in prange(chunks):
        xb = np.zeros(C * plane + Wp, dtype=np.float32)
        ob = aligned_zeros(Pq * BLOCK)
        for n in range(part * N // chunks, (part + 1) * N // chunks):
            copy_padded(x, n, before, Hp, Wp, xb)
            for g in range(groups):
                correlate_block(xb, weights, g * T * BLOCK, T, offs, q, Pq, ob, 0, BLOCK, span)
                # the block's planes out: ob (positions, BLOCK channels) turned over
                turn_over(ob, 0, BLOCK, flat, (n * O + g * BLOCK) * P, P, P, min(BLOCK, O - g * BLOCK))
    return out


@njit(parallel=True, cache=True)
def increment_channels(delta, x, k, before, chunks, span):
    """G[o,c,a,b] = Σ_{n,i,j} δ[n,o,i,j] xp[n,c,i+a,j+b], xp padded as in ``correlate_channels``: -> the threads'
    partial sums (``sum_of_parts`` adds them up); each image's δ turned over (``delta_turned_over``)."""
    N, O, H, W = delta.shape
    return increment_over_images(delta_turned_over, delta.reshape(-1), x, k, before, O, H, W, chunks, span)


@njit(parallel=True, cache=True)
def pool_of_correlation(x, weights, O, kc, before, k, t, top, left, Ho, Wo, s, chunks, span):
    """The conv block's forward pass: y = the max of σ(h) over each k×k window at stride t, h as
    ``correlate_channels`` makes it, image by image: -> y, winner (N, O, Ho, Wo).

    Each image's sums land in ``cells`` (P, Oq), a row per position of its O channels
    (the layout the pool takes: ``tuned_pooling.pool_image_of_runs``), pooled at once;
    h is not written. ``winner`` marks each window's winner as
    ``tuned_conv_block.conv_ramp_maxpool_direct`` does: its flat index r·W + q where σ'(h) = s,
    -1 - r·W - q where the ramp saturates. ``kc`` is the conv's kernel width, ``top`` and
    ``left`` the pool's padding before the image.
    """
    N, C, H, W = x.shape
    Hp, Wp, plane, q, T, offs = image_layout(C, H, W, kc, span)
    Pq = q.size
    groups = -(-O // BLOCK)
    Oq = groups * BLOCK
    y = np.empty((N, O, Ho * Wo), dtype=np.float32)
    winner = np.empty((N, O, Ho * Wo), dtype=np.int32)
    for part in prange(chunks):
        xb = np.zeros(C * plane + Wp, dtype=np.float32)
        cells = np.empty((Pq, Oq), dtype=np.float32)  # h[n], a row of its channels per position
        flat = cells.reshape(-1)
        best = np.empty(O, dtype=np.float32)
        where = np.empty(O, dtype=np.int32)
        for n in range(part * N // chunks, (part + 1) * N // chunks):
            copy_padded(x, n, before, Hp, Wp, xb)
            for g in range(groups):
                correlate_block(xb, weights, g * T * BLOCK, T, offs, q, Pq, flat, g * BLOCK, Oq, span)
            pool_image_of_runs(y[n], winner[n], O, best, where, cells, H, W, top, left, Ho, Wo, k, t, s, True)
    return y.reshape(N, O, Ho, Wo), winner.reshape(N, O, Ho, Wo)


@njit(parallel=True, cache=True)
def increment_from_winners(errors, marks, H, W, s, x, k, before, chunks, span):
    """The conv block's increment: G's partial sums as ``increment_channels`` makes them, each image's δ formed
    from the pool's errors and marked winners, both (N, O, Ho·Wo) (``delta_of_winners``)."""
    return increment_over_images(delta_of_winners, (errors, marks, s), x, k, before, errors.shape[1], H, W,
                                 chunks, span)


def span_given(span):
    """``span``, or ``SPAN`` where it is None: 8 or 6, the spans the one-image loops are built for (any other would
    have the parallel kernels read past their arrays)."""
    span = span or SPAN
    if span not in (8, 6):
        raise ValueError(f"the channel kernels sum 8 or 6 positions or terms at a time, not {span}")
    return span


def sum_of_parts(partial, O, C, k):
    """G (O, C, k, k) from the threads' partial sums (chunks, Tq·Oq) of ``increment_over_images``: their sum, in NumPy
    (as ``tuned_conv_direct.sum_of_parts``), the terms past C·k·k and the channels past O dropped."""
    Oq = -(-O // BLOCK) * BLOCK
    G = partial.sum(axis=0).reshape(-1, Oq)[:C * k * k, :O]
    return np.ascontiguousarray(G.T).reshape(O, C, k, k)


def forward(x, W, span=None):
    """h = W ⊛ x, "same" padding: (N, C_in, H, W) -> (N, C_out, H, W); cache = (x, k, span).

    ``span``: output positions summed at a time, 8 or 6 (default ``SPAN``); the weight increment
    that reads the cache sums as many window terms at a time.
    """
    x = np.ascontiguousarray(x)
    k = W.shape[-1]
    span = span_given(span)
    before, _ = same_padding(k)
    return correlate_channels(x, weights_by_block(W), W.shape[0], k, before, runs_per_thread(x.shape[0]), span), (x, k, span)


def input_error(delta, B, span=None):
    """e_below = Bᵀ δ, the transposed convolution: (N, C_out, H, W) -> (N, C_in, H, W)."""
    (before, _), B_flipped = transposed_convolution(B)
    return correlate_channels(np.ascontiguousarray(delta), weights_by_block(B_flipped), B.shape[1], B.shape[-1], before,
                              runs_per_thread(delta.shape[0]), span_given(span))


def weight_increment(delta, cache):
    """G = Σ_{n,i,j} δ xᵀ, summed over all positions: -> (C_out, C_in, k, k); cache = (x, k, span) from
    ``forward``."""
    return increment_from_input(delta, *cache)


def increment_from_input(delta, x, k, span=None):
    """G = Σ_{n,i,j} δ xᵀ from the input x itself, ``span`` window terms at a time (default ``SPAN``)."""
    span = span_given(span)
    delta = np.ascontiguousarray(delta, dtype=np.float32)
    before, _ = same_padding(k)
    return sum_of_parts(increment_channels(delta, x, k, before, runs_per_thread(x.shape[0]), span), delta.shape[1],
                        x.shape[1], k)
