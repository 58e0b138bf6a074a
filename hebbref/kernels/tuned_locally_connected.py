"""TUNED TIER. Locally connected ("untied") layer: Numba CPU kernels.  # SPEC §5

The equations of ``hebbref.layers.locally_connected`` (xp is x zero-padded, p the padding before):

    h[n,o,i,j]      = Σ_{c,a,b} W[i,j,o,c,a,b] xp[n,c,i+a,j+b]          locally_connected_forward
    e[n,c,i+a-p,j+b-p] += Σ_o B[i,j,o,c,a,b] δ[n,o,i,j]                 locally_connected_input_error
    G[i,j,o,c,a,b]  = Σ_n δ[n,o,i,j] xp[n,c,i+a,j+b]                    locally_connected_weight_increment

Loops location by location, always with a contiguous, vectorised innermost loop: for
the forward pass and the input error the filters are laid out with the output channel
last, (H, W, C_in, k, k, C_out), and δ as (N, H, W, C_out); for the increment δ and
xp are laid out with the batch last, so that each increment is a dot product over
the batch.

The input error has a second path, over padded planes (``input_error_by_planes``): δ
stays image by image and each filter tap's values across the locations form a plane,
so the innermost loop runs along a whole padded image instead of along C_out; no
transposition of δ is needed. ``plan.choose`` times both.

All three equations have a path with the images along the innermost loop
(``forward_batch_last``, ``input_error_batch_last``, ``weight_increment_batch_last``):
xp laid out batch last, (C_in, Hp, Wp, N), makes every window term of a location a
contiguous run over the images, and so does δ laid out batch last, so the direct
conv's eight-term passes (``add_terms``, ``add_products``) serve here too, along a tile
of images instead of along an image. The per-location loops above keep a C_out-wide
sum in memory and go back to it after every term; these keep it for eight.

Shapes as in the reference: x (N, C_in, H, W); W, R (H, W, C_out, C_in, k, k);
h, δ (N, C_out, H, W). The cache is the padded input xp (N, C_in, H+k-1, W+k-1).
"""
import numba
import numpy as np
from numba import njit, prange

from ..layers.conv import same_padding
from .tuned_conv_direct import FASTMATH, add_products, add_terms, pad_spatial, paired
from .tuned_simd import LANES, turn_over

# images per tile in the forward pass and the input error, by default: a location's filter
# (C_in·k·k·C_out numbers) is read once per tile, not once per image. The best size depends
# on the CPU's caches: a measured plan (plan.BLOCKS) times this one against others
IMAGES_PER_TILE = 16
# images per tile of the input error over padded planes, by default (plan.BLOCKS measures others)
IMAGES_PER_PLANES_TILE = 8
# images per tile of the batch-last paths, by default: the length of their vectorised loop
# (plan.BLOCKS measures others)
IMAGES_PER_BATCH_TILE = 256


@njit(parallel=True, cache=True)
def images_to_rows(delta):
    """(N, O, H, W) -> (N·H·W, O): one row per position."""
    N, O, H, W = delta.shape
    dT = np.empty((N * H * W, O), dtype=delta.dtype)
    for n in prange(N):
        for o in range(O):
            for i in range(H):
                for j in range(W):
                    dT[(n * H + i) * W + j, o] = delta[n, o, i, j]
    return dT


def channels_last(W):
    """(H, W, C_out, C_in, k, k) -> (H, W, C_in, k, k, C_out), contiguous."""
    return np.ascontiguousarray(W.transpose(0, 1, 3, 4, 5, 2))


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def forward_by_location(xp, W_last, tile_size):
    """h[n,o,i,j] = Σ_{c,a,b} W[i,j,o,c,a,b] xp[n,c,i+a,j+b]: -> (N, C_out, H, W).

    Images go by tiles of ``tile_size``, one tile per parallel iteration, and a
    location's filter serves the whole tile while it is in cache. Each output vector
    h[n, :, i, j] is summed in ``acc`` (in L1) and stored once.
    """
    N, C, _, _ = xp.shape
    H, Wd, _, k, _, O = W_last.shape
    h = np.empty((N, O, H, Wd), dtype=xp.dtype)
    for tile in prange((N + tile_size - 1) // tile_size):
        acc = np.empty(O, dtype=xp.dtype)
        for i in range(H):
            for j in range(Wd):
                for n in range(tile * tile_size, min(N, (tile + 1) * tile_size)):
                    acc[:] = 0
                    for c in range(C):
                        for a in range(k):
                            for b in range(k):
                                v = xp[n, c, i + a, j + b]
                                for o in range(O):  # contiguous output channels: vectorised
                                    acc[o] += W_last[i, j, c, a, b, o] * v
                    for o in range(O):
                        h[n, o, i, j] = acc[o]
    return h


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def input_error_by_location(dT, B_last, zero, tile_size):
    """e_p[n,c,i+a,j+b] += Σ_o B[i,j,o,c,a,b] δ[n,o,i,j]: -> padded (N, C_in, H+k-1, W+k-1).

    By tiles of images, as the forward pass; a tile's images are its own, so the
    overlapping windows of neighbouring locations never add into one pixel at once.
    """
    N, H, Wd, O = dT.shape
    _, _, C, k, _, _ = B_last.shape
    e_padded = np.zeros((N, C, H + k - 1, Wd + k - 1), dtype=dT.dtype)
    for tile in prange((N + tile_size - 1) // tile_size):
        for i in range(H):
            for j in range(Wd):
                for n in range(tile * tile_size, min(N, (tile + 1) * tile_size)):
                    for c in range(C):
                        for a in range(k):
                            for b in range(k):
                                acc = zero
                                for o in range(O):  # a dot product over output channels
                                    acc += B_last[i, j, c, a, b, o] * dT[n, i, j, o]
                                e_padded[n, c, i + a, j + b] += acc
    return e_padded


def tap_planes(B):
    """(H, W, C_out, C_in, k, k) -> (C_out, C_in, k, k, Hp·Wp): tap (o, c, a, b) of every location as a plane.

    Location (i, j) sits at (i + k-1-p, j + k-1-p) of a plane padded to Hp × Wp (p the
    padding before), where δ sits once padded the other way round; zeros around.
    """
    H, Wd, C_out, C_in, k, _ = B.shape
    _, r = same_padding(k)  # the padding after, k-1-p, comes first when padded the other way round
    planes = np.zeros((C_out, C_in, k, k, H + k - 1, Wd + k - 1), dtype=B.dtype)
    planes[..., r : r + H, r : r + Wd] = B.transpose(2, 3, 4, 5, 0, 1)
    return planes.reshape(C_out, C_in, k, k, -1)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def input_error_by_planes(delta, B_planes, k, r, tile_size):
    """e[n,c,y,x] = Σ_{o,a,b} B[i,j,o,c,a,b] δ[n,o,i,j], i = y+p-a, j = x+p-b, over padded planes: -> (N, C_in, H, W).

    D holds a tile's δ padded the other way round (k-1-p before, p after), each plane
    flattened at row stride Wp. With a' = k-1-a, b' = k-1-b, the location (i, j) is at
    (y + a', x + b') in D and in B_planes alike, so for r = y·Wp + x and s = a'·Wp + b'

        e[n, c, r] = Σ_{o,a',b'} B_planes[o, c, k-1-a', k-1-b', r + s] · D[n, o, r + s]

    a product of two contiguous runs for every (o, a', b'), summed along r in ``acc``
    (positions past W in a row are computed and dropped). ``r`` is k-1-p, the padding
    after of ``same_padding``; one tile per parallel iteration.
    """
    N, O, H, Wd = delta.shape
    C = B_planes.shape[1]
    Wp = Wd + k - 1
    plane = (H + k - 1) * Wp
    span = (H - 1) * Wp + Wd  # up to the last output position
    e = np.empty((N, C, H, Wd), dtype=delta.dtype)
    for tile in prange((N + tile_size - 1) // tile_size):
        n0 = tile * tile_size
        n1 = min(N, n0 + tile_size)
        D = np.zeros((n1 - n0, O, plane), dtype=delta.dtype)
        for n in range(n0, n1):
            for o in range(O):
                for i in range(H):
                    start = (i + r) * Wp + r
                    for j in range(Wd):
                        D[n - n0, o, start + j] = delta[n, o, i, j]
        acc = np.empty((n1 - n0, span), dtype=delta.dtype)
        for c in range(C):
            acc[:] = 0
            for o in range(O):
                for a in range(k):
                    for b in range(k):
                        s = (k - 1 - a) * Wp + k - 1 - b
                        taps = B_planes[o, c, a, b, s : s + span]
                        errors = D[:, o, s : s + span]  # (images of the tile, span)
                        for m in range(n1 - n0):
                            for q in range(span):  # contiguous: vectorised
                                acc[m, q] += taps[q] * errors[m, q]
            for n in range(n0, n1):
                for y in range(H):
                    for x in range(Wd):
                        e[n, c, y, x] = acc[n - n0, y * Wp + x]
    return e


# the most numbers of the long axis in one part of a transposition (``batch_last``): the cache lines
# it writes (or reads) across are then at most 2048·64 bytes = 128 KiB, within the L2 cache of any
# x86 core of the last decade, so that each line is filled (or used up) whole before it leaves
PART_MOST = 2048


def batch_last(a):
    """(N, M) -> (M, N), contiguous: a transposition cut along its longer axis.

    The longer axis is cut into parts of at most ``PART_MOST`` numbers, and at least two
    per thread. The plain transposition, out[m, n] = a[n, m]; ``np.ascontiguousarray(a.T)``
    gives the same. float32 goes by blocks turned over in vector registers
    (``transpose_in_blocks``), any other type number by number (``transpose_by_parts``).
    """
    long_axis = max(a.shape)
    parts = min(max(-(-long_axis // PART_MOST), 2 * numba.get_num_threads()), long_axis)
    if a.dtype == np.float32:
        return transpose_in_blocks(np.ascontiguousarray(a), parts)
    return transpose_by_parts(a, parts)


@njit(parallel=True, cache=True)
def transpose_by_parts(a, parts):
    """(N, M) -> (M, N), the longer axis cut into ``parts``, one parallel iteration each.

    Within a part, every row of the shorter axis is read (or written) as a contiguous run
    of the part, and the other side is strided: a part's strided side touches one cache
    line per number of the part, and the next rows of the short axis find those lines
    still in cache.
    """
    N, M = a.shape
    out = np.empty((M, N), dtype=a.dtype)
    long_axis = max(N, M)
    for part in prange(parts):
        p0, p1 = long_axis * part // parts, long_axis * (part + 1) // parts
        if M >= N:  # a's rows are long: read each row's run of the part, write a column of out
            for n in range(N):
                run = a[n, p0:p1]
                for m in range(p1 - p0):
                    out[p0 + m, n] = run[m]
        else:  # out's rows are long: write each row's run of the part, read a column of a
            for m in range(M):
                run = out[m, p0:p1]
                for n in range(p1 - p0):
                    run[n] = a[p0 + n, m]
    return out


@njit(parallel=True, cache=True)
def transpose_in_blocks(a, parts):
    """(N, M) -> (M, N) for float32, the longer axis cut into ``parts`` of whole blocks, one parallel iteration each.

    Within a part, ``tuned_simd.turn_over`` moves LANES × LANES blocks through vector registers:
    each load and each store is a run of LANES numbers, where ``transpose_by_parts``
    writes (or reads) one number at a time on its strided side.
    """
    N, M = a.shape
    out = np.empty((M, N), dtype=np.float32)
    src, dst = a.reshape(-1), out.reshape(-1)
    long_axis = max(N, M)
    blocks = long_axis // LANES
    for part in prange(parts):
        p0 = blocks * part // parts * LANES
        p1 = long_axis if part == parts - 1 else blocks * (part + 1) // parts * LANES
        if M >= N:  # columns p0.. of a, every row: rows p0.. of out
            turn_over(src, p0, M, dst, p0 * N, N, N, p1 - p0)
        else:  # rows p0.. of a: columns p0.. of out
            turn_over(src, p0 * M, M, dst, p0, N, p1 - p0, M)
    return out


@njit(cache=True)
def batch_last_taps(C, Hp, Wp, k, N):
    """Where term t = (c, a, b) of location (0, 0)'s window starts in xp laid out batch last, (C, Hp, Wp, N), flattened.

    Location (i, j)'s terms start (i·Wp + j)·N further on; each is a run of N images.
    """
    offsets = np.empty(C * k * k, dtype=np.int64)
    for c in range(C):
        for a in range(k):
            for b in range(k):
                offsets[(c * k + a) * k + b] = ((c * Hp + a) * Wp + b) * N
    return offsets


# spare numbers after each run of a tile's buffers: with runs of 2^k numbers, the values that
# one pixel row sends to (or takes from) the W runs share a few cache sets and evict each other
RUN_PAD = 16


@njit(cache=True)
def row_to_batch_last(delta, n0, L, i, d):
    """d[o, j, m] = δ[n0+m, o, i, j] for m < L: pixel row i of L images, batch last.

    A pixel row δ[n0+m, o, i, :] at a time, read whole.
    """
    O, Wd = d.shape[0], d.shape[1]
    for o in range(O):
        for m in range(L):
            row = delta[n0 + m, o, i]
            for j in range(Wd):
                d[o, j, m] = row[j]


@njit(cache=True)
def row_from_batch_last(out, n0, L, i, h):
    """h[n0+m, o, i, j] = out[o, j, m] for m < L and every channel o of h: the inverse of ``row_to_batch_last``."""
    O, Wd = h.shape[1], h.shape[3]
    for o in range(O):
        for m in range(L):
            row = h[n0 + m, o, i]
            for j in range(Wd):
                row[j] = out[o, j, m]


@njit(cache=True, fastmath=FASTMATH)
def row_tile_sums(x_flat, taps, w, i, Wp, N, n0, L, out, start, o_stride, j_stride, spare):
    """Add Σ_t w[i, j, o, t] · xp of image n0+m at term t of location (i, j) to out[start + o·o_stride + j·j_stride + m], m < L.

    A row of locations, a tile of images. ``x_flat`` is xp batch last, (C_in, Hp, Wp, N),
    flattened; ``w`` the filters as (H, W, C_out, C_in·k·k); ``out`` flat, its runs
    zeroed by the caller; ``spare`` (at least L numbers) the twin of an odd last
    channel, dropped. For every location and pair of output channels, ``add_terms``
    sums the window's terms along the tile's images, eight terms and two channels per pass.
    """
    Wd, O = w.shape[1], w.shape[2]
    for j in range(Wd):
        x = x_flat[(i * Wp + j) * N + n0 :]  # term t of location (i, j), tile's images: x[taps[t]:][:L]
        runs = out[start + j * j_stride :]
        for o in range(0, O, 2):
            o2 = paired(o, O)
            q = runs[o2 * o_stride :][:L] if o2 != o else spare[:L]
            add_terms(runs[o * o_stride :][:L], q, x, taps, w[i, j, o], w[i, j, o2], L)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def forward_batch_last(x_last, W, tile_size):
    """h[n,o,i,j] = Σ_{c,a,b} W[i,j,o,c,a,b] xp[n,c,i+a,j+b], the images along the vectorised loop: -> (N, C_out, H, W).

    ``x_last`` is xp batch last, (C_in, Hp, Wp, N). One parallel iteration per row i of
    locations and tile of images (``row_tile_sums``). The tile's outputs gather in
    ``out`` (C_out, W, images) and go to h at the end (``row_from_batch_last``): storing
    each sum straight to its image would touch another page of h with every store.
    """
    C, Hp, Wp, N = x_last.shape
    H, Wd, O, _, k, _ = W.shape
    taps = batch_last_taps(C, Hp, Wp, k, N)
    x_flat = x_last.reshape(-1)
    w = W.reshape(H, Wd, O, C * k * k)
    h = np.empty((N, O, H, Wd), dtype=x_last.dtype)
    tiles = (N + tile_size - 1) // tile_size
    for job in prange(H * tiles):
        i = job // tiles
        n0 = (job % tiles) * tile_size
        L = min(tile_size, N - n0)
        run = L + RUN_PAD
        out = np.zeros((O, Wd, run), dtype=x_last.dtype)
        spare = np.empty(L, dtype=x_last.dtype)
        row_tile_sums(x_flat, taps, w, i, Wp, N, n0, L, out.reshape(-1), 0, Wd * run, run, spare)
        row_from_batch_last(out, n0, L, i, h)
    return h


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def forward_images_last(x_last, W, tile_size):
    """The sums of ``forward_batch_last``, left with the images last: -> h_last (C_out, H, W, N).

    The same parallel iterations and ``row_tile_sums``, which add straight into the
    tile's runs of h_last, zeroed just before: no transposition, no copy.
    """
    C, Hp, Wp, N = x_last.shape
    H, Wd, O, _, k, _ = W.shape
    taps = batch_last_taps(C, Hp, Wp, k, N)
    x_flat = x_last.reshape(-1)
    w = W.reshape(H, Wd, O, C * k * k)
    h_last = np.empty((O, H, Wd, N), dtype=x_last.dtype)
    h_flat = h_last.reshape(-1)
    tiles = (N + tile_size - 1) // tile_size
    for job in prange(H * tiles):
        i = job // tiles
        n0 = (job % tiles) * tile_size
        L = min(tile_size, N - n0)
        for o in range(O):
            for j in range(Wd):
                h_last[o, i, j, n0 : n0 + L] = 0
        spare = np.empty(L, dtype=x_last.dtype)
        row_tile_sums(x_flat, taps, w, i, Wp, N, n0, L, h_flat, i * Wd * N + n0, H * Wd * N, N, spare)
    return h_last


@njit(cache=True, fastmath=FASTMATH)
def row_products(G, i, d_flat, d_start, o_stride, j_stride, x_flat, taps, Wp, N, n0, L, scratch, zero):
    """G[i, j, o, t] += Σ_{m<L} δ[n0+m, o, i, j] · xp[n0+m] at term t of location (i, j): a row of locations, a tile of images.

    The tile's δ at channel o and location j is the run of L numbers starting at
    d_flat[d_start + o·o_stride + j·j_stride]; ``x_flat`` is xp batch last, flattened.
    ``add_products`` adds sixteen dot products per pass (eight terms, two channels);
    ``scratch`` (C_in·k·k) takes the twin sums of an odd last channel, dropped.
    """
    for j in range(G.shape[1]):
        location_products(G, i, j, d_flat[d_start + j * j_stride :], o_stride, x_flat, taps, Wp, N, n0, L, scratch,
                          zero)


@njit(cache=True, fastmath=FASTMATH, inline="always")
def location_products(G, i, j, d, o_stride, x_flat, taps, Wp, N, n0, L, scratch, zero):
    """G[i, j, o, t] += Σ_{m<L} δ[n0+m, o, i, j] · xp[n0+m] at term t of location (i, j), every channel o: a tile of images.

    The tile's δ at channel o is the run d[o·o_stride :][:L]; channels go two at a time
    (``add_products``), an odd last one paired with itself, its twin sums into ``scratch``.
    """
    O = G.shape[2]
    x = x_flat[(i * Wp + j) * N + n0 :]  # term t of location (i, j), tile's images: x[taps[t]:][:L]
    for o in range(0, O, 2):
        o2 = paired(o, O)
        f = G[i, j, o2] if o2 != o else scratch
        p, q = d[o * o_stride :][:L], d[o2 * o_stride :][:L]
        add_products(G[i, j, o], f, p, q, x, taps, L, zero)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def weight_increment_batch_last(delta, x_last, k, tile_size, zero):
    """G[i,j,o,c,a,b] = Σ_n δ[n,o,i,j] xp[n,c,i+a,j+b], dot products along tiles of images: -> (H, W, C_out, C_in, k, k).

    ``x_last`` is xp batch last, (C_in, Hp, Wp, N); δ stays as it comes. One parallel
    iteration per row i of locations (its part of G is its own). Tile by tile, the
    row's δ is copied batch last into ``d`` (C_out, W, images; ``row_to_batch_last``),
    and ``row_products`` adds the tile's share of every increment of the row.
    """
    N, O, H, Wd = delta.shape
    C, Hp, Wp, _ = x_last.shape
    taps = batch_last_taps(C, Hp, Wp, k, N)
    x_flat = x_last.reshape(-1)
    T = C * k * k
    run = tile_size + RUN_PAD
    G = np.zeros((H, Wd, O, T), dtype=delta.dtype)
    for i in prange(H):
        d = np.empty((O, Wd, run), dtype=delta.dtype)
        scratch = np.zeros(T, dtype=delta.dtype)
        for n0 in range(0, N, tile_size):
            L = min(tile_size, N - n0)
            row_to_batch_last(delta, n0, L, i, d)
            row_products(G, i, d.reshape(-1), 0, Wd * run, run, x_flat, taps, Wp, N, n0, L, scratch, zero)
    return G.reshape(H, Wd, O, C, k, k)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def input_error_batch_last(delta, B_taps, k, before, tile_size):
    """e_p[n,c,i+a,j+b] += Σ_o B[i,j,o,c,a,b] δ[n,o,i,j], sums along tiles of images: -> (N, C_in, H, W).

    ``B_taps`` is B with the output channel last, (H, W, C_in·k·k, C_out). One parallel
    iteration per tile of images, which owns its padded error ``E`` laid out batch last,
    (C_in, Hp, Wp, images). Row i of locations by row i: the tile's δ at that row is
    copied batch last into ``d`` (C_out, W, images); then for each location, the error
    it sends to two window cells at a time is one ``add_terms`` call whose terms are the
    C_out runs of d at that location. E goes to e at the end (``row_from_batch_last``).
    """
    N, O, H, Wd = delta.shape
    T = B_taps.shape[2]
    C = T // (k * k)
    Hp, Wp = H + k - 1, Wd + k - 1
    tiles = (N + tile_size - 1) // tile_size
    e = np.empty((N, C, H, Wd), dtype=delta.dtype)
    for tile in prange(tiles):
        n0 = tile * tile_size
        L = min(tile_size, N - n0)
        run = L + RUN_PAD  # the stride of the runs of E and d
        E = np.zeros((C, Hp, Wp, run), dtype=delta.dtype)
        E_flat = E.reshape(-1)
        d = np.empty((O, Wd, run), dtype=delta.dtype)
        d_flat = d.reshape(-1)
        spare = np.empty(L, dtype=delta.dtype)  # the twin of an odd last cell, dropped
        terms = np.arange(O) * (Wd * run)  # where δ's channel o starts in d, flattened
        for i in range(H):
            row_to_batch_last(delta, n0, L, i, d)
            for j in range(Wd):
                deltas = d_flat[j * run :]  # δ[n0:n0+L, o, i, j] at deltas[terms[o]:][:L]
                for t in range(0, T, 2):
                    c, a, b = t // (k * k), (t // k) % k, t % k
                    p = E_flat[((c * Hp + i + a) * Wp + j + b) * run :][:L]
                    if t + 1 < T:
                        c2, a2, b2 = (t + 1) // (k * k), ((t + 1) // k) % k, (t + 1) % k
                        q = E_flat[((c2 * Hp + i + a2) * Wp + j + b2) * run :][:L]
                        add_terms(p, q, deltas, terms, B_taps[i, j, t], B_taps[i, j, t + 1], L)
                    else:
                        spare[:] = 0
                        add_terms(p, spare, deltas, terms, B_taps[i, j, t], B_taps[i, j, t], L)
        for y in range(H):  # e[n0+m, c, y, x] = E[c, y+before, x+before, m]
            row_from_batch_last(E[:, y + before, before:], n0, L, y, e)
    return e


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def weight_increment_by_location(delta_last, x_last, k, zero):
    """G[i,j,o,c,a,b] = Σ_n δ[n,o,i,j] xp[n,c,i+a,j+b]: -> (H, W, C_out, C_in, k, k).

    Both arrays come with the batch last, δ (C_out, H, W, N) and xp (C_in, Hp, Wp, N),
    so every increment is one contiguous dot product over the batch.
    """
    O, H, Wd, N = delta_last.shape
    C = x_last.shape[0]
    G = np.empty((H, Wd, O, C, k, k), dtype=delta_last.dtype)
    for i in prange(H):  # each row of locations is one thread's own part of G
        for j in range(Wd):
            for o in range(O):
                d = delta_last[o, i, j]  # (N,)
                for c in range(C):
                    for a in range(k):
                        for b in range(k):
                            x = x_last[c, i + a, j + b]  # (N,)
                            acc = zero
                            for n in range(N):  # a dot product over the batch: vectorised
                                acc += d[n] * x[n]
                            G[i, j, o, c, a, b] = acc
    return G


def locally_connected_forward(x, W, tile_size=None):
    """h = W ⊛_untied x: (N, C_in, H, W) -> (N, C_out, H, W); cache = padded x. Tiles of ``tile_size`` images."""
    x = np.ascontiguousarray(x)
    before, after = same_padding(W.shape[-1])
    xp = pad_spatial(x, before, after)  # (N, C_in, H+k-1, W+k-1)
    return forward_by_location(xp, channels_last(W), tile_size or IMAGES_PER_TILE), xp  # (N, C_out, H, W)


def locally_connected_input_error(delta, cache, B, tile_size=None):
    """e_below = Bᵀ δ location by location, added back onto the input: -> (N, C_in, H, W)."""
    delta = np.ascontiguousarray(delta)
    N, C_out, H, Wd = delta.shape
    k = B.shape[-1]
    before, _ = same_padding(k)
    dT = images_to_rows(delta).reshape(N, H, Wd, C_out)
    e_padded = input_error_by_location(dT, channels_last(B), delta.dtype.type(0), tile_size or IMAGES_PER_TILE)
    return np.ascontiguousarray(e_padded[:, :, before : before + H, before : before + Wd])


def locally_connected_input_error_planes(delta, cache, B, tile_size=None):
    """e_below = Bᵀ δ over padded planes (``input_error_by_planes``): -> (N, C_in, H, W)."""
    delta = np.ascontiguousarray(delta)
    B_planes = tap_planes(np.asarray(B, dtype=delta.dtype))
    k = B.shape[-1]
    _, after = same_padding(k)  # δ's padding before, padded the other way round
    return input_error_by_planes(delta, B_planes, k, after, tile_size or IMAGES_PER_PLANES_TILE)


def locally_connected_weight_increment(delta, cache):
    """G[i,j] = Σ_n δ[:, :, i, j] x_windowᵀ, one increment per location: -> (H, W, C_out, C_in, k, k)."""
    xp = cache
    delta = np.ascontiguousarray(delta)
    N, C_out, H, Wd = delta.shape
    k = xp.shape[-1] - Wd + 1
    C_in, Hp, Wp = xp.shape[1:]
    delta_last = batch_last(delta.reshape(N, -1)).reshape(C_out, H, Wd, N)
    x_last = _batch_last(xp)
    return weight_increment_by_location(delta_last, x_last, k, delta.dtype.type(0))


def _batch_last(xp):
    """(N, C, Hp, Wp) -> (C, Hp, Wp, N), contiguous."""
    return batch_last(xp.reshape(xp.shape[0], -1)).reshape(xp.shape[1:] + (xp.shape[0],))


def locally_connected_forward_batch_last(x, W, tile_size=None):
    """h = W ⊛_untied x with the images along the vectorised loop (``forward_batch_last``); cache = padded x."""
    x = np.ascontiguousarray(x)
    W = np.ascontiguousarray(W)
    before, after = same_padding(W.shape[-1])
    xp = pad_spatial(x, before, after)  # (N, C_in, H+k-1, W+k-1): the cache, as on the other path
    return forward_batch_last(_batch_last(xp), W, tile_size or IMAGES_PER_BATCH_TILE), xp


def locally_connected_weight_increment_batch_last(delta, cache, tile_size=None):
    """G[i,j] = Σ_n δ[:, :, i, j] x_windowᵀ by dot products along tiles of images (``weight_increment_batch_last``)."""
    xp = cache
    delta = np.ascontiguousarray(delta)
    k = xp.shape[-1] - delta.shape[-1] + 1
    return weight_increment_batch_last(delta, _batch_last(xp), k, tile_size or IMAGES_PER_BATCH_TILE,
                                       delta.dtype.type(0))


def locally_connected_input_error_batch_last(delta, cache, B, tile_size=None):
    """e_below = Bᵀ δ location by location, summed along tiles of images (``input_error_batch_last``)."""
    delta = np.ascontiguousarray(delta)
    H, Wd, C_out, C_in, k, _ = B.shape
    B_taps = np.ascontiguousarray(np.asarray(B, dtype=delta.dtype).reshape(H, Wd, C_out, C_in * k * k)
                                  .transpose(0, 1, 3, 2))
    before, _ = same_padding(k)
    # tiles are the parallel iterations here: at least one per thread
    tile_size = min(tile_size or IMAGES_PER_BATCH_TILE, -(-delta.shape[0] // numba.get_num_threads()))
    return input_error_batch_last(delta, B_taps, k, before, tile_size)
