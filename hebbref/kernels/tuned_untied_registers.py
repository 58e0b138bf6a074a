"""TUNED TIER. An untied layer's sums held in vector registers, ramped and pooled as they are formed.  # SPEC §2, §3, §5

The forward pass of the block ``lc ramp pool`` (``tuned_untied_block``), path
``registers``:

    h[n,o,i,j] = Σ_{c,a,b} W[i,j,o,c,a,b] xp[n,c,i+a,j+b]       (the untied sums)
    y[n,o,u,v] = max over the window (u, v) of σ(h[n,o]),  σ(h) = clip(s·h, -1, 1)

The ``images-last`` path writes h whole (C_out·H·W numbers per image: 50 MB for untied
``simple`` at batch 500), then reads it back to pool it. Here h is never written:

- **Sums.** Vectors run along the images, xp laid out batch last (C_in, Hp, Wp, N), so
  a window term of a location is a run of images. A piece of ``SPAN`` = 2·LANES images
  and a group of four or eight output channels make 8 or 16 vectors of sums
  (``tuned_simd``), held in registers while the location's C_in·k·k terms are added: a
  term loads two vectors of images and adds them times the group's broadcast weights
  (``four_channels`` once or twice; W laid out beforehand group by group, a term's
  weights together, ``weights_by_location``). The group is a constant of each build
  of a piece's loops (``piece_of_windows``), so the sums of the other four channels are not
  there at all where it is four; the parallel kernel (``ramp_maxpool_sums``) takes the group
  at run time and calls the build for it. The plan times both (eight suit 32 vector
  registers, four 16).
- **Ramp and pool.** The location's vectors of sums are ramped, and each cell's mark formed,
  as ``tuned_pooling.keep_larger_of_ramp`` forms them: the cell's flat index i·W + j
  where σ' = s (|s·h| <= 1) and -1 - i·W - j where the ramp saturates. Each is then
  pooled into the windows that hold the location (``windows_holding``: at most
  ⌈k/t⌉² of them), whose maxima and marks for the piece's images wait in a buffer of
  the piece's (a window's channels of the group next to each other). The locations go
  in row-major order, so every window meets its cells in row-major order: the first
  sets its maximum and mark, a later one replaces them where
  it is strictly larger, and the maximum is NumPy's (``vmaximum``), so the first maximum
  in row-major order wins, as in ``maxpool_windows``. The marks are kept as float32
  (exact: |i·W + j| < 2²⁴) and written out as int32.
- **Out.** When a group of channels is done, each window's marks go out as a run of
  the piece's images (the layout of ``winner``, images last), by ``tuned_simd.copy_run``:
  indexed by unsigned numbers, the loop compiles to plain vector loads, conversions and
  stores (by signed ones, LLVM made it gathers and scatters, slower than the sums; a
  slice assignment per run, as here before, costs more than the run's few numbers). y
  is laid out images first, so its planes are the buffer turned over:
  blocks of LANES windows by LANES images in registers (``tuned_simd.turn_over``).

The winners are marked as ``images-last`` marks them, so the backward pass is
``images-last``'s (``tuned_untied_block.backward_images_last_path``), which reads only
the winners and xp. The sums add one fused multiply-add per term, ``images-last`` eight
terms per pass: the two agree to rounding, and to the bit where the sums are exact
(``tests/test_untied_registers.py``). h itself, for a probe or a rule that asks for it,
is summed again, by ``images-last``'s sums, from xp and a copy of W kept in the cache
(``ImagesLast.h``).

One parallel iteration per piece of images; where N is not a multiple of ``SPAN`` the
last piece is the batch's last ``SPAN`` images, overlapping the one before, and writes
only its new ones (a batch of fewer than ``SPAN`` images is padded with zero images).
Output channels past the last whole group compute with zero weights and are not
written. float32 only (``plan.DTYPES``).
"""
import numpy as np
from numba import literally, njit, prange

from . import tuned_pooling
from .tuned_conv_direct import pad_spatial
from .tuned_locally_connected import _batch_last, batch_last_taps
from .tuned_pooling import windows_holding
from .tuned_simd import (LANES, copy_run, turn_over, vabs, vfma, vload, vmaximum, vmul, vsplat, vsplat_at, vstore,
                         vwhere_gt, vwhere_le, vzero)
from .tuned_untied_block import IMAGES_PER_TILE, ImagesLast
from ..layers.conv import same_padding

SPAN = 2 * LANES  # images per piece
# output channels per group, by default: with 32 vector registers (AVX-512) eight take 16 vectors of sums; with 16
# (AVX2), four take 8, and the two vectors of images and a broadcast weight fit beside them (with eight, LLVM keeps
# some sums in memory across the terms). The plan times both groups (plan.BLOCKS, "registers"), as for the row path
CHANNELS_PER_GROUP = 8 if LANES == 16 else 4


def weights_by_location(W, group):
    """W (H, W, O, C, k, k) -> flat (⌈O/group⌉, H, W, C·k·k, group): each group's weights, location by location
    and term by term, a term's ``group`` output channels together; zeros past O."""
    H, Wd, O, C, k, _ = W.shape
    by_term = W.reshape(H, Wd, O, C * k * k).transpose(0, 1, 3, 2)  # (H, W, C·k·k, O), a view
    w = np.zeros((-(-O // group), H, Wd, C * k * k, group), dtype=np.float32)
    for g in range(w.shape[0]):
        w[g, ..., : min(group, O - g * group)] = by_term[..., g * group : (g + 1) * group]
    return w.reshape(-1)


@njit(cache=True, inline="always")
def ramped(h, s, one, minus_one, label, saturated):
    """(σ(h), the cell's mark) for one vector of sums, as ``keep_larger_of_ramp`` forms them."""
    sh = vmul(s, h)
    value = vwhere_gt(minus_one, sh, minus_one, sh)  # max(s·h, -1), Python's max
    value = vwhere_gt(value, one, one, value)  # min(…, 1)
    return value, vwhere_le(vabs(sh), one, label, saturated)


@njit(cache=True, inline="always")
def pool_cell(best, mark, at, value, cell, first):
    """One cell of a window, a vector of images: the first sets the window's maximum and mark, a later one replaces them
    where it is strictly larger (``keep_larger_of_ramp``).

    The old mark is read before the new maximum is stored. Read after, the store of the
    mark is a select between the new mark and the number just read from the same place,
    which LLVM makes a masked store where it compiles for AVX2, slow on AMD's CPUs
    (BENCHMARKS.md, 2026-12-03, sixth session).
    """
    if first:
        vstore(best, at, value)
        vstore(mark, at, cell)
    else:
        b = vload(best, at)
        old = vload(mark, at)
        vstore(best, at, vmaximum(value, b))
        vstore(mark, at, vwhere_gt(value, b, cell, old))


@njit(cache=True, inline="always")
def four_channels(weights, w, a, b, s0, u0, s1, u1, s2, u2, s3, u3):
    """One term added to the sums of four output channels, two vectors of images each: s_r += w_r·a, u_r += w_r·b."""
    e = vsplat_at(weights, w); s0 = vfma(e, a, s0); u0 = vfma(e, b, u0)  # noqa: E702
    e = vsplat_at(weights, w + 1); s1 = vfma(e, a, s1); u1 = vfma(e, b, u1)  # noqa: E702
    e = vsplat_at(weights, w + 2); s2 = vfma(e, a, s2); u2 = vfma(e, b, u2)  # noqa: E702
    e = vsplat_at(weights, w + 3); s3 = vfma(e, a, s3); u3 = vfma(e, b, u3)  # noqa: E702
    return s0, u0, s1, u1, s2, u2, s3, u3


@njit(cache=True, inline="always")
def ramp_four_channels(sv, one, minus_one, label, saturated, s0, u0, s1, u1, s2, u2, s3, u3):
    """The sums of four output channels ramped and marked (``ramped``): -> their 8 values, then their 8 marks."""
    s0, m0 = ramped(s0, sv, one, minus_one, label, saturated)
    u0, p0 = ramped(u0, sv, one, minus_one, label, saturated)
    s1, m1 = ramped(s1, sv, one, minus_one, label, saturated)
    u1, p1 = ramped(u1, sv, one, minus_one, label, saturated)
    s2, m2 = ramped(s2, sv, one, minus_one, label, saturated)
    u2, p2 = ramped(u2, sv, one, minus_one, label, saturated)
    s3, m3 = ramped(s3, sv, one, minus_one, label, saturated)
    u3, p3 = ramped(u3, sv, one, minus_one, label, saturated)
    return s0, u0, s1, u1, s2, u2, s3, u3, m0, p0, m1, p1, m2, p2, m3, p3


@njit(cache=True, inline="always")
def pool_four_channels(best, mark, at, first, s0, u0, s1, u1, s2, u2, s3, u3, m0, p0, m1, p1, m2, p2, m3, p3):
    """Four output channels' ramped sums and marks pooled into one window, from ``at`` in its buffers."""
    pool_cell(best, mark, at, s0, m0, first)
    pool_cell(best, mark, at + LANES, u0, p0, first)
    pool_cell(best, mark, at + SPAN, s1, m1, first)
    pool_cell(best, mark, at + SPAN + LANES, u1, p1, first)
    pool_cell(best, mark, at + 2 * SPAN, s2, m2, first)
    pool_cell(best, mark, at + 2 * SPAN + LANES, u2, p2, first)
    pool_cell(best, mark, at + 3 * SPAN, s3, m3, first)
    pool_cell(best, mark, at + 3 * SPAN + LANES, u3, p3, first)


@njit(cache=True)
def piece_of_windows(x, weights, taps, T, n, new, N, O, H, Wd, Wp, k, t, top, left, Ho, Wo, s, best, mark, marks, ys,
                     group):
    """One piece of ``SPAN`` images from image n (its first ``new`` written by the piece before), every group of
    output channels: each location's sums held in registers, ramped, marked and pooled into the windows
    that hold it (``best``, ``mark``), then the group's windows written out (``marks``: the winners,
    images last; ``ys``: y, images first).

    ``literally(group)`` has Numba compile the body once for each group (4 or 8) with ``group`` a
    constant, so the sums of the other four channels are not there at all where it is four. It
    is called from the parallel kernel, not written in its loop: there Numba's parallel passes
    went over all of it, twice, and a first step of untied ``simple`` with an empty cache spent
    about a quarter of its time compiling the two builds (``benchmarks/compile_costs.py``,
    BENCHMARKS.md, thirteenth session).
    """
    literally(group)
    sv = vsplat(s)
    one = vsplat(np.float32(1.0))
    minus_one = vsplat(np.float32(-1.0))
    for g in range(-(-O // group)):
        for i in range(H):
            rows = windows_holding(i, k, t, top, Ho)
            for j in range(Wd):
                columns = windows_holding(j, k, t, left, Wo)
                xb = (i * Wp + j) * N + n
                wb = ((g * H + i) * Wd + j) * T * group
                s0 = vzero(); s1 = vzero(); s2 = vzero(); s3 = vzero()  # noqa: E702
                u0 = vzero(); u1 = vzero(); u2 = vzero(); u3 = vzero()  # noqa: E702
                s4 = vzero(); s5 = vzero(); s6 = vzero(); s7 = vzero()  # noqa: E702 (group 8 only)
                u4 = vzero(); u5 = vzero(); u6 = vzero(); u7 = vzero()  # noqa: E702
                for term in range(T):
                    a = vload(x, xb + taps[term])
                    b = vload(x, xb + taps[term] + LANES)
                    w = wb + term * group
                    s0, u0, s1, u1, s2, u2, s3, u3 = four_channels(weights, w, a, b, s0, u0, s1, u1, s2, u2, s3, u3)
                    if group == 8:
                        s4, u4, s5, u5, s6, u6, s7, u7 = four_channels(weights, w + 4, a, b, s4, u4, s5, u5, s6, u6,
                                                                       s7, u7)
                label = vsplat(np.float32(i * Wd + j))
                saturated = vsplat(np.float32(-1 - (i * Wd + j)))
                s0, u0, s1, u1, s2, u2, s3, u3, m0, p0, m1, p1, m2, p2, m3, p3 = ramp_four_channels(
                    sv, one, minus_one, label, saturated, s0, u0, s1, u1, s2, u2, s3, u3)
                s4, u4, s5, u5, s6, u6, s7, u7, m4, p4, m5, p5, m6, p6, m7, p7 = ramp_four_channels(
                    sv, one, minus_one, label, saturated, s4, u4, s5, u5, s6, u6, s7, u7)  # group 8 only
                for u in range(rows[0], rows[1] + 1):
                    for v in range(columns[0], columns[1] + 1):
                        first = i == max(u * t - top, 0) and j == max(v * t - left, 0)
                        at = (u * Wo + v) * group * SPAN  # the window's channels next to each other
                        pool_four_channels(best, mark, at, first, s0, u0, s1, u1, s2, u2, s3, u3,
                                           m0, p0, m1, p1, m2, p2, m3, p3)
                        if group == 8:
                            pool_four_channels(best, mark, at + 4 * SPAN, first, s4, u4, s5, u5, s6, u6, s7, u7,
                                               m4, p4, m5, p5, m6, p6, m7, p7)
        o = g * group
        for r in range(min(group, O - o)):  # the group's windows out, each in the order of its array
            for p in range(Ho * Wo):  # the marks as int32, images last: a run of images per window
                at = (p * group + r) * SPAN
                out = ((o + r) * Ho * Wo + p) * N + n
                copy_run(mark, at + new, marks, out + new, SPAN - new)  # float32 to int32, exact
            # y images first: channel r of every window of the piece's new images, turned over
            turn_over(best, r * SPAN + new, group * SPAN, ys, ((n + new) * O + o + r) * Ho * Wo, O * Ho * Wo,
                      Ho * Wo, SPAN - new)


@njit(parallel=True, cache=True)
def ramp_maxpool_sums(x_last, weights, O, kc, H, Wd, k, t, top, left, Ho, Wo, s, group):
    """y = max over each window of σ(h), h the untied sums, never written: -> y (N, O, Ho, Wo), winner
    (O, Ho, Wo, N).

    ``x_last`` is xp batch last, (C_in, Hp, Wp, N), N ≥ SPAN; ``weights`` is
    ``weights_by_location(W, group)``; ``winner`` marked as ``ramp_maxpool_images_last``
    marks it. One parallel iteration per piece of ``SPAN`` images, each by the build of
    ``piece_of_windows`` for ``group`` (4 or 8), given at run time: this kernel is built once.
    """
    C, Hp, Wp, N = x_last.shape
    T = C * kc * kc
    taps = batch_last_taps(C, Hp, Wp, kc, N)
    x = x_last.reshape(-1)
    y = np.empty((N, O, Ho * Wo), dtype=np.float32)
    ys = y.reshape(-1)
    winner = np.empty((O, Ho, Wo, N), dtype=np.int32)
    marks = winner.reshape(-1)
    for piece in prange(-(-N // SPAN)):
        n = min(piece * SPAN, N - SPAN)  # the piece's first image
        new = piece * SPAN - n  # images of the piece before this one are written by that one
        best = np.empty(Ho * Wo * group * SPAN, dtype=np.float32)
        mark = np.empty(Ho * Wo * group * SPAN, dtype=np.float32)
        if group == 8:
            piece_of_windows(x, weights, taps, T, n, new, N, O, H, Wd, Wp, k, t, top, left, Ho, Wo, np.float32(s),
                             best, mark, marks, ys, 8)
        else:
            piece_of_windows(x, weights, taps, T, n, new, N, O, H, Wd, Wp, k, t, top, left, Ho, Wo, np.float32(s),
                             best, mark, marks, ys, 4)
    return y.reshape(N, O, Ho, Wo), winner


def forward_registers_path(x, W, k, t, slope, group=None):
    """The block's forward pass by the sums in registers: -> (y, xp, h as a function, cache), as
    ``tuned_untied_block.forward_images_last_path`` returns them; its backward pass reads the cache.

    ``group``: output channels summed at a time, 4 or 8 (default ``CHANNELS_PER_GROUP``).
    """
    if np.asarray(x).dtype != np.float32 or W.dtype != np.float32:
        raise TypeError(f"the registers path computes in float32 only (plan.DTYPES), not {np.asarray(x).dtype} "
                        f"and {W.dtype}")
    x = np.ascontiguousarray(x)
    W = W.copy()  # h, formed when asked for, is of the W of this pass
    N = x.shape[0]
    kc = W.shape[-1]
    before, after = same_padding(kc)
    xp = pad_spatial(x, before, after)  # (N, C_in, H+k-1, W+k-1): the untied layer's cache, as on its other paths
    x_last = _batch_last(xp)
    x_pieces = x_last if N >= SPAN else np.concatenate(
        [x_last, np.zeros(x_last.shape[:-1] + (SPAN - N,), np.float32)], axis=-1)
    top, left, Ho, Wo = tuned_pooling._windows(x, k, t)
    H, Wd, O = W.shape[:3]
    group = group or CHANNELS_PER_GROUP
    if group not in (4, 8):
        raise ValueError(f"the registers path sums 4 or 8 output channels at a time, not {group}")
    y, winner = ramp_maxpool_sums(x_pieces, weights_by_location(W, group), O, kc, H, Wd, k, t, top, left, Ho, Wo,
                                  np.float32(slope), group)
    if N < SPAN:
        y, winner = np.ascontiguousarray(y[:N]), np.ascontiguousarray(winner[..., :N])
    cache = ImagesLast(x_last, None, winner, (k, t, top, left), IMAGES_PER_TILE, (H, Wd), W)
    return y, xp, cache.h, cache
