"""TUNED TIER. A tied conv layer, its ramp and the max pool above, as one step each way.  # SPEC §2, §3, §5

The first block of ``simple`` (``conv5:32 ramp pool3s2``), as a network takes it
when the three sit in a row (``hebbref.network``):

    forward:   h = W ⊛ x,  y = maxpool(σ(h))                      conv_ramp_maxpool_forward
    backward:  δ = (dy sent to the winners) ⊙ σ'(h),  G = Σ δ xᵀ    maxpool_ramp_conv_backward

Three paths, which ``plan.choose`` times against each other (each forward pass with the
backward pass it implies):

``direct``: the direct loops of ``tuned_conv_direct``, with the ramp and the pool taken
while each image's h is still in cache; neither h nor δ is written out.

    forward:   image by image (one parallel iteration each), the output planes two at a
               time (``add_terms``, as ``correlate_valid_direct`` makes them), laid out
               with the planes last in a buffer of one image's h; the pool of σ(h) then
               runs window by window along the planes, a select per plane
               (``tuned_pooling.pool_window_of_runs``, as the untied block's pool runs
               along the images), and marks each winner where the ramp saturates
               (-1 - its index), so that the backward pass needs no h
    backward:  the direct path's increment (``tuned_conv_direct.planes_increment``),
               each δ plane formed from the pool's errors at the marked winners
               (``delta_plane``: a cell's windows summed in order, times s; 0 where
               σ' = 0 or no window won) rather than copied from δ

``channels``: the channel path's vectors of sums (``tuned_conv_channels``: a block of
output channels in vector registers, eight or six positions at a time), float32 only.

    forward:   image by image, the sums of every position land in a buffer laid out
               with the channels last, the layout the pool's window walk takes, and the
               windows are pooled from it at once, the winners marked as above
               (``tuned_conv_channels.pool_of_correlation``); neither h nor its
               planes are written
    backward:  the channel path's increment, each image's δ formed with the channels
               last from the pool's errors at the marked winners, as ``delta_plane``
               forms a plane (``tuned_conv_channels.increment_from_winners``)

``in-turn``: the tuned backend's own functions in a row (its conv forward pass and
increment, ``ramp_maxpool_forward``, ``maxpool_ramp_backward``), each by its own plan
(``plan._in_turn``).

h (the ramp's input) and δ (the conv layer's), in the (N, C, H, W) layout of the rest
of the library, are formed only when something asks for them (a probe, the input
error of a conv layer that is not the first): the ``direct`` path returns them as
functions of no arguments. h is the direct loops' sum again, from the forward pass's
x and W (W copied: the update that follows changes the layer's own); δ comes from
the marked winners, the same numbers as the rows the increment forms.

Where the in-turn forward pass took the direct loops at the same terms per pass (or the
channels at the same span), the two give the same h, y and winners to the bit (the same
sums in the same order), the same δ up to the sign of a zero where the ramp saturates
(here +0; e·0 in ``tuned_pooling.scatter_to_winners_ramp``), and the same G. With the
other conv paths, they agree up to rounding.
"""
from dataclasses import dataclass

import numba
import numpy as np
from numba import njit, prange

from ..layers.conv import same_padding
from . import tuned_conv_channels, tuned_pooling
from .tuned_conv_direct import FASTMATH, TERMS_PER_PASS, add_terms, correlate_valid_direct, pad_spatial, paired, \
    planes_increment, sum_of_parts, tap_offsets


@dataclass(frozen=True)
class Direct:
    """The ``direct`` path's cache: what its backward pass reads."""
    xp: np.ndarray  # x padded, (N, C_in, Hp, Wp): the conv layer's cache, as on the direct conv path
    winner: np.ndarray  # each window's winner, marked where the ramp saturates, (N, C_out, Ho, Wo)
    width: int  # terms per pass of the direct loops, forward and increment alike
    h_shape: tuple  # (H, W) of h


@dataclass(frozen=True)
class Channels:
    """The ``channels`` path's cache: what its backward pass reads."""
    x: np.ndarray  # the layer's input, (N, C_in, H, W), as the channel path's conv cache holds it
    winner: np.ndarray  # each window's winner, marked where the ramp saturates, (N, C_out, Ho, Wo)
    k: int  # the conv's kernel width
    span: int  # positions (forward) and window terms (increment) per pass


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def conv_ramp_maxpool_direct(xp, W, k, t, top, left, Ho, Wo, s, width):
    """y = the max of σ(h) over each k×k window at stride t, h = W ⊛ x, image by image: -> y, winner (N, C_out, Ho, Wo).

    ``xp`` is x padded for the conv (N, C_in, Hp, Wp); ``top`` and ``left`` the pool's
    padding before the image. One image's planes are made two at a time by
    ``add_terms`` (an odd last one paired with itself, its twin dropped), each with its
    rows Wp apart, and copied into ``cells`` (H·W, C_out): each cell of the image a run
    of its C_out planes. The windows are then taken cell by cell in row-major order, clipped to
    the image, along the run (``tuned_pooling.pool_window_of_runs``): the first maximum of σ(h) in
    row-major order wins, as in ``tuned_pooling.maxpool_windows``, and ``winner`` holds
    its flat index r·W + q where σ'(h) = s, -1 - r·W - q where the ramp saturates.
    """
    N, C, Hp, Wp = xp.shape
    O, _, kc, _ = W.shape
    H, Wd = Hp - kc + 1, Wp - kc + 1
    L = (H - 1) * Wp + Wd  # flat length that covers every output, rows Wp apart
    offsets = tap_offsets(C, Hp, Wp, kc)
    x_flat = xp.reshape(N, C * Hp * Wp)
    w_flat = W.reshape(O, C * kc * kc)
    y = np.empty((N, O, Ho * Wo), dtype=xp.dtype)
    winner = np.empty((N, O, Ho * Wo), dtype=np.int32)
    for n in prange(N):
        planes = np.empty((O + 1, L), dtype=xp.dtype)  # h[n], rows Wp apart; row O: an odd last plane's twin
        cells = np.empty((H * Wd, O), dtype=xp.dtype)  # h[n], the planes last
        best = np.empty(O, dtype=xp.dtype)
        where = np.empty(O, dtype=np.int32)
        planes[:] = 0
        for o in range(0, O, 2):
            add_terms(planes[o], planes[o + 1], x_flat[n], offsets, w_flat[o], w_flat[paired(o, O)], L, width)
        for i in range(H):
            for j in range(Wd):
                run = cells[i * Wd + j]  # written in order, read from C_out rows that stay in cache along j
                for o in range(O):
                    run[o] = planes[o, i * Wp + j]
        tuned_pooling.pool_image_of_runs(y[n], winner[n], O, best, where, cells, H, Wd, top, left, Ho, Wo, k, t, s,
                                         True)
    return y.reshape(N, O, Ho, Wo), winner.reshape(N, O, Ho, Wo)


@njit(cache=True, inline="always")
def delta_plane(plane, errors, marks, W, stride, s):
    """One (n, o) plane of δ, its rows ``stride`` apart: e = each window's error at its winner, then δ = e·s.

    ``marks`` as ``conv_ramp_maxpool_direct`` marks the winners: a window whose winner
    saturates the ramp (a negative mark) adds nothing, so that cell ends at 0, as σ' = 0
    makes it. Windows in order, as ``tuned_pooling.scatter_plane`` adds them; cells no
    window won, and the gaps between rows, are 0.
    """
    plane[:] = 0
    for m in range(errors.size):
        where = marks[m]
        if where >= 0:
            plane[(where // W) * stride + where % W] += errors[m]
    for m in range(plane.size):
        plane[m] *= s


@njit(cache=True, inline="always")
def plane_from_winners(plane, source, n, o, stride):
    """δ[n, o] by ``delta_plane``, ``source`` = (the pool's errors and the marked winners, both (N, O, Ho·Wo), W, s).

    The form of a δ plane that ``tuned_conv_direct.planes_increment`` takes, so that
    the block's increment is the direct path's with δ made from the winners rather than
    copied from δ.
    """
    errors, marks, W, s = source
    delta_plane(plane, errors[n, o], marks[n, o], W, stride, s)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def increment_from_winners(errors, marks, W, s, xp, k, chunks, zero, width):
    """G's partial sums (``sum_of_parts`` adds them up), each δ plane formed from the pool's errors and marks
    (N, O, Ho·Wo) by ``plane_from_winners``.

    The direct path's increment, ``tuned_conv_direct.planes_increment``, inlined here with
    this block's form of a plane.
    """
    return planes_increment(plane_from_winners, (errors, marks, W, s), errors.shape[1], xp, k, chunks, zero, width)


@njit(parallel=True, cache=True)
def delta_from_winners(dy, winner, H, W, s):
    """δ (N, O, H, W) from the pool's errors and the marked winners, plane by plane (``delta_plane``)."""
    N, O, Ho, Wo = dy.shape
    delta = np.empty((N * O, H * W), dtype=dy.dtype)
    errors, marks = dy.reshape(N * O, Ho * Wo), winner.reshape(N * O, Ho * Wo)
    for plane in prange(N * O):
        delta_plane(delta[plane], errors[plane], marks[plane], W, W, s)
    return delta.reshape(N, O, H, W)


def forward_direct_path(x, W, k, t, slope, width=None):
    """The block's forward pass by the direct loops: -> (y, conv cache, h as a function, cache)."""
    x, W = np.ascontiguousarray(x), np.ascontiguousarray(W)
    width = width or TERMS_PER_PASS
    before, after = same_padding(W.shape[-1])
    xp = pad_spatial(x, before, after)  # (N, C_in, H+k-1, W+k-1): the conv layer's cache, as on the direct path
    top, left, Ho, Wo = tuned_pooling._windows(x, k, t)
    y, winner = conv_ramp_maxpool_direct(xp, W, k, t, top, left, Ho, Wo, x.dtype.type(slope), width)
    W_then = W.copy()  # the layer's W changes in the update that follows

    def h():  # formed only when read
        return correlate_valid_direct(xp, W_then, width)

    conv_cache = ("direct", (xp, width), numba.get_num_threads())  # as tuned.conv_forward returns it
    return y, conv_cache, h, Direct(xp, winner, width, x.shape[2:])


def backward_direct_path(dy, cache, slope):
    """The block's backward pass by the direct loops: -> (δ as a function, G)."""
    dtype = cache.xp.dtype
    dy = np.ascontiguousarray(dy, dtype=dtype)
    H, W = cache.h_shape
    s = dtype.type(slope)
    chunks = min(dy.shape[0], numba.get_num_threads())
    N, O, Ho, Wo = dy.shape
    k = cache.xp.shape[-1] - W + 1
    G = sum_of_parts(increment_from_winners(dy.reshape(N, O, Ho * Wo), cache.winner.reshape(N, O, Ho * Wo), W, s,
                                            cache.xp, k, chunks, dtype.type(0), cache.width), k)

    def delta():  # formed only when read
        return delta_from_winners(dy, cache.winner, H, W, s)

    return delta, G


def forward_channels_path(x, W, k, t, slope, span=None):
    """The block's forward pass by the channel path: -> (y, conv cache, h as a function, cache). float32."""
    x = np.ascontiguousarray(x)
    span = tuned_conv_channels.span_given(span)
    kc = W.shape[-1]
    before, _ = same_padding(kc)
    top, left, Ho, Wo = tuned_pooling._windows(x, k, t)
    y, winner = tuned_conv_channels.pool_of_correlation(
        x, tuned_conv_channels.weights_by_block(W), W.shape[0], kc, before, k, t, top, left, Ho, Wo, np.float32(slope),
        tuned_conv_channels.runs_per_thread(x.shape[0]), span)
    W_then = W.copy()  # the layer's W changes in the update that follows

    def h():  # formed only when read
        return tuned_conv_channels.forward(x, W_then, span)[0]

    conv_cache = ("channels", (x, kc, span), numba.get_num_threads())  # as tuned.conv_forward returns it
    return y, conv_cache, h, Channels(x, winner, kc, span)


def backward_channels_path(dy, cache, slope):
    """The block's backward pass by the channel path: -> (δ as a function, G). float32."""
    dy = np.ascontiguousarray(dy, dtype=np.float32)
    H, W = cache.x.shape[2:]
    s = np.float32(slope)
    N, O, Ho, Wo = dy.shape
    before, _ = same_padding(cache.k)
    partial = tuned_conv_channels.increment_from_winners(
        dy.reshape(N, O, Ho * Wo), cache.winner.reshape(N, O, Ho * Wo), H, W, s, cache.x, cache.k, before,
        tuned_conv_channels.runs_per_thread(N), cache.span)
    G = tuned_conv_channels.sum_of_parts(partial, O, cache.x.shape[1], cache.k)

    def delta():  # formed only when read
        return delta_from_winners(dy, cache.winner, H, W, s)

    return delta, G
