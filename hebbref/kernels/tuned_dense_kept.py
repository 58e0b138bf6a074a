"""TUNED TIER. A dense layer right above dropout: its three products over the inputs dropout kept.  # SPEC §2, §3

A dense layer that reads dropout's output x = x_below ⊙ m (m the mask, (N, D_in), a
fraction 1 - p of it nonzero) needs none of the dropped inputs: each is zero in x, and
the error sent down to it is multiplied by zero in dropout's backward pass. So

    h[n]     = Σ_{i kept in n} x[n, i] W[:, i]               forward: rows of Wᵀ added up
    G[:, i]  = Σ_{n that keep i} x[n, i] δ[n]                 the increment: rows of δ added up
    e[n, i]  = m[n, i] Σ_o δ[n, o] B[o, i], for i kept in n   the input error through dropout:
                                                              dot products, at kept entries only

(0 elsewhere in e) are the reference's ``dense_forward``, ``dense_weight_increment`` and
``dropout_backward(dense_input_error(...), m)``, with a fraction 1 - p of the multiply-adds.
A BLAS product does every multiply-add, zeros included, but at the full speed of the
CPU's widest vectors; these sums skip the zeros and pay for it in lists and
transpositions. Which wins depends on p, the shapes and the CPU (at `simple`'s p = 0.8
they won on the Zen 4 natively, held to AVX2 and, by most, held to SSE4.2, whose BLAS runs
at SSE's speed; at `deep`'s p = 0.5 only held to SSE4.2: BENCHMARKS.md, eighteenth
session), so ``plan.choose`` times this path ("kept") against the BLAS products ("blas",
``tuned_dense``) for each shape and p.

How: the mask is listed once per step, in one pass over it (``kept_lists``: for each image
the inputs it keeps, in order, and where its list enters each panel of ``panel`` inputs).
W is turned over, padded to whole blocks of ``WIDTH`` outputs (``turned_over``).

- forward (``sum_rows``): for a block of WIDTH outputs, ``SUMS`` vector sums held in
  registers while an image's kept rows of Wᵀ in one panel are added in, panel by panel,
  so that a panel of Wᵀ stays in the L2 cache while every image reads it;
- increment: the same kernel on the lists turned by input (``by_input``: for each input
  the images that keep it), adding rows of δ, which is small enough to stay in cache;
  Gᵀ comes out and is turned over;
- input error (``kept_dot_products``): a panel of Bᵀ's rows per parallel iteration, four
  dot products at a time of δ[n] with them, each image's kept inputs in the panel. Through
  W (bp) Bᵀ is the forward pass's Wᵀ; through R (frfb, urfb) each panel's columns of R are
  turned over into a buffer that stays in cache (``kept_dot_products_turning``), and Rᵀ is
  never written out whole.

float32 only (the vector sums of ``tuned_simd``); the plan takes this path for float32 only.
"""
import numba
import numpy as np
from numba import njit, prange

from .tuned_simd import LANES, copy_run, turn_over, vfma, vload, vsplat, vstore, vzero, zero_run

SUMS = 12  # vector sums a pass keeps in registers: 12 of the 16 registers of SSE and AVX2
WIDTH = SUMS * LANES  # outputs per block
PANEL = 256  # inputs per panel, the default (plan.BLOCKS measures 128 and 512 too)


def padded(size):
    """``size`` rounded up to whole blocks of WIDTH."""
    return -(-size // WIDTH) * WIDTH


@njit(cache=True, inline="always")
def _turn_over_padded(src, first, K, dst, at, width, O, columns):
    """dst's rows from ``at`` on (each ``width`` long): columns first.. of src (O, K, flat) turned over, padded by zeros."""
    turn_over(src, first, K, dst, at, width, O, columns)
    for k in range(columns):
        zero_run(dst, at + k * width + O, width - O)


@njit(parallel=True, cache=True)
def turn_over_inputs(a, out, forth, parts):
    """Into ``out``: Wᵀ from W (O, K), its rows padded by zeros to out's width (``forth``), or back from A (K, width)
    its first O columns turned over (O, K); in ``parts`` along the K inputs, cut at whole vectors."""
    K = a.shape[1] if forth else a.shape[0]
    O = a.shape[0] if forth else out.shape[0]
    width = out.shape[1] if forth else a.shape[1]
    src, dst = a.reshape(-1), out.reshape(-1)
    parts = max(1, min(K // LANES, parts))
    blocks = K // LANES
    for part in prange(parts):
        k0 = blocks * part // parts * LANES
        k1 = K if part == parts - 1 else blocks * (part + 1) // parts * LANES
        if forth:
            _turn_over_padded(src, k0, K, dst, k0 * width, width, O, k1 - k0)
        else:
            turn_over(src, k0 * width, width, dst, k0, K, k1 - k0, O)


def turned_over(W, width):
    """Wᵀ with its rows padded by zeros to ``width``: (O, K) -> (K, width), float32, in parts along K."""
    out = np.empty((W.shape[1], width), dtype=np.float32)
    turn_over_inputs(W, out, True, 4 * numba.get_num_threads())
    return out


def turned_back(A, O):
    """The first O columns of A turned over: (K, width) -> (O, K), float32, in parts along K."""
    out = np.empty((O, A.shape[0]), dtype=np.float32)
    turn_over_inputs(A, out, False, 4 * numba.get_num_threads())
    return out


def halves(width):
    """Shares of the rows per block of WIDTH columns in ``sum_rows``: 2 where the blocks do not divide among the threads."""
    return 2 if (width // WIDTH) % numba.get_num_threads() else 1


@njit(parallel=True, cache=True)
def kept_lists(mask, x, panel):
    """The kept entries image by image, cut into panels of ``panel`` inputs: inputs (int32), x's values, at.

    Image n's kept inputs, in increasing order, are inputs[at[n, 0]:at[n, panels]], and
    values holds x at them; at[n, c] is where the list reaches the inputs of panel c
    (c·panel onwards). Each image's list has a stretch of its own, K + 1 long, so the
    images are listed in parallel, in one pass over the mask and x: every input is written
    at the list's next place, and the place moves on only where the mask keeps it (no
    branch on the mask's random numbers; the last write may land one past the kept ones,
    still in the image's stretch).
    """
    N, K = mask.shape
    panels = -(-K // panel)
    stretch = K + 1
    inputs = np.empty(N * stretch, dtype=np.int32)
    values = np.empty(N * stretch, dtype=np.float32)
    at = np.empty((N, panels + 1), dtype=np.int64)
    m_flat, x_flat = mask.reshape(-1), x.reshape(-1)
    for n in prange(N):
        t, row = np.uint64(n * stretch), np.uint64(n * K)  # unsigned indices: no test for negative ones
        for c in range(panels):
            at[n, c] = t
            for i in range(np.uint64(c * panel), np.uint64(min(K, (c + 1) * panel))):
                inputs[t] = np.int32(i)
                values[t] = x_flat[row + i]
                t += np.uint64(m_flat[row + i] != 0)
        at[n, panels] = t
    return inputs, values, at


@njit(parallel=True, cache=True)
def by_input(at, inputs, values, K):
    """The kept entries input by input: starts (K + 1), images (int32) and values, each input's images in order.

    One parallel iteration per panel of ``at`` (``kept_lists``): a panel's inputs are
    written by it alone.
    """
    N, panels = at.shape[0], at.shape[1] - 1
    counts = np.zeros(K + 1, dtype=np.int64)
    for c in prange(panels):
        for n in range(N):
            for t in range(np.uint64(at[n, c]), np.uint64(at[n, c + 1])):  # unsigned, as in kept_lists
                counts[np.uint64(inputs[t]) + np.uint64(1)] += 1
    starts = np.cumsum(counts)
    images = np.empty(starts[K], dtype=np.int32)
    kept = np.empty(starts[K], dtype=np.float32)
    for c in prange(panels):
        filled = starts[:K].copy()  # only this panel's inputs are read and moved on
        for n in range(N):
            for t in range(np.uint64(at[n, c]), np.uint64(at[n, c + 1])):
                i = np.uint64(inputs[t])
                place = np.uint64(filled[i])
                images[place] = n
                kept[place] = values[t]
                filled[i] += 1
    return starts, images, kept


@njit(parallel=True, cache=True)
def sum_rows(at, inputs, values, table, rows, halves):
    """out[r] = Σ_t values[t] · table[inputs[t]] over row r's entries: (rows, table's width), float32.

    ``at`` (rows, panels + 1) cuts each row's entries by panels of the table's rows
    (``kept_lists``; one panel: every entry). A parallel iteration takes a block of
    WIDTH columns and a share (of ``halves``) of the rows; for each panel and each row,
    SUMS vector sums are loaded, every entry's row of the table added in, and stored.
    """
    width = table.shape[1]
    blocks = width // WIDTH
    panels = at.shape[1] - 1
    out = np.zeros((rows, width), dtype=np.float32)
    t_flat, o_flat = table.reshape(-1), out.reshape(-1)
    for job in prange(blocks * halves):
        j0 = (job // halves) * WIDTH
        r0 = rows * (job % halves) // halves
        r1 = rows * (job % halves + 1) // halves
        for c in range(panels):
            for r in range(r0, r1):
                if at[r, c + 1] == at[r, c]:
                    continue
                o = r * width + j0
                a0 = vload(o_flat, o)
                a1 = vload(o_flat, o + LANES)
                a2 = vload(o_flat, o + 2 * LANES)
                a3 = vload(o_flat, o + 3 * LANES)
                a4 = vload(o_flat, o + 4 * LANES)
                a5 = vload(o_flat, o + 5 * LANES)
                a6 = vload(o_flat, o + 6 * LANES)
                a7 = vload(o_flat, o + 7 * LANES)
                a8 = vload(o_flat, o + 8 * LANES)
                a9 = vload(o_flat, o + 9 * LANES)
                a10 = vload(o_flat, o + 10 * LANES)
                a11 = vload(o_flat, o + 11 * LANES)
                for t in range(at[r, c], at[r, c + 1]):
                    s = vsplat(values[t])
                    b = inputs[t] * width + j0
                    a0 = vfma(s, vload(t_flat, b), a0)
                    a1 = vfma(s, vload(t_flat, b + LANES), a1)
                    a2 = vfma(s, vload(t_flat, b + 2 * LANES), a2)
                    a3 = vfma(s, vload(t_flat, b + 3 * LANES), a3)
                    a4 = vfma(s, vload(t_flat, b + 4 * LANES), a4)
                    a5 = vfma(s, vload(t_flat, b + 5 * LANES), a5)
                    a6 = vfma(s, vload(t_flat, b + 6 * LANES), a6)
                    a7 = vfma(s, vload(t_flat, b + 7 * LANES), a7)
                    a8 = vfma(s, vload(t_flat, b + 8 * LANES), a8)
                    a9 = vfma(s, vload(t_flat, b + 9 * LANES), a9)
                    a10 = vfma(s, vload(t_flat, b + 10 * LANES), a10)
                    a11 = vfma(s, vload(t_flat, b + 11 * LANES), a11)
                vstore(o_flat, o, a0)
                vstore(o_flat, o + LANES, a1)
                vstore(o_flat, o + 2 * LANES, a2)
                vstore(o_flat, o + 3 * LANES, a3)
                vstore(o_flat, o + 4 * LANES, a4)
                vstore(o_flat, o + 5 * LANES, a5)
                vstore(o_flat, o + 6 * LANES, a6)
                vstore(o_flat, o + 7 * LANES, a7)
                vstore(o_flat, o + 8 * LANES, a8)
                vstore(o_flat, o + 9 * LANES, a9)
                vstore(o_flat, o + 10 * LANES, a10)
                vstore(o_flat, o + 11 * LANES, a11)
    return out


@njit(cache=True, inline="always")
def _lanes_sum(v, buffer):
    """The sum of a vector's lanes, through a small buffer."""
    vstore(buffer, 0, v)
    total = np.float32(0.0)
    for lane in range(LANES):
        total += buffer[lane]
    return total


@njit(cache=True, inline="always")
def _dots_of_image(e, mask, inputs, t, stop, n, d_flat, d0, table, first, width, buffer):
    """e[n, i] = m[n, i] · (δ[n] · the table's row i - first) for image n's kept inputs t..stop.

    Four at a time, sharing the loads of δ[n]; then one at a time.
    """
    while t + 4 <= stop:
        i0, i1, i2, i3 = inputs[t], inputs[t + 1], inputs[t + 2], inputs[t + 3]
        b0, b1, b2, b3 = (i0 - first) * width, (i1 - first) * width, (i2 - first) * width, (i3 - first) * width
        s0 = vzero()
        s1 = vzero()
        s2 = vzero()
        s3 = vzero()
        for o in range(0, width, LANES):
            d = vload(d_flat, d0 + o)
            s0 = vfma(d, vload(table, b0 + o), s0)
            s1 = vfma(d, vload(table, b1 + o), s1)
            s2 = vfma(d, vload(table, b2 + o), s2)
            s3 = vfma(d, vload(table, b3 + o), s3)
        e[n, i0] = mask[n, i0] * _lanes_sum(s0, buffer)
        e[n, i1] = mask[n, i1] * _lanes_sum(s1, buffer)
        e[n, i2] = mask[n, i2] * _lanes_sum(s2, buffer)
        e[n, i3] = mask[n, i3] * _lanes_sum(s3, buffer)
        t += 4
    while t < stop:
        i0 = inputs[t]
        b0 = (i0 - first) * width
        s0 = vzero()
        for o in range(0, width, LANES):
            s0 = vfma(vload(d_flat, d0 + o), vload(table, b0 + o), s0)
        e[n, i0] = mask[n, i0] * _lanes_sum(s0, buffer)
        t += 1


@njit(parallel=True, cache=True)
def kept_dot_products(at, inputs, mask, delta_padded, B_turned):
    """e[n, i] = m[n, i] · (δ[n] · Bᵀ[i]) at the kept entries, 0 elsewhere: (N, K), float32, from Bᵀ padded (K, width).

    One parallel iteration per panel of Bᵀ's rows (``at``, ``kept_lists``), which every
    image then reads while it is in cache. The error through W, whose Wᵀ the forward pass made.
    """
    N, K = mask.shape
    width = B_turned.shape[1]
    e = np.zeros((N, K), dtype=np.float32)
    d_flat, b_flat = delta_padded.reshape(-1), B_turned.reshape(-1)
    for c in prange(at.shape[1] - 1):
        buffer = np.empty(LANES, dtype=np.float32)
        for n in range(N):
            _dots_of_image(e, mask, inputs, at[n, c], at[n, c + 1], n, d_flat, n * width, b_flat, 0, width, buffer)
    return e


@njit(parallel=True, cache=True)
def kept_dot_products_turning(at, inputs, mask, delta_padded, B, panel):
    """The same from B itself (O, K), each panel's ``panel`` columns of B turned over into a buffer of its own.

    The error through R: the buffer (rows of Rᵀ, padded by zeros to δ's padded width) stays
    in cache while every image reads it, so Rᵀ is never written out whole.
    """
    N, K = mask.shape
    O = B.shape[0]
    width = delta_padded.shape[1]
    e = np.zeros((N, K), dtype=np.float32)
    d_flat, b_flat = delta_padded.reshape(-1), B.reshape(-1)
    for c in prange(at.shape[1] - 1):
        first = c * panel
        columns = min(panel, K - first)
        turned = np.empty(columns * width, dtype=np.float32)  # rows first.. of Bᵀ, padded by zeros
        _turn_over_padded(b_flat, first, K, turned, 0, width, O, columns)
        buffer = np.empty(LANES, dtype=np.float32)
        for n in range(N):
            _dots_of_image(e, mask, inputs, at[n, c], at[n, c + 1], n, d_flat, n * width, turned, first, width, buffer)
    return e


@njit(parallel=True, cache=True)
def padded_rows(a, width):
    """a with its rows padded by zeros to ``width``: (N, O) -> (N, width), float32."""
    N, O = a.shape
    out = np.empty((N, width), dtype=np.float32)
    src, dst = a.reshape(-1), out.reshape(-1)
    for n in prange(N):
        copy_run(src, n * O, dst, n * width, O)
        zero_run(dst, n * width + O, width - O)
    return out


def forward(x, mask, W, panel=PANEL):
    """h = x Wᵀ over the kept inputs: (N, K), (N, K), (O, K) -> (N, O); cache for ``backward``.

    x is dropout's output and ``mask`` its mask, both (N, K); float32.
    """
    N, K = x.shape
    O = W.shape[0]
    x, mask, W = (np.ascontiguousarray(a, dtype=np.float32) for a in (x, mask, W))
    width = padded(O)
    inputs, values, at = kept_lists(mask, x, panel)
    W_turned = turned_over(W, width)
    h = sum_rows(at, inputs, values, W_turned, N, halves(width))
    return np.ascontiguousarray(h[:, :O]), (W, W_turned, at, inputs, values, panel)


def backward(delta, cache, B, mask):
    """(e_below ⊙ m, G) of one δ: the input error at the kept entries (None where B is None) and G = δᵀ x."""
    W, W_turned, at, inputs, values, panel = cache
    N, O = delta.shape
    K, width = W_turned.shape
    delta_padded = padded_rows(np.ascontiguousarray(delta, dtype=np.float32), width)
    e = None
    if B is not None:
        mask = np.ascontiguousarray(mask, dtype=np.float32)
        if B is W:  # bp: the forward pass's Wᵀ (a network updates W only after every backward pass)
            e = kept_dot_products(at, inputs, mask, delta_padded, W_turned)
        else:
            e = kept_dot_products_turning(at, inputs, mask, delta_padded, np.ascontiguousarray(B, dtype=np.float32),
                                          panel)
    i_starts, images, kept = by_input(at, inputs, values, K)
    whole = np.empty((K, 2), dtype=np.int64)  # one panel: every entry of each input
    whole[:, 0], whole[:, 1] = i_starts[:-1], i_starts[1:]
    G_turned = sum_rows(whole, images, kept, delta_padded, K, halves(width))
    return e, turned_back(G_turned, O)
