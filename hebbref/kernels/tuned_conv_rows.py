"""TUNED TIER. Tied convolution, stride 1, "same" padding, by rows of sums held in vector registers.  # SPEC §2, §3, §5

The equations of ``hebbref.layers.conv`` (xp is x zero-padded, p the padding before):

    h[n,o,i,j] = Σ_{c,a,b} W[o,c,a,b] xp[n,c,i+a,j+b]          conv_forward
    e[n,c,y,x] = Σ_{o,a,b} B[o,c,a,b] δ[n,o,y+p-a,x+p-b]        conv_input_error   (B = W or R)
    G[o,c,a,b] = Σ_{n,i,j} δ[n,o,i,j] xp[n,c,i+a,j+b]           conv_weight_increment

The input error is the forward correlation of δ padded the other way round with B
flipped and its channel axes swapped (``readable.transposed_convolution``).

**Forward pass and input error** (``correlate_group_rows``, run over the images by
``correlate_images``). A piece of an output row, two vectors long (``SPAN`` = 2·LANES
positions j), for eight output channels at once: 16
vectors of sums, each a local ``tuned_simd.f32v`` value, so they stay in registers while
every term (c, a, b) of the window is added. A term loads the two vectors of the padded
input row it reads, xp[n, c, i+a, j+b : j+b+SPAN], and adds each times the eight
weights W[o..o+7, c, a, b] (laid out next to each other beforehand, ``weights_by_group``):
16 fused multiply-adds for two loads and eight broadcasts. Sixteen sums fill the
registers of a CPU with AVX2 alone, so there the sums go four channels at a time; the
plan measures both (``group``). The sums are written once, at the end. Where the row is not a whole number of pieces the last piece's extra lanes
are computed and dropped; where the output channels are not a multiple of the group the
missing ones have zero weights and are not written.

**Weight increment** (``increment_group_rows``, run over the images by
``increment_images``). For three window terms (c, a, b..b+2; any past k are computed and
dropped) and eight output channels (four with the forward
pass's ``group`` of four), 24 (12) vectors of partial sums over all positions of an image: each vector of a row adds
δ[n, o, i, j..] ⊙ xp[n, c, i+a, j+b..] for the eight o and the three b, each δ and
input vector loaded once; the lanes of a vector hold sums over different j, added up
at the end. δ is copied row by row into a buffer whose rows are whole vectors long with
zeros past the image, so the extra lanes add nothing.

**Eight or four.** The loops of one image and one group of output channels are written
once (``correlate_group_rows``, ``increment_group_rows``) and built twice, for eight and for
four output channels at a time, ``group`` a constant of each build: the lines of the
channels past the fourth are compiled only into the build of eight. The parallel kernels
over the images (``correlate_images``, ``increment_images``) take ``group`` at run time and
call the build for it, so each is built once.

**Padding.** Each thread takes a contiguous run of images. It copies each image into a
padded buffer of its own (zeroed once; only the inside is rewritten), so no padded copy
of the batch is made. The buffer has a margin of ``SPAN`` + its row length after it, for
the whole vectors that the last pieces read past the last row. Each row goes in by
``tuned_simd.copy_run`` (unsigned indices, plain vector moves), as do δ's rows into the
increment's buffer: a slice assignment per row cost more than the row's numbers.

float32 only (``plan.DTYPES``). Shapes as in the reference: x (N, C_in, H, W); W, R
(C_out, C_in, k, k); h, δ (N, C_out, H, W). The cache of ``forward`` is (x, k, group).
Tested against the readable tier and the NumPy reference in ``tests/test_conv_rows.py``.
"""
import numba
import numpy as np
from numba import literally, njit, prange

from ..layers.conv import same_padding
from .readable import transposed_convolution
from .tuned_conv_direct import sum_of_parts
from .tuned_simd import LANES, address_of, copy_run, vfma, vload, vsplat, vsplat_at, vstore, vzero

SPAN = 2 * LANES  # output positions per piece of a row
# output channels per group of the forward pass and the input error, by default: eight take 16 vector
# registers for their sums, which a CPU with AVX-512 has twice over and one with AVX2 has no more
# of (four there: 8 sums). The plan measures both (plan.BLOCKS)
CHANNELS_PER_GROUP = 8 if LANES == 16 else 4


def weights_by_group(W, group):
    """W (O, C, k, k) -> flat (⌈O/group⌉, C, k, k, group): each term's weights of ``group`` output channels together.

    The output channels past O (up to a multiple of ``group``) get zero weights.
    """
    O, C, k, _ = W.shape
    groups = -(-O // group)
    padded = np.zeros((groups * group, C, k, k), dtype=np.float32)
    padded[:O] = W
    return np.ascontiguousarray(padded.reshape(groups, group, C, k, k).transpose(0, 2, 3, 4, 1)).reshape(-1)


@njit(cache=True)
def copy_padded(x, n, before, Hp, Wp, buffer):
    """The inside of the padded image n: buffer[c·Hp·Wp + (i+before)·Wp + before + j] = x[n, c, i, j]."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    source = x.reshape(-1)
    for c in range(C):
        for i in range(H):
            copy_run(source, ((n * C + c) * H + i) * W, buffer, c * Hp * Wp + (i + before) * Wp + before, W)


@njit(cache=True)
def store_sums(out, at, step, count, length, s0, s1, t0, t1, u0, u1, v0, v1, w0, w1, y0, y1, z0, z1, r0, r1, piece):
    """Write ``count`` (≤ 8) rows of sums, ``step`` apart from ``at``, each ``length`` (≤ SPAN) long: a partial piece."""
    sums = ((s0, s1), (t0, t1), (u0, u1), (v0, v1), (w0, w1), (y0, y1), (z0, z1), (r0, r1))
    for q in range(count):
        vstore(piece, 0, sums[q][0])
        vstore(piece, LANES, sums[q][1])
        out[at + q * step : at + q * step + length] = piece[:length]


@njit(cache=True)
def correlate_group_rows(xb, weights, flat, piece, n, g, O, C, H, W, k, plane, Wp, group):
    """One image (padded, in ``xb``), one group g of ``group`` output channels: its rows of sums, piece by piece,
    into the flat output (N, O, H, W).

    ``literally(group)`` has Numba compile the body once for each group (8 or 4) with ``group`` a
    constant, so the build of four keeps none of the lines of the channels past the fourth. The
    parallel kernel (``correlate_images``) calls the build for the group it is given, once per
    image and group: it is built once, where it was built once per group with the loops inside.
    """
    literally(group)
    step = H * W  # from one output plane to the next
    o = group * g
    count = min(group, O - o)
    for i in range(H):
        for j in range(0, W, SPAN):
            s0 = vzero(); t0 = vzero(); u0 = vzero(); v0 = vzero()  # noqa: E702
            w0 = vzero(); y0 = vzero(); z0 = vzero(); r0 = vzero()  # noqa: E702
            s1 = vzero(); t1 = vzero(); u1 = vzero(); v1 = vzero()  # noqa: E702
            w1 = vzero(); y1 = vzero(); z1 = vzero(); r1 = vzero()  # noqa: E702
            for c in range(C):
                for a in range(k):
                    row = c * plane + (i + a) * Wp + j
                    term = ((g * C + c) * k + a) * k * group
                    for b in range(k):
                        x0 = vload(xb, row + b)
                        x1 = vload(xb, row + b + LANES)
                        f = vsplat_at(weights, term); s0 = vfma(f, x0, s0); s1 = vfma(f, x1, s1)  # noqa
                        f = vsplat_at(weights, term + 1); t0 = vfma(f, x0, t0); t1 = vfma(f, x1, t1)  # noqa
                        f = vsplat_at(weights, term + 2); u0 = vfma(f, x0, u0); u1 = vfma(f, x1, u1)  # noqa
                        f = vsplat_at(weights, term + 3); v0 = vfma(f, x0, v0); v1 = vfma(f, x1, v1)  # noqa
                        if group == 8:
                            f = vsplat_at(weights, term + 4); w0 = vfma(f, x0, w0); w1 = vfma(f, x1, w1)  # noqa
                            f = vsplat_at(weights, term + 5); y0 = vfma(f, x0, y0); y1 = vfma(f, x1, y1)  # noqa
                            f = vsplat_at(weights, term + 6); z0 = vfma(f, x0, z0); z1 = vfma(f, x1, z1)  # noqa
                            f = vsplat_at(weights, term + 7); r0 = vfma(f, x0, r0); r1 = vfma(f, x1, r1)  # noqa
                        term += group
            at = ((n * O + o) * H + i) * W + j
            if count == group and j + SPAN <= W:
                vstore(flat, at, s0); vstore(flat, at + LANES, s1); at += step  # noqa: E702
                vstore(flat, at, t0); vstore(flat, at + LANES, t1); at += step  # noqa: E702
                vstore(flat, at, u0); vstore(flat, at + LANES, u1); at += step  # noqa: E702
                vstore(flat, at, v0); vstore(flat, at + LANES, v1); at += step  # noqa: E702
                if group == 8:
                    vstore(flat, at, w0); vstore(flat, at + LANES, w1); at += step  # noqa: E702
                    vstore(flat, at, y0); vstore(flat, at + LANES, y1); at += step  # noqa: E702
                    vstore(flat, at, z0); vstore(flat, at + LANES, z1); at += step  # noqa: E702
                    vstore(flat, at, r0); vstore(flat, at + LANES, r1)  # noqa: E702
            else:  # with a group of four, the last four pairs (zeros) are never written: count ≤ 4
                store_sums(flat, at, step, count, min(SPAN, W - j),
                           s0, s1, t0, t1, u0, u1, v0, v1, w0, w1, y0, y1, z0, z1, r0, r1, piece)


@njit(cache=True)
def increment_group_rows(xb, db, P, o, C, H, Wq, Wp, k, plane, e, group):
    """One image (padded, in ``xb``; its δ rows ``Wq`` long, planes ``e`` apart, in ``db``), the ``group`` output
    channels from o: each (o, c, a, b)'s vector of sums over the image added into the partial sums ``P``.

    ``literally(group)``, as in ``correlate_group_rows``; called by ``increment_images``.
    """
    literally(group)
    for c in range(C):
        for a in range(k):
            for b in range(0, k, 3):
                s0 = vzero(); s1 = vzero(); s2 = vzero(); s3 = vzero()  # noqa: E702
                s4 = vzero(); s5 = vzero(); s6 = vzero(); s7 = vzero()  # noqa: E702
                t0 = vzero(); t1 = vzero(); t2 = vzero(); t3 = vzero()  # noqa: E702
                t4 = vzero(); t5 = vzero(); t6 = vzero(); t7 = vzero()  # noqa: E702
                u0 = vzero(); u1 = vzero(); u2 = vzero(); u3 = vzero()  # noqa: E702
                u4 = vzero(); u5 = vzero(); u6 = vzero(); u7 = vzero()  # noqa: E702
                for i in range(H):
                    xr = c * plane + (i + a) * Wp + b
                    dr = o * e + i * Wq
                    for j in range(0, Wq, LANES):
                        x0 = vload(xb, xr + j)
                        x1 = vload(xb, xr + j + 1)
                        x2 = vload(xb, xr + j + 2)
                        d = vload(db, dr + j)
                        s0 = vfma(d, x0, s0); t0 = vfma(d, x1, t0); u0 = vfma(d, x2, u0)  # noqa: E702
                        d = vload(db, dr + j + e)
                        s1 = vfma(d, x0, s1); t1 = vfma(d, x1, t1); u1 = vfma(d, x2, u1)  # noqa: E702
                        d = vload(db, dr + j + 2 * e)
                        s2 = vfma(d, x0, s2); t2 = vfma(d, x1, t2); u2 = vfma(d, x2, u2)  # noqa: E702
                        d = vload(db, dr + j + 3 * e)
                        s3 = vfma(d, x0, s3); t3 = vfma(d, x1, t3); u3 = vfma(d, x2, u3)  # noqa: E702
                        if group == 8:
                            d = vload(db, dr + j + 4 * e)
                            s4 = vfma(d, x0, s4); t4 = vfma(d, x1, t4); u4 = vfma(d, x2, u4)  # noqa
                            d = vload(db, dr + j + 5 * e)
                            s5 = vfma(d, x0, s5); t5 = vfma(d, x1, t5); u5 = vfma(d, x2, u5)  # noqa
                            d = vload(db, dr + j + 6 * e)
                            s6 = vfma(d, x0, s6); t6 = vfma(d, x1, t6); u6 = vfma(d, x2, u6)  # noqa
                            d = vload(db, dr + j + 7 * e)
                            s7 = vfma(d, x0, s7); t7 = vfma(d, x1, t7); u7 = vfma(d, x2, u7)  # noqa
                at = ((o * C + c) * k * k + a * k + b) * LANES  # (o, c, a, b) in P
                jump = C * k * k * LANES  # from one o to the next
                add_sums(P, at, jump, s0, s1, s2, s3)
                if group == 8:
                    add_sums(P, at + 4 * jump, jump, s4, s5, s6, s7)
                if b + 1 < k:
                    add_sums(P, at + LANES, jump, t0, t1, t2, t3)
                    if group == 8:
                        add_sums(P, at + LANES + 4 * jump, jump, t4, t5, t6, t7)
                if b + 2 < k:
                    add_sums(P, at + 2 * LANES, jump, u0, u1, u2, u3)
                    if group == 8:
                        add_sums(P, at + 2 * LANES + 4 * jump, jump, u4, u5, u6, u7)


@njit(parallel=True, cache=True)
def correlate_images(x, weights, O, k, before, chunks, group):
    """out[n,o,i,j] = Σ_{c,a,b} W[o,c,a,b] xp[n,c,i+a,j+b]: (N, C, H, W) -> (N, O, H, W) float32, ``group`` (8 or 4)
    o at a time (2·group vectors of sums, ``correlate_group_rows``).

    xp is x zero-padded by ``before`` at the top and left and k - 1 - before at the bottom
    and right; ``weights`` is ``weights_by_group(W, group)``. The batch is cut into ``chunks``
    runs of images, one per thread.
    """
    N, C, H, W = x.shape
    Hp, Wp = H + k - 1, W + k - 1
    plane = Hp * Wp
    groups = -(-O // group)
    out = np.empty((N, O, H, W), dtype=np.float32)
    flat = out.reshape(-1)
    for part in prange(chunks):
        xb = np.zeros(C * plane + SPAN + Wp, dtype=np.float32)
        piece = np.empty(SPAN, dtype=np.float32)
        for n in range(part * N // chunks, (part + 1) * N // chunks):
            copy_padded(x, n, before, Hp, Wp, xb)
            for g in range(groups):
                if group == 8:  # the build of the group's loops for the group given
                    correlate_group_rows(xb, weights, flat, piece, n, g, O, C, H, W, k, plane, Wp, 8)
                else:
                    correlate_group_rows(xb, weights, flat, piece, n, g, O, C, H, W, k, plane, Wp, 4)
    return out


@njit(parallel=True, cache=True)
def increment_images(delta, x, k, before, chunks, group):
    """G[o,c,a,b] = Σ_{n,i,j} δ[n,o,i,j] xp[n,c,i+a,j+b], xp padded as in ``correlate_images``: -> the threads'
    partial sums (chunks, Og·C·k·k) float32, which ``increment_from_input`` adds up.

    ``group`` (8 or 4) output channels and three window columns b at a time (3·group vectors of
    sums, ``increment_group_rows``). Each of the ``chunks`` threads sums its run of images into
    partial sums of its own, one vector per (o, c, a, b), and then adds each vector's lanes up
    (``lanes_added``); the threads' sums are added up after the kernel, in NumPy.

    A step holds the three input vectors and takes the δ vectors one at a time: with a group of
    four, 12 sums, 3 input vectors and a δ vector fill the 16 vector registers of a CPU with
    AVX2 alone. Holding the four δ vectors instead (17 registers), LLVM kept one sum on the
    stack, stored and loaded again at every step (``benchmarks/find_gathers.py`` counts such
    loops). A group of eight takes 28 registers: a CPU with AVX-512 has 32.
    """
    N, O, H, W = delta.shape
    C = x.shape[1]
    delta_flat = delta.reshape(-1)
    Hp, Wp = H + k - 1, W + k - 1
    plane = Hp * Wp
    Wq = -(-W // LANES) * LANES  # a row of the δ buffer: whole vectors, zeros past W
    e = H * Wq + LANES  # from one δ plane to the next (one vector more: planes 4 KiB apart would share L1 sets)
    Og = -(-O // group) * group
    partial = np.zeros((chunks, Og * C * k * k * LANES), dtype=np.float32)
    sums = np.empty((chunks, Og * C * k * k), dtype=np.float32)
    for part in prange(chunks):
        xb = np.zeros(C * plane + SPAN + Wp, dtype=np.float32)
        db = aligned_zeros(Og * e)  # channels past O stay 0
        P = partial[part]
        for n in range(part * N // chunks, (part + 1) * N // chunks):
            copy_padded(x, n, before, Hp, Wp, xb)
            for o in range(O):
                for i in range(H):
                    copy_run(delta_flat, ((n * O + o) * H + i) * W, db, o * e + i * Wq, W)
            for o in range(0, Og, group):
                if group == 8:
                    increment_group_rows(xb, db, P, o, C, H, Wq, Wp, k, plane, e, 8)
                else:
                    increment_group_rows(xb, db, P, o, C, H, Wq, Wp, k, plane, e, 4)
        lanes_added(P, sums[part])
    return sums


@njit(cache=True)
def lanes_added(P, sums):
    """sums[v] = the sum of P[v·LANES : (v + 1)·LANES], lane by lane in order: each vector of sums added up.

    Done by each thread on its own partial sums, in the kernel, so that what is left to add
    after it is 16 (AVX-512) or 8 times smaller: NumPy's sum along a last axis of 16, on
    ``deep`` 2b's partial sums, took a few per cent of that layer's increment (a scratch
    timing, BENCHMARKS.md, fourteenth session).
    """
    for v in range(sums.size):
        total = P[v * LANES]
        for lane in range(1, LANES):
            total += P[v * LANES + lane]
        sums[v] = total


def group_given(group):
    """``group``, or ``CHANNELS_PER_GROUP`` where it is None: 8 or 4, the groups the one-image loops are built for (any
    other would have the parallel kernels read past their arrays)."""
    group = group or CHANNELS_PER_GROUP
    if group not in (8, 4):
        raise ValueError(f"the row kernels sum 8 or 4 output channels at a time, not {group}")
    return group


def correlate_rows(x, W, k, before, group):
    """``correlate_images`` for ``group`` (8 or 4, as ``group_given`` returns it) on x with the kernel W (O, C, k, k),
    the batch cut one run per thread."""
    return correlate_images(x, weights_by_group(W, group), W.shape[0], k, before, runs_per_thread(x.shape[0]), group)


@njit(cache=True, inline="always")
def add_into(P, at, v):
    """P[at : at + LANES] += v."""
    vstore(P, at, vfma(vsplat(np.float32(1.0)), v, vload(P, at)))


@njit(cache=True, inline="always")
def add_sums(P, at, jump, s0, s1, s2, s3):
    """P[at + q·jump : … + LANES] += s_q for q = 0..3."""
    add_into(P, at, s0)
    add_into(P, at + jump, s1)
    add_into(P, at + 2 * jump, s2)
    add_into(P, at + 3 * jump, s3)


@njit(cache=True)
def aligned_zeros(size):
    """np.zeros(size, float32) whose first element is on a 64-byte boundary (a cache line; a vector on AVX-512)."""
    block = np.zeros(size + 16, dtype=np.float32)
    skip = (-address_of(block) % 64) // 4
    return block[skip : skip + size]


def runs_per_thread(N):
    """How many runs of images a batch of N is cut into: one per Numba thread, at most one per image, at least one."""
    return max(1, min(N, numba.get_num_threads()))


def forward(x, W, group=None):
    """h = W ⊛ x, "same" padding: (N, C_in, H, W) -> (N, C_out, H, W); cache = (x, k, group).

    ``group``: output channels summed at a time, 8 or 4 (default ``CHANNELS_PER_GROUP``),
    in this pass and in the weight increment that reads its cache.
    """
    x = np.ascontiguousarray(x)
    k = W.shape[-1]
    group = group_given(group)
    before, _ = same_padding(k)
    return correlate_rows(x, W, k, before, group), (x, k, group)


def input_error(delta, B, group=None):
    """e_below = Bᵀ δ, the transposed convolution: (N, C_out, H, W) -> (N, C_in, H, W)."""
    (before, _), B_flipped = transposed_convolution(B)
    return correlate_rows(np.ascontiguousarray(delta), B_flipped, B.shape[-1], before, group_given(group))


def weight_increment(delta, cache):
    """G = Σ_{n,i,j} δ xᵀ, summed over all positions: -> (C_out, C_in, k, k); cache = (x, k, group) from ``forward``."""
    return increment_from_input(delta, *cache)


def increment_from_input(delta, x, k, group=None):
    """G = Σ_{n,i,j} δ xᵀ from the input x itself, ``group`` output channels at a time (default
    ``CHANNELS_PER_GROUP``)."""
    group = group_given(group)
    delta = np.ascontiguousarray(delta, dtype=np.float32)
    before, _ = same_padding(k)
    sums = increment_images(delta, x, k, before, runs_per_thread(x.shape[0]), group)
    O, C = delta.shape[1], x.shape[1]
    return sum_of_parts(sums.reshape(sums.shape[0], -1, C * k * k), k)[:O]  # the threads' sums added up
