"""TUNED TIER. Max pooling with "same" padding: Numba CPU kernels.  # SPEC §2, §3

The equations of ``hebbref.layers.pooling``: window k×k, stride t, output ceil(n/t)
wide, TensorFlow's padding (padded cells never win). Each window's error goes to its
maximum, the first one in row-major order when there are ties; a cell that wins
several overlapping windows receives the sum of their errors.

    y[n,c,u,v] = max_{a,b} x[n,c,u·t+a-top, v·t+b-left]          maxpool_forward
    e[n,c,winner(u,v)] += dy[n,c,u,v]                            maxpool_backward
    y = maxpool_forward(σ(h)), h the input of a ramp below        ramp_maxpool_forward (fused)
    δ = e ⊙ σ'(h), e as above, h the input of a ramp below         maxpool_ramp_backward (fused)
    δ = (e1 + e) ⊙ σ'(h), a sum block's first ramp below the pool  maxpool_ramp_backward_of_sum (fused)

One plane (n, c) per parallel iteration, so the backward scatter has no races.
Shapes: x (N, C, H, W) -> y (N, C, Ho, Wo); the cache holds the winners' flat
indices inside their (H, W) plane, (N, C, Ho, Wo) int32, and (H, W).

The forward pass has several paths, which ``plan.choose`` times against each other:
``maxpool_windows`` visits each window's k·k cells (a branch per cell), and
``maxpool_separable`` takes the maximum in two passes along the flattened plane,
first over k neighbours in a row at every position, then over k such results in a
column, each pass a contiguous loop of selects that vectorises; the output then reads
every t-th position, and the windows that the image clips are visited cell by cell.
The first maximum in row-major order still wins: the row pass keeps the first column
of a row, the column pass the first row (for finite values; the paths may let
different cells of a window holding a NaN win). A third path, ``maxpool_separable_padded``,
does the same passes on a copy of each plane extended with -inf cells below and to the
right, so that no window is clipped there and none is visited cell by cell; it serves
when "same" padding puts no cell before the image (true of every pool of the paper's
networks), and otherwise hands over to ``maxpool_separable``. A fourth,
``maxpool_plane_groups``, lays a group of planes out with the planes last and visits
each window's cells as ``maxpool_windows`` does, one select per plane of the group
along a vectorised run (the same first-wins rule).
"""
import numba
import numpy as np
from numba import njit, prange

from ..activations import DEFAULT_SLOPE
from ..layers.pooling import pool_padding
from .tuned_activations import ramp
from .tuned_simd import copy_run


# planes per group of ``maxpool_plane_groups``, by default: 32 and 64 were within a quarter of each other
# on the pools of simple and deep on the 2-core AMD EPYC of BENCHMARKS.md (bench_conv_paths.py
# --pools), 16 slower; 32 keeps a group's copy of larger planes in less cache;
# a measured plan (plan.BLOCKS) times 32, 16 and 64 on the machine it runs on
PLANES_PER_GROUP = 32


@njit(cache=True)
def clipped_window(plane, W, r0, r1, s0, s1):
    """The maximum of rows r0..r1-1, columns s0..s1-1 of a flattened plane and its flat index: the first on ties."""
    where = r0 * W + s0
    best = plane[where]
    for r in range(r0, r1):
        for s in range(s0, s1):
            if plane[r * W + s] > best:  # strictly larger: the first maximum wins
                best = plane[r * W + s]
                where = r * W + s
    return best, where


@njit(parallel=True, cache=True)
def maxpool_windows(x, k, t, top, left, Ho, Wo):
    """The maximum of each window and where it is: -> y (N, C, Ho, Wo), winner (N, C, Ho, Wo).

    Each window is first clipped to the image (``clipped_window``), so the loops over it
    test nothing else.
    """
    N, C, H, W = x.shape
    y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    winner = np.empty((N, C, Ho, Wo), dtype=np.int32)
    planes = x.reshape(N * C, H * W)
    for p in prange(N * C):
        n, c = p // C, p % C
        plane, y_plane, winner_plane = planes[p], y[n, c], winner[n, c]
        for u in range(Ho):
            r0 = u * t - top
            for v in range(Wo):
                s0 = v * t - left
                value, where = clipped_window(plane, W, max(r0, 0), min(r0 + k, H), max(s0, 0), min(s0 + k, W))
                y_plane[u, v] = value
                winner_plane[u, v] = where
    return y, winner


# inlined where it is called (pool_window_of_runs, row_and_column_passes): as a call, the window walk
# of the plane-groups pools came out slower, and inlined the separable passes gained (BENCHMARKS.md, 2026-12-02)
@njit(cache=True, inline="always")
def keep_larger(best, where, values, label, step, L):
    """Where values[m] > best[m]: best[m] = values[m], where[m] = label + step·m (m < L).

    A contiguous loop with no branch: it vectorises. ``step`` 1 labels a cell by its
    flat index, ``step`` 0 labels every cell with ``label``. The larger value is taken by
    ``np.maximum``: written as ``value if larger else old``, Numba's loop stayed scalar
    (on equal values the two agree, and only a NaN tells them apart: ``np.maximum``
    carries it on, as the reference's ``max`` does).
    """
    for m in range(L):
        value, old, old_where = values[m], best[m], where[m]  # every read before the select (``keep_larger_of_ramp``)
        best[m] = np.maximum(value, old)
        where[m] = np.int32(label + step * m) if value > old else old_where


@njit(cache=True, inline="always")  # inlined into both kernels: as a call it cost 15 % on 11×11 planes
def row_and_column_passes(plane, stride, k, step, L_row, L_window, row_best, row_where, best, best_row):
    """The two passes over a flattened plane whose rows are ``stride`` apart.

    Row pass: row_best[m] is the first largest of plane[m .. m+k-1], row_where[m] its
    label, step·m + b for offset b (``step`` 1: its flat index; 0: its offset b).
    Column pass: best[m] is the first largest of row_best[m + a·stride], a < k, and
    best_row[m] that a. Positions m < L_row and m < L_window.
    """
    for m in range(L_row):
        row_best[m] = plane[m]
        row_where[m] = step * m
    for b in range(1, k):  # along the row
        keep_larger(row_best, row_where, plane[b:], b, step, L_row)
    for m in range(L_window):
        best[m] = row_best[m]
        best_row[m] = 0
    for a in range(1, k):  # down the column
        keep_larger(best, best_row, row_best[a * stride :], a, 0, L_window)


@njit(parallel=True, cache=True)
def maxpool_separable(x, k, t, top, left, Ho, Wo, chunks):
    """The maximum of each window and where it is, in a row pass and a column pass: -> y, winner.

    On the flattened plane (H·W), position m's row maximum is the largest of
    x[m .. m+k-1] (``row_best``, its flat index in ``row_where``), and its window
    maximum the largest of row_best[m + a·W], a < k (``best``; ``best_row`` is that
    a). A window wholly inside the image starting at (r, s) is position r·W + s, and
    its winner is ``row_where`` at that position plus a·W; the positions whose row
    maximum would wrap onto the next row are computed and never read. The clipped
    windows at the image's edge are visited cell by cell (``clipped_window``). Planes
    go by ``chunks`` (at most N·C), a chunk per parallel iteration, each with its own work rows.
    """
    N, C, H, W = x.shape
    P = N * C
    y = np.empty((P, Ho, Wo), dtype=x.dtype)
    winner = np.empty((P, Ho, Wo), dtype=np.int32)
    planes = x.reshape(P, H * W)
    L_row = H * W - k + 1  # positions with k cells to their right in the flat plane
    L_window = L_row - (k - 1) * W  # positions with k rows of those below them
    # the windows wholly inside the image: rows u0 <= u < u1, columns v0 <= v < v1
    u0, v0 = (top + t - 1) // t, (left + t - 1) // t
    u1 = max(u0, min(Ho, (H - k + top) // t + 1))
    v1 = max(v0, min(Wo, (W - k + left) // t + 1))
    inside = L_window > 0 and u1 > u0 and v1 > v0
    for chunk in prange(chunks):
        row_best = np.empty(max(L_row, 1), dtype=x.dtype)
        row_where = np.empty(max(L_row, 1), dtype=np.int32)
        best = np.empty(max(L_window, 1), dtype=x.dtype)
        best_row = np.empty(max(L_window, 1), dtype=np.int32)
        for p in range(chunk * P // chunks, (chunk + 1) * P // chunks):
            plane, y_plane, winner_plane = planes[p], y[p], winner[p]
            if inside:
                row_and_column_passes(plane, W, k, 1, L_row, L_window, row_best, row_where, best, best_row)
                for u in range(u0, u1):
                    start = (u * t - top) * W - left
                    for v in range(v0, v1):
                        m = start + v * t
                        y_plane[u, v] = best[m]
                        winner_plane[u, v] = row_where[m + best_row[m] * W]
            for u in range(Ho):  # the clipped windows
                r0 = u * t - top
                for v in range(Wo):
                    if inside and u0 <= u < u1 and v0 <= v < v1:
                        continue
                    s0 = v * t - left
                    value, where = clipped_window(plane, W, max(r0, 0), min(r0 + k, H), max(s0, 0), min(s0 + k, W))
                    y_plane[u, v] = value
                    winner_plane[u, v] = where
    return y.reshape(N, C, Ho, Wo), winner.reshape(N, C, Ho, Wo)


@njit(parallel=True, cache=True)
def maxpool_separable_padded(x, k, t, Ho, Wo, chunks, through_ramp=False, s=1.0):
    """``maxpool_separable`` for windows that the image clips only below and to the right: -> y, winner.

    Each plane is copied into ``padded``, Hp × Wp with Hp = max(H, (Ho-1)·t + k) (and the
    same for Wp), whose cells beyond the image hold -inf. Every window then lies inside
    it and starts at a real cell (no padding before), and a -inf cell never wins: the
    row pass keeps b = 0 unless a later cell is strictly larger, the column pass a = 0.
    ``row_b`` holds each position's winning column offset b, ``best_a`` its row offset
    a, so the winner is (u·t + a)·W + v·t + b with no division.

    ``through_ramp``: x is a ramp's input h, and the pool is taken of σ(h) = clip(s·h, -1, 1),
    applied as each plane is copied (``tuned_activations.ramp``'s expression, so the same
    bits): σ(h) is never written out.
    """
    N, C, H, W = x.shape
    P = N * C
    Hp = max(H, (Ho - 1) * t + k)
    Wp = max(W, (Wo - 1) * t + k)
    y = np.empty((P, Ho, Wo), dtype=x.dtype)
    winner = np.empty((P, Ho, Wo), dtype=np.int32)
    planes = x.reshape(P, H * W)
    L_row = Hp * Wp - k + 1  # positions with k cells to their right in the flat padded plane
    L_window = L_row - (k - 1) * Wp  # positions with k rows of those below them
    one = x.dtype.type(1)  # the ramp's bounds in the dtype: a bare 1 would make the clip float64
    for chunk in prange(chunks):
        padded = np.full(Hp * Wp, -np.inf, dtype=x.dtype)  # the cells beyond the image stay -inf
        row_best = np.empty(L_row, dtype=x.dtype)
        row_b = np.empty(L_row, dtype=np.int32)
        best = np.empty(L_window, dtype=x.dtype)
        best_a = np.empty(L_window, dtype=np.int32)
        for p in range(chunk * P // chunks, (chunk + 1) * P // chunks):
            plane, y_plane, winner_plane = planes[p], y[p], winner[p]
            for r in range(H):  # by unsigned indices (as tuned_simd.copy_run): signed ones leave LLVM scatters
                at, start = np.uint64(r * Wp), np.uint64(r * W)
                if through_ramp:
                    for m in range(np.uint64(W)):
                        padded[at + m] = min(max(s * plane[start + m], -one), one)
                else:
                    copy_run(plane, start, padded, at, W)
            row_and_column_passes(padded, Wp, k, 0, L_row, L_window, row_best, row_b, best, best_a)
            for u in range(Ho):
                for v in range(Wo):
                    m = u * t * Wp + v * t  # the window's first cell
                    a = best_a[m]
                    y_plane[u, v] = best[m]
                    winner_plane[u, v] = (u * t + a) * W + v * t + row_b[m + a * Wp]
    return y.reshape(N, C, Ho, Wo), winner.reshape(N, C, Ho, Wo)


@njit(parallel=True, cache=True)
def maxpool_plane_groups(x, k, t, top, left, Ho, Wo, group, through_ramp, s, addend):
    """The maximum of each window and where it is, ``group`` planes at a time laid out with the planes last: -> y, winner.

    The (n, c) planes go by groups of ``group``: a group is copied into ``cells``
    (H·W, group), each cell of the image a run of the group's planes (σ applied on the
    way when ``through_ramp``, and then ``addend``'s cell added when it is not empty: a
    sum block's σ(h) + a, as ``tuned_activations.ramp_plus`` forms it), and the
    windows are then taken by ``pool_window_of_runs``, as ``ramp_maxpool_images_last``
    takes them along the images: cell by cell in row-major order, clipped to the image,
    one select per plane, so the first maximum in row-major order wins, as in
    ``maxpool_windows``. Planes are far apart in x (H·W numbers), the
    cells of one window close together: the copy turns the one into the other once,
    where the padded path's passes run along each plane and then pick every t-th
    position out. One parallel iteration per group; the last group may be short.
    """
    N, C, H, W = x.shape
    P = N * C
    planes = x.reshape(P, H * W)
    y = np.empty((P, Ho * Wo), dtype=x.dtype)
    winner = np.empty((P, Ho * Wo), dtype=np.int32)
    one = x.dtype.type(1)
    # an array either way, so that one build serves both (None would be a second build): no rows when empty
    extras = addend.reshape(addend.shape[0] * addend.shape[1], H * W)
    for g in prange((P + group - 1) // group):
        p0 = g * group
        L = min(group, P - p0)
        cells = np.empty((H * W, group), dtype=x.dtype)
        best = np.empty(group, dtype=x.dtype)
        where = np.empty(group, dtype=np.int32)
        for m in range(L):  # the group's planes, each laid along the cells
            plane = planes[p0 + m]
            if extras.shape[0] > 0:
                extra = extras[p0 + m]
                for q in range(H * W):
                    cells[q, m] = min(max(s * plane[q], -one), one)  # σ(h), rounded to the dtype,
                    cells[q, m] = cells[q, m] + extra[q]  # then + a: tuned_activations.ramp_plus's two steps
            elif through_ramp:
                for q in range(H * W):
                    cells[q, m] = min(max(s * plane[q], -one), one)  # tuned_activations.ramp's expression
            else:
                for q in range(H * W):
                    cells[q, m] = plane[q]
        pool_image_of_runs(y[p0:p0 + L], winner[p0:p0 + L], L, best, where, cells, H, W, top, left, Ho, Wo, k, t, s,
                           False)  # the last group's runs past L: not read
    return y.reshape(N, C, Ho, Wo), winner.reshape(N, C, Ho, Wo)


@njit(cache=True, inline="always")
def scatter_plane(plane, dy_row, winner_row):
    """plane = 0, then plane[winner] += dy: one (n, c) plane of the backward scatter."""
    for m in range(plane.size):  # zeroed plane by plane, while it is in cache
        plane[m] = 0
    for m in range(dy_row.size):
        plane[winner_row[m]] += dy_row[m]


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
        scatter_plane(e[p], dy_rows[p], winner_rows[p])
    return e.reshape(N, C, H, W)


@njit(parallel=True, cache=True)
def scatter_to_winners_ramp(dy, winner, h, s):
    """δ = (e scattered to the winners) ⊙ σ'(h), plane by plane: (N, C, Ho, Wo) -> (N, C, H, W).

    The error through a pool and then through the ramp below it (h its input, s its
    slope), with each plane's scatter still in cache when σ' is applied: the same
    numbers as ``scatter_to_winners`` followed by ``tuned_activations.ramp_backward``
    (whose expression this is), without writing e out and reading it back.
    """
    N, C, Ho, Wo = dy.shape
    H, W = h.shape[2], h.shape[3]
    delta = np.empty((N * C, H * W), dtype=dy.dtype)
    dy_rows, winner_rows = dy.reshape(N * C, Ho * Wo), winner.reshape(N * C, Ho * Wo)
    h_rows = h.reshape(N * C, H * W)
    one, zero = h.dtype.type(1), dy.dtype.type(0)
    for p in prange(N * C):
        plane, h_plane = delta[p], h_rows[p]
        scatter_plane(plane, dy_rows[p], winner_rows[p])
        for m in range(H * W):
            v = plane[m] * s  # read before the test (tuned_activations)
            plane[m] = v if abs(s * h_plane[m]) <= one else zero
    return delta.reshape(N, C, H, W)


@njit(parallel=True, cache=True)
def scatter_to_winners_ramp_of_sum(e1, dy, winner, h, s):
    """δ = (e1 + e scattered to the winners) ⊙ σ'(h), plane by plane: (N, C, Ho, Wo) -> (N, C, H, W).

    A sum block's first ramp with a pool above the block: e1 comes down through the
    block's second conv, dy through the pool. Each plane's scatter is still in cache when
    e1 is added and σ' applied: the same numbers as ``scatter_to_winners`` followed by
    ``tuned_activations.ramp_backward_of_sum`` (whose expression this is), without
    writing the pool's error out and reading it back.
    """
    N, C, Ho, Wo = dy.shape
    H, W = h.shape[2], h.shape[3]
    delta = np.empty((N * C, H * W), dtype=dy.dtype)
    dy_rows, winner_rows = dy.reshape(N * C, Ho * Wo), winner.reshape(N * C, Ho * Wo)
    h_rows, e1_rows = h.reshape(N * C, H * W), e1.reshape(N * C, H * W)
    one, zero = h.dtype.type(1), dy.dtype.type(0)
    for p in prange(N * C):
        plane, h_plane, e1_plane = delta[p], h_rows[p], e1_rows[p]
        scatter_plane(plane, dy_rows[p], winner_rows[p])  # the pool's error, 0 off the winners
        for m in range(H * W):
            v = (e1_plane[m] + plane[m]) * s  # read before the test (tuned_activations)
            plane[m] = v if abs(s * h_plane[m]) <= one else zero
    return delta.reshape(N, C, H, W)


@njit(parallel=True, cache=True)
def ramp_maxpool_images_last(h, k, t, top, left, Ho, Wo, s):
    """y = max over each window of σ(h), σ(h) = clip(s·h, -1, 1), h with the images last: (C, H, W, N) -> y (N, C, Ho, Wo), winner (C, Ho, Wo, N).

    Each window by ``pool_window_of_runs``: its cells in row-major order, clipped to
    the image, each cell a run of N images (a select per image, no branch), so the first
    maximum in row-major order wins, as in ``maxpool_windows``. ``winner`` holds the
    cell's flat index r·W + q in its (H, W) plane where σ'(h) = s there (|s·h| <= 1),
    and -1 - r·W - q where the ramp saturates (σ' = 0), so that the backward pass
    (``maxpool_ramp_backward_images_last``) needs no h; it stays with the images last,
    as that pass reads it. y goes out with the images first, the layout
    of the layers above: one parallel iteration per channel, whose plane of maxima
    (Ho·Wo runs of N images) is then written image by image, each image's plane a
    contiguous run of y, while the maxima are in cache (no transposition of y after).
    """
    C, H, W, N = h.shape
    y = np.empty((N, C, Ho * Wo), dtype=h.dtype)
    winner = np.empty((C, Ho, Wo, N), dtype=np.int32)
    for c in prange(C):
        runs = h[c].reshape(H * W, N)  # cell r·W + q: its run of N images
        maxima = np.empty((Ho * Wo, N), dtype=h.dtype)
        for u in range(Ho):
            for v in range(Wo):
                pool_window_of_runs(maxima[u * Wo + v], winner[c, u, v], runs, H, W, u * t - top, v * t - left, k, s,
                                    True)
        for n in range(N):
            plane = y[n, c]
            for p in range(Ho * Wo):
                plane[p] = maxima[p, n]
    return y.reshape(N, C, Ho, Wo), winner


@njit(cache=True, inline="always")
def pool_image_of_runs(y, winner, count, best, where, runs, H, W, top, left, Ho, Wo, k, t, s, ramp):
    """Every k×k window at stride t of an H×W image whose cells are runs (``pool_window_of_runs``; ``top`` and
    ``left`` the padding before it), the first ``count`` runs' maxima and marks written out:
    y[m, u·Wo + v] = best[m], winner[m, u·Wo + v] = where[m]. The window walk and write-out of the
    plane groups (``maxpool_plane_groups``) and of both conv blocks (``tuned_conv_block``'s direct
    loops, ``tuned_conv_channels.pool_of_correlation``)."""
    for u in range(Ho):
        for v in range(Wo):
            pool_window_of_runs(best, where, runs, H, W, u * t - top, v * t - left, k, s, ramp)
            o = u * Wo + v
            for m in range(count):
                y[m, o] = best[m]
                winner[m, o] = where[m]


@njit(cache=True, inline="always")
def pool_window_of_runs(best, where, runs, H, W, r0, s0, k, s, ramp):
    """The k×k window at row r0, column s0 (less than 0 in the padding) of an H×W image, each of its cells a run of
    numbers pooled side by side (images, planes or channels): ``runs[r·W + q]``.

    The window is clipped to the image, and its cells taken in row-major order: the
    first cell sets ``best`` and ``where`` for every run, each later one replaces them
    where it is strictly larger (a select per run, no branch: the loop along the run
    vectorises), so the first maximum in row-major order wins, as in ``maxpool_windows``. ``where`` gets the cell's flat
    index r·W + q (``keep_larger``). With ``ramp``, σ(runs) is pooled and a cell where
    the ramp saturates is marked -1 - r·W - q (``keep_larger_of_ramp``). The window walk
    of the pools that take runs: ``ramp_maxpool_images_last``, and through
    ``pool_image_of_runs`` ``maxpool_plane_groups`` and the conv block's two paths.
    """
    first = True
    for r in range(max(r0, 0), min(r0 + k, H)):
        for q in range(max(s0, 0), min(s0 + k, W)):
            label = np.int32(r * W + q)
            cells = runs[r * W + q]
            if ramp:
                keep_larger_of_ramp(best, where, cells, label, s, first)
            elif first:  # the first cell is the best so far of every run
                for m in range(best.size):
                    best[m] = cells[m]
                    where[m] = label
            else:
                keep_larger(best, where, cells, label, 0, best.size)
            first = False


@njit(cache=True, inline="always")
def keep_larger_of_ramp(best, where, cells, label, s, first):
    """One cell of a window, a run: where σ(cells) beats ``best`` (or ``first``), it becomes best, its mark ``where``.

    The mark is ``label`` where σ' = s at the cell (|s·h| <= 1), -1 - ``label`` where
    the ramp saturates. A select per image, no branch: the loop vectorises (the larger
    value by ``np.maximum``, as in ``keep_larger``). The old best and mark are read
    before the selects, not in them: a number read only where a select needs it is a
    conditional read, which compiled for AVX2 LLVM makes a masked load (``vmaskmovps``),
    slow on AMD's CPUs (BENCHMARKS.md, 2026-12-03, sixth session). On the ``first`` cell
    they are read and dropped.
    """
    saturated = np.int32(-1) - label
    one = cells.dtype.type(1)
    for m in range(best.size):
        old, old_where = best[m], where[m]  # read before the selects, not under them (the docstring)
        value = min(max(s * cells[m], -one), one)  # tuned_activations.ramp's expression
        mark = label if abs(s * cells[m]) <= one else saturated  # σ' is s, or 0
        larger = first or value > old
        best[m] = value if first else np.maximum(value, old)
        where[m] = mark if larger else old_where


@njit(parallel=True, cache=True)
def maxpool_ramp_backward_images_last(dy, winner, H, W, k, t, top, left, s):
    """δ = (dy sent to each window's winner) ⊙ σ'(h), with the images last: (C, Ho, Wo, N) -> (C, H, W, N).

    ``winner`` as ``ramp_maxpool_images_last`` marks it. Cell by cell, each a run of N
    images: ``delta_at`` sums the errors of the windows the cell wins and multiplies
    by s, reading no h. One parallel iteration per channel.
    """
    C, Ho, Wo, N = dy.shape
    delta = np.empty((C, H, W, N), dtype=dy.dtype)
    zero = dy.dtype.type(0)  # a bare 0 would make the selects, and the loops, float64
    for c in prange(C):
        for i in range(H):
            rows = windows_holding(i, k, t, top, Ho)
            for j in range(W):
                delta_at(dy, winner, c, i, j, W, rows, windows_holding(j, k, t, left, Wo), 0, s, zero, delta[c, i, j])
    return delta


@njit(cache=True, inline="always")
def delta_at(dy, winner, c, i, j, W, rows, columns, n0, s, zero, cells):
    """cells[m] = s · Σ dy[c, u, v, n0 + m] over the windows (u, v) whose winner for image n0 + m is cell (i, j).

    dy and ``winner`` with the images last, (C, Ho, Wo, N), ``winner`` as
    ``ramp_maxpool_images_last`` marks it; ``rows`` and ``columns`` are the (first,
    last) windows that hold row i and column j (``windows_holding``); ``cells`` the run
    of images to fill. The windows are taken in row-major order, so each cell sums its
    errors in the order ``scatter_plane`` adds them; a select per image, no branch. A
    cell where the ramp saturates was marked -1 - its index, wins no error and ends at
    0, as σ' = 0 makes it in ``scatter_to_winners_ramp``. Used by
    ``maxpool_ramp_backward_images_last`` and by the untied block's increment
    (``tuned_untied_block.increment_from_winners``): one form of δ for both.
    """
    L = cells.size
    label = np.int32(i * W + j)
    for m in range(L):
        cells[m] = zero
    for u in range(rows[0], rows[1] + 1):
        for v in range(columns[0], columns[1] + 1):
            errors, where = dy[c, u, v, n0 : n0 + L], winner[c, u, v, n0 : n0 + L]
            for m in range(L):  # vectorised
                error = errors[m]  # read before the test (keep_larger_of_ramp)
                cells[m] += error if where[m] == label else zero
    for m in range(L):
        cells[m] *= s


@njit(cache=True)
def windows_holding(i, k, t, before, count):
    """(first, last): the windows of a k-wide pool at stride t, ``before`` cells of padding before, that hold cell i.

    first > last where no window holds it.
    """
    return max(0, -((k - 1 - i - before) // t)), min(count - 1, (i + before) // t)


def _windows(x, k, t):
    """(top, left, Ho, Wo): the padding before and the output size of "same" pooling on x."""
    H, W = x.shape[2:]
    top, _, Ho = pool_padding(H, k, t)
    left, _, Wo = pool_padding(W, k, t)
    return top, left, Ho, Wo


def maxpool_forward(x, k, t):
    """y = max over each k×k window at stride t: (N, C, H, W) -> (N, C, Ho, Wo); cache = winners."""
    y, winner = maxpool_windows(np.ascontiguousarray(x), k, t, *_windows(x, k, t))
    return y, (winner, x.shape[2:])


def maxpool_forward_separable(x, k, t):
    """The same as ``maxpool_forward``, by the row and column passes of ``maxpool_separable``."""
    chunks = min(x.shape[0] * x.shape[1], 8 * numba.get_num_threads())  # 8 per thread: they even out
    y, winner = maxpool_separable(np.ascontiguousarray(x), k, t, *_windows(x, k, t), chunks)
    return y, (winner, x.shape[2:])


def maxpool_forward_separable_padded(x, k, t, through_ramp=False, slope=DEFAULT_SLOPE):
    """The same as ``maxpool_forward``, by ``maxpool_separable_padded`` (by ``maxpool_separable`` when padding comes before).

    ``through_ramp``: pool σ(x) instead, σ applied as each plane is copied (formed first on the fallback).
    """
    x = np.ascontiguousarray(x)
    top, left, Ho, Wo = _windows(x, k, t)
    if top or left:
        return maxpool_forward_separable(ramp(x, slope) if through_ramp else x, k, t)
    chunks = min(x.shape[0] * x.shape[1], 8 * numba.get_num_threads())
    y, winner = maxpool_separable_padded(x, k, t, Ho, Wo, chunks, through_ramp, x.dtype.type(slope))
    return y, (winner, x.shape[2:])


def ramp_maxpool_forward_padded(h, k, t, slope=DEFAULT_SLOPE):
    """maxpool_forward(σ(h), k, t), σ applied as ``maxpool_separable_padded`` copies each plane; -> (y, cache)."""
    return maxpool_forward_separable_padded(h, k, t, through_ramp=True, slope=slope)


def maxpool_forward_plane_groups(x, k, t, group=None, through_ramp=False, slope=DEFAULT_SLOPE):
    """The same as ``maxpool_forward``, by ``maxpool_plane_groups``, ``group`` planes at a time (default PLANES_PER_GROUP)."""
    x = np.ascontiguousarray(x)
    y, winner = maxpool_plane_groups(x, k, t, *_windows(x, k, t), group or PLANES_PER_GROUP, through_ramp,
                                     x.dtype.type(slope), np.empty((0, 0, 0, 0), dtype=x.dtype))  # no addend
    return y, (winner, x.shape[2:])


def ramp_maxpool_forward_plane_groups(h, k, t, slope=DEFAULT_SLOPE, group=None):
    """maxpool_forward(σ(h), k, t), σ applied as ``maxpool_plane_groups`` lays each group of planes out; -> (y, cache)."""
    return maxpool_forward_plane_groups(h, k, t, group, through_ramp=True, slope=slope)


def ramp_plus_maxpool_forward_plane_groups(h, a, k, t, slope=DEFAULT_SLOPE, group=None):
    """maxpool_forward(σ(h) + a, k, t), σ(h) + a formed as ``maxpool_plane_groups`` lays each group out; -> (y, cache)."""
    h = np.ascontiguousarray(h)
    a = np.ascontiguousarray(a, dtype=h.dtype)
    if a.shape != h.shape:
        raise ValueError(f"a has shape {a.shape}, h has {h.shape}")
    y, winner = maxpool_plane_groups(h, k, t, *_windows(h, k, t), group or PLANES_PER_GROUP, True,
                                     h.dtype.type(slope), a)
    return y, (winner, h.shape[2:])


def ramp_maxpool_forward_loops(h, k, t, slope=DEFAULT_SLOPE):
    """maxpool_forward(σ(h), k, t) in two passes: the ramp, then the pool window by window; -> (y, cache)."""
    return maxpool_forward(ramp(h, slope), k, t)


def maxpool_backward(dy, cache):
    """Route each window's error to its maximum: (N, C, Ho, Wo) -> (N, C, H, W)."""
    winner, (H, W) = cache
    return scatter_to_winners(np.ascontiguousarray(dy), winner, H, W)


def maxpool_ramp_backward(dy, cache, h, slope=DEFAULT_SLOPE):
    """δ = (maxpool_backward of dy) ⊙ σ'(h) in one pass over each plane: (N, C, Ho, Wo) -> (N, C, H, W)."""
    winner, shape = cache
    h = np.ascontiguousarray(h)
    if h.shape[2:] != tuple(shape):
        raise ValueError(f"h has planes of {h.shape[2:]}, the pool's input had {tuple(shape)}")
    return scatter_to_winners_ramp(np.ascontiguousarray(dy, dtype=h.dtype), winner, h, h.dtype.type(slope))


def maxpool_ramp_backward_of_sum(e1, dy, cache, h, slope=DEFAULT_SLOPE):
    """δ = (e1 + maxpool_backward of dy) ⊙ σ'(h) in one pass over each plane: a sum block's first ramp, a pool above.

    (N, C, H, W) and (N, C, Ho, Wo) -> (N, C, H, W), in h's dtype.
    """
    winner, shape = cache
    h = np.ascontiguousarray(h)
    e1 = np.ascontiguousarray(e1, dtype=h.dtype)
    if h.shape[2:] != tuple(shape) or e1.shape != h.shape:
        raise ValueError(f"e1 {e1.shape} and h {h.shape} must have one shape, with the planes of the pool's input "
                         f"{tuple(shape)}")
    return scatter_to_winners_ramp_of_sum(e1, np.ascontiguousarray(dy, dtype=h.dtype), winner, h,
                                          h.dtype.type(slope))
