"""TUNED TIER. Which path computes an equation, and on how many threads: plans by measurement.

Every choice the tuned backend makes between ways of computing the same numbers is made
in one function, ``choose(equation, *arguments)``, and nowhere else. The candidates,
per equation (``PATHS``):

    conv_forward        "direct" (tuned_conv_direct: loops), "shifted" (tuned_conv_shifted:
                        k·k gemm on shifted views), "winograd" or "winograd-4x4"
                        (tuned_conv_winograd: tiles of 2×2 or 3×3, and of 4×4 outputs, for
                        the kernel widths in ``APPLIES``), "rows" (tuned_conv_rows: pieces
                        of rows summed in vector registers) or "channels"
                        (tuned_conv_channels: blocks of output channels summed in
                        vector registers; both float32 only, ``DTYPES``);
                        timed with the weight increment that follows it. After "direct"
                        or "shifted" the increment goes by the forward pass's path, since
                        it reads the padded input or the block layout that pass made; where
                        the input error goes by "shifted-correlation" after a "shifted"
                        forward pass, the two are computed together (``conv_backward_together``).
                        The caches of the other paths begin with the input x itself
                        (``KEEPS_INPUT``), and after them the increment is an equation of its
                        own, next
    conv_weight_increment
                        after a forward pass by "winograd", "winograd-4x4", "rows" or
                        "channels": any of these four on (δ, x, k), each the increment of
                        its module (``increment_after``); so a forward pass by these is
                        timed with the fastest increment, whichever path that is
    conv_input_error    "direct", "shifted-correlation", "shifted-scatter", "winograd",
                        "winograd-4x4", "rows" or "channels"
    locally_connected_forward
                        "batch-last" (along tiles of images) or "loops-tiled" (location
                        by location, by tiles of images, along the output channels)
    locally_connected_input_error
                        "loops-tiled", "planes" (along whole padded images, by tiles)
                        or "batch-last" (along tiles of images)
    locally_connected_weight_increment
                        "batch-last" (dot products over tiles of images, δ copied row by
                        row) or "loops" (over the whole batch, δ transposed first)
    maxpool_forward     "loops" (window by window), "separable" (a row pass and a
                        column pass along the flattened plane, vectorised),
                        "separable-padded" (the same on the plane extended with -inf
                        below and to the right, no window clipped there) or
                        "plane-groups" (window by window along groups of planes laid
                        out with the planes last, vectorised along each group)
    ramp_maxpool_forward
                        "separable-padded" (the pool of σ(h), σ applied as each plane is
                        copied), "ramp-then-loops" (σ(h) formed, then pooled window by
                        window) or "plane-groups" (σ applied as each group is laid out)
    ramp_plus_maxpool_forward
                        "plane-groups" (σ(h) + a formed as each group is laid out) or
                        "in-turn" (the backend's ramp_plus, then its maxpool_forward, each
                        by its own plan)
    dropout_draw        "lanes" (NumPy's PCG64 stepped inside the kernel, a chunk per thread,
                        mask and output formed as each number is drawn; other generators
                        go by "chunks") or "chunks" (NumPy draws the uniform numbers, a
                        chunk per thread, then one pass forms mask and output)
    conv_ramp_maxpool_forward
                        a conv layer, its ramp and the pool above (``conv ramp pool``):
                        "direct" (the direct loops, the ramp and pool taken image by image
                        while its h is in cache, the terms per pass a block size as for
                        the conv; tuned_conv_block), "channels" (the channel path's sums
                        pooled from a buffer of one image with the channels last, the
                        increment's δ formed in that layout from the winners; float32
                        only) or "in-turn"; timed, as the next one, with the backward
                        pass it implies
    locally_connected_ramp_maxpool_forward
                        an untied layer, its ramp and the pool above (``lc ramp pool``):
                        "images-last" (every array between the three laid out with the
                        images last; tuned_untied_block), "registers" (the same, with
                        the sums held in vector registers and pooled as they are formed,
                        h never written; tuned_untied_registers) or "in-turn" (the backend's
                        functions one after the other, each by its own plan: a candidate
                        on all threads only, ``PLANNED_PARTS``); timed with the backward
                        pass it implies, which follows it (``BLOCK_BACKWARD``)
    dropout_dense_forward
                        a dense layer reading dropout's output, given the mask (``drop
                        dense``): "blas" (the three products by gemm, tuned_dense, then
                        dropout's backward pass) or "kept" (sums over the kept inputs
                        only, the input error at kept entries only; tuned_dense_kept;
                        float32 only), on (x, m, W, p): which wins depends on dropout's p
                        (the fraction of inputs left), a part of the plan's key; timed
                        with the backward pass it implies
                        (``DENSE_BACKWARD``), through a matrix other than W (the kept
                        path's error through W reads the Wᵀ its forward pass made, and
                        through R, urfb's, costs a little more)
    every other one     one path ("loops")

and, for each, one thread or all of Numba's (waking the other threads costs little on
an idle machine, but more than a small layer's work on a busy one). The paths that work
in blocks sized for a cache take their block size from the plan too (``BLOCKS``): the
shifted products' columns per block, the untied layer's images per tile, the kept
inputs' panel of Wᵀ, the direct
loops' terms per pass, the output channels per group of the rows and of the
untied block's registers path (8 or 4) and the channels path's positions per pass (8 or
6): which wins depends on how many vector registers the CPU has, and on how LLVM
schedules the sums for it. The best size depends on the CPU, so
it is measured with the rest, never fixed for all CPUs.
Winograd's tiles apply to some kernel widths only (``APPLIES``), the sums held in vector
registers to float32 only (``DTYPES``; ``applies``): a plan times them only where they do.

**A plan is measured, not guessed** (like FFTW's plans or cuDNN's benchmark mode): the
first time an equation meets arguments of a new shape and dtype, ``choose`` runs every
candidate on those very arguments and keeps the fastest: each candidate is called once
to warm up, then all of them are timed in turn, ``REPEATS`` rounds, and each keeps its
best time. Rounds, not one candidate after another: a burst of other work on the
machine then slows one call of every candidate rather than every call of one, which
would make it lose unfairly. After ``RACED_AFTER`` rounds a candidate whose best time is
more than ``LOSES_BY`` times the best of all, and longer by more than ``LOSES_BY_MS``, is
timed no more (a race, as in successive elimination): it cannot win unless every one
of its calls so far was slowed to less than half its speed, and its remaining rounds
would be the longest of the plan. Its time so far stays in ``measured_ms``. On the Zen 4
EPYC of BENCHMARKS.md ("2026-12-03, third session"; ``benchmarks/bench_training_step.py
--plan-cost``), the first step of ``deep`` at batch 500, its kernels compiled and no plan
on file, took 74.0 s raced against 105.9 s with every candidate in every round, and
``simple``'s 10.7 against 13.1 s. Fewer threads than Numba has are kept only when they win
by more than ``FEWER_THREADS_MARGIN`` (``pick`` says why). The choice is cached in
memory and on disk, in a small JSON file (``cache_file()``:
``$HEBBREF_CACHE/plans.json``, else ``$XDG_CACHE_HOME/hebbref`` or
``~/.cache/hebbref``), under the CPU (``machine()``: its model name, and where the system gives them its
family, model and stepping numbers, its L2 size and the CPU Numba compiles for) and
Numba's thread count, so a later process on the same machine reuses it and another CPU,
even one that shows the same name, measures its own. Delete the file to
measure again (a plan timed while other work loaded the cores may be a poor one); a
plan measured among other candidates than this version's (a path added since), or
with other kernel code (each plan is stored with ``disk_cache.fingerprint()``, the
SHA-256 of ``hebbref/kernels/*.py``, so an edit or an upgrade of any kernel may change
which path is fastest), is measured again by itself.

**Timing is off** when ``HEBBREF_TUNE=0``, and under pytest unless ``HEBBREF_TUNE=1``
(the tests of the plans themselves): then ``default_plan`` gives
a sound choice from the shape alone (nothing measured, nothing written), the one
benchmarks/bench_conv_paths.py supported on the 2-core Xeon of BENCHMARKS.md: direct
loops below 64 terms per output sum, shifted products from there on (the input error
by scatter when there are fewer input than output channels; the conv block by the
direct loops where they are the conv's default, else in turn), the first path of
``PATHS`` for every other equation (for the untied forward pass and increment,
"batch-last": 1.2-5 times faster than the other path on every layer shape of
``benchmarks/bench_conv_paths.py --untied`` in BENCHMARKS.md; the untied input error
keeps "loops-tiled", since its batch-last path gains less than 20 % at batch 500 and
is several times slower on small batches), one thread below 2^18 units of work, and each blocked path's
default block size (the first of its ``BLOCKS``).
"""
import functools
import json
import os
import time
import types
from dataclasses import asdict, dataclass
from pathlib import Path

import numba
import numpy as np

from ..backends import (dense_of_dropped, dense_then_dropout_backward, layer_then_pool, pool_then_increment,
                        ramp_plus_then_pool)
from . import (disk_cache, tuned_activations, tuned_conv_block, tuned_conv_channels, tuned_conv_direct,
               tuned_conv_rows, tuned_conv_shifted, tuned_conv_winograd, tuned_dense, tuned_dense_kept, tuned_dropout,
               tuned_locally_connected, tuned_pooling, tuned_untied_block, tuned_untied_registers, tuned_update)

TUNE_VARIABLE = "HEBBREF_TUNE"
CACHE_VARIABLE = "HEBBREF_CACHE"
REPEATS = 5  # rounds in which every candidate is timed once, after one warm-up each
# the race: after RACED_AFTER rounds, a candidate slower than LOSES_BY times the best so far, and by more than
# LOSES_BY_MS, is timed no more (a margin against noise, not a tuned constant; calls of a few
# microseconds cost nothing to keep timing, and their times are the noisiest)
RACED_AFTER = 2
LOSES_BY = 2.0
LOSES_BY_MS = 1.0
# the default plan's two thresholds (used only when timing is off)
SHIFTED_FROM = 64  # terms per output sum from which the shifted products are the default
PARALLEL_FROM = 1 << 18  # units of work (multiply-adds or elements) from which all threads are the default
# a measured plan runs on fewer threads than Numba has only when they beat all of them by more
# than this (``pick``): a noise margin, not a tuned constant
FEWER_THREADS_MARGIN = 0.25


@dataclass(frozen=True)
class Plan:
    path: str
    threads: int
    measured_ms: dict = None  # candidate "path/threads" or "path:block/threads" -> best ms, when measured
    block: int = None  # the block size of a blocked path (BLOCKS); None: the path has none


def describe(plan):
    """'shifted, 2048 columns per block on 2 threads (measured)', 'loops on 1 thread'."""
    block = "" if plan.block is None else f", {plan.block} {BLOCKS[plan.path][0]}"
    threads = f"{plan.threads} thread{'s' if plan.threads > 1 else ''}"
    return f"{plan.path}{block} on {threads}" + ("" if plan.measured_ms is None else " (measured)")


# --- the paths ------------------------------------------------------------------------------
def _conv_forward_direct(x, W, width=None):
    h, cache = tuned_conv_direct.forward(x, W, width)
    return h, ("direct", cache)


def _conv_forward_rows(x, W, group=None):
    h, cache = tuned_conv_rows.forward(x, W, group)
    return h, ("rows", cache)


def _conv_forward_channels(x, W, span=None):
    h, cache = tuned_conv_channels.forward(x, W, span)
    return h, ("channels", cache)


def _conv_forward_shifted(x, W, columns=None):
    h, cache = tuned_conv_shifted.forward(x, W, columns)
    return h, ("shifted", cache)


def _winograd(name, tile):
    """The conv forward pass, input error and weight increment (from the input x, ``conv_weight_increment``) by
    Winograd's tiles, ``tile(k)`` outputs a side for a k-wide kernel."""
    def forward(x, W, images=None):
        h, cache = tuned_conv_winograd.forward(x, W, tile(W.shape[-1]), images)
        return h, (name, cache)

    def input_error(delta, cache, B, images=None):
        return tuned_conv_winograd.input_error(delta, B, tile(B.shape[-1]), images)

    def increment(delta, x, k, images=None):
        return tuned_conv_winograd.increment_from_input(delta, x, k, tile(k), images)

    return forward, input_error, increment


def _in_turn(forward, increment):
    """A block's "in-turn" path, forward and backward: the tuned backend's own functions in a row, each by its own plan.

    ``forward`` and ``increment`` name the layer's (conv or untied); the pool's and the
    ramp's are ``ramp_maxpool_forward`` and ``maxpool_ramp_backward``
    (``backends.layer_then_pool``, ``backends.pool_then_increment``).
    """
    def forward_in_turn(x, W, k, t, slope):
        from . import tuned  # the backend's functions (tuned imports this module)

        return layer_then_pool(tuned, forward, x, W, k, t, slope)

    def backward_in_turn(dy, cache, slope):
        from . import tuned

        return pool_then_increment(tuned, increment, dy, cache, slope)

    return forward_in_turn, backward_in_turn


def _ramp_plus_in_turn(h, a, k, t, slope):
    """The "in-turn" path of ``ramp_plus_maxpool_forward``: the tuned backend's ramp_plus, then its maxpool_forward
    (``backends.ramp_plus_then_pool``, the Backend's default)."""
    from . import tuned

    return ramp_plus_then_pool(tuned, h, a, k, t, slope)


# the "blas" path of ``dropout_dense_forward``: the Backend's default two functions (``backends.dense_of_dropped``,
# ``backends.dense_then_dropout_backward``) on the dense layer's gemm (``tuned_dense``) and dropout's e ⊙ m pass
_BLAS_DENSE = types.SimpleNamespace(dense_forward=tuned_dense.dense_forward,
                                    dense_input_error=tuned_dense.dense_input_error,
                                    dense_weight_increment=tuned_dense.dense_weight_increment,
                                    dropout_backward=tuned_dropout.dropout_backward)
_dense_blas_forward = functools.partial(dense_of_dropped, _BLAS_DENSE)
_dense_blas_backward = functools.partial(dense_then_dropout_backward, _BLAS_DENSE)


def _dense_kept_forward(x, mask, W, p, panel=None):
    """The "kept" path: the sums over the inputs dropout kept (``tuned_dense_kept``)."""
    h, cache = tuned_dense_kept.forward(x, mask, W, panel or tuned_dense_kept.PANEL)
    return h, x, cache


_CONV_IN_TURN = _in_turn("conv_forward", "conv_weight_increment")
_UNTIED_IN_TURN = _in_turn("locally_connected_forward", "locally_connected_weight_increment")


# "winograd": the widest tile whose transforms hold only 0, ±1 and ±½ (points 0, ±1, ∞, so
# t = m + k - 1 = 4): F(2×2, 3×3) and F(3×3, 2×2); "winograd-4x4": F(4×4, 3×3)
_WINOGRAD_FORWARD, _WINOGRAD_ERROR, _WINOGRAD_INCREMENT = _winograd("winograd", lambda k: 5 - k)
_WINOGRAD4_FORWARD, _WINOGRAD4_ERROR, _WINOGRAD4_INCREMENT = _winograd("winograd-4x4", lambda k: 4)


PATHS = {  # equation -> {path: function with the reference's signature}
    "conv_forward": {"direct": _conv_forward_direct, "shifted": _conv_forward_shifted,
                     "winograd": _WINOGRAD_FORWARD, "winograd-4x4": _WINOGRAD4_FORWARD, "rows": _conv_forward_rows,
                     "channels": _conv_forward_channels},
    "conv_input_error": {
        "direct": lambda delta, cache, B, width=None: tuned_conv_direct.input_error(delta, B, width),
        "shifted-correlation": lambda delta, cache, B, columns=None: tuned_conv_shifted.input_error_correlation(
            delta, B, columns),
        "shifted-scatter": lambda delta, cache, B, columns=None: tuned_conv_shifted.input_error_scatter(
            delta, B, columns),
        "winograd": _WINOGRAD_ERROR,
        "winograd-4x4": _WINOGRAD4_ERROR,
        "rows": lambda delta, cache, B, group=None: tuned_conv_rows.input_error(delta, B, group),
        "channels": lambda delta, cache, B, span=None: tuned_conv_channels.input_error(delta, B, span),
    },
    "locally_connected_forward": {"batch-last": tuned_locally_connected.locally_connected_forward_batch_last,
                                  "loops-tiled": tuned_locally_connected.locally_connected_forward},
    "locally_connected_input_error": {
        "loops-tiled": tuned_locally_connected.locally_connected_input_error,
        "planes": tuned_locally_connected.locally_connected_input_error_planes,
        "batch-last": tuned_locally_connected.locally_connected_input_error_batch_last},
    "locally_connected_weight_increment": {
        "batch-last": tuned_locally_connected.locally_connected_weight_increment_batch_last,
        "loops": tuned_locally_connected.locally_connected_weight_increment},
    "maxpool_forward": {"loops": tuned_pooling.maxpool_forward, "separable": tuned_pooling.maxpool_forward_separable,
                        "separable-padded": tuned_pooling.maxpool_forward_separable_padded,
                        "plane-groups": tuned_pooling.maxpool_forward_plane_groups},
    "ramp_maxpool_forward": {"separable-padded": tuned_pooling.ramp_maxpool_forward_padded,
                             "ramp-then-loops": tuned_pooling.ramp_maxpool_forward_loops,
                             "plane-groups": tuned_pooling.ramp_maxpool_forward_plane_groups},
    # a sum block's output and the pool above; "in-turn": the backend's ramp_plus, then its maxpool_forward
    "ramp_plus_maxpool_forward": {"plane-groups": tuned_pooling.ramp_plus_maxpool_forward_plane_groups,
                                  "in-turn": _ramp_plus_in_turn},
    "maxpool_backward": {"loops": tuned_pooling.maxpool_backward},
    "maxpool_ramp_backward": {"loops": tuned_pooling.maxpool_ramp_backward},
    "maxpool_ramp_backward_of_sum": {"loops": tuned_pooling.maxpool_ramp_backward_of_sum},
    "ramp": {"loops": tuned_activations.ramp},
    "ramp_derivative": {"loops": tuned_activations.ramp_derivative},
    "ramp_backward": {"loops": tuned_activations.ramp_backward},
    "ramp_plus": {"loops": tuned_activations.ramp_plus},
    "ramp_backward_of_sum": {"loops": tuned_activations.ramp_backward_of_sum},
    # timed on (x, p) alone: the path then draws from a generator of its own
    "dropout_draw": {"lanes": tuned_dropout.dropout_draw_lanes, "chunks": tuned_dropout.dropout_draw},
    "dropout_backward": {"loops": tuned_dropout.dropout_backward},
    # W ← W - η (G + λ W) with G first; timed on G alone (a scratch W), never on a network's W
    "weight_update": {"loops": tuned_update.update_of},
    # a conv layer, its ramp and the pool above; timed with the backward pass it implies
    "conv_ramp_maxpool_forward": {"direct": tuned_conv_block.forward_direct_path,
                                  "channels": tuned_conv_block.forward_channels_path,
                                  "in-turn": _CONV_IN_TURN[0]},
    # an untied layer, its ramp and the pool above; likewise
    "locally_connected_ramp_maxpool_forward": {"images-last": tuned_untied_block.forward_images_last_path,
                                               "registers": tuned_untied_registers.forward_registers_path,
                                               "in-turn": _UNTIED_IN_TURN[0]},
    # a dense layer reading dropout's output, given the mask; timed with the backward pass it implies
    "dropout_dense_forward": {"blas": _dense_blas_forward, "kept": _dense_kept_forward},
}
CONV_WEIGHT_INCREMENT = {"direct": tuned_conv_direct.weight_increment, "shifted": tuned_conv_shifted.weight_increment,
                         "winograd": tuned_conv_winograd.weight_increment,
                         "winograd-4x4": tuned_conv_winograd.weight_increment,
                         "rows": tuned_conv_rows.weight_increment, "channels": tuned_conv_channels.weight_increment}
# the forward paths whose cache begins with the input x itself and the kernel width k, (x, k, ...) (each
# module's ``forward`` says so). After them the weight increment is planned on its own, on (δ, x, k), among
# the paths of PATHS["conv_weight_increment"] (``increment_after``)
KEEPS_INPUT = ("winograd", "winograd-4x4", "rows", "channels")
PATHS["conv_weight_increment"] = {  # G from (δ, x, k): each module's increment from the input
    "channels": tuned_conv_channels.increment_from_input,
    "rows": tuned_conv_rows.increment_from_input,
    "winograd": _WINOGRAD_INCREMENT,
    "winograd-4x4": _WINOGRAD4_INCREMENT,
}
# paths that apply to some arguments only: path -> test on the kernel width k. Winograd's
# tiles: "winograd" where its transforms hold only 0, ±1 and ±½ (k = 2, 3: rounding as in the
# direct sums), "winograd-4x4" for k = 3 (points up to ±2: in float32 about 30 times the
# direct sums' rounding, under 3e-5 of the largest output on deep 2b's shape; tests/test_conv_winograd.py).
# With timing off (HEBBREF_TUNE=0) the default plan takes neither (nor "rows", "channels" or "registers")
APPLIES = {"winograd": lambda k: k in (2, 3), "winograd-4x4": lambda k: k == 3}
# paths that compute in float32 only: path -> the dtypes their data and kernel must have
DTYPES = {"rows": (np.float32,), "channels": (np.float32,), "registers": (np.float32,), "kept": (np.float32,)}
# (the forward pass's path, the input error's path) -> one kernel for a conv layer's input error and
# increment of one δ, which lays δ out once; any other pair runs the two functions
CONV_BACKWARD_TOGETHER = {("shifted", "shifted-correlation"): tuned_conv_shifted.backward_correlation}
# paths that call the backend's functions for other equations, each by its own plan
PLANNED_PARTS = {"in-turn"}
# a block's backward pass follows its forward pass's path, whose cache it reads: equation -> {path: backward}
BLOCK_BACKWARD = {
    "conv_ramp_maxpool_forward": {"direct": tuned_conv_block.backward_direct_path,
                                  "channels": tuned_conv_block.backward_channels_path,
                                  "in-turn": _CONV_IN_TURN[1]},
    "locally_connected_ramp_maxpool_forward": {"images-last": tuned_untied_block.backward_images_last_path,
                                               "registers": tuned_untied_block.backward_images_last_path,
                                               "in-turn": _UNTIED_IN_TURN[1]},
}
# ``drop dense``'s backward pass (δ, cache, B, m) -> (e_below ⊙ m, G) follows its forward pass's path likewise
DENSE_BACKWARD = {"blas": _dense_blas_backward, "kept": tuned_dense_kept.backward}


def conv_backward_together(forward_path, error_plan):
    """The kernel that computes a conv layer's input error and weight increment together, or None.

    Not a choice of its own: it follows the two plans already made, the forward pass's
    (whose cache and blocks it reads, on its threads) and the input error's.
    """
    return CONV_BACKWARD_TOGETHER.get((forward_path, error_plan.path))


def increment_after(forward_path, cache, threads, delta, chooser=None):
    """G = Σ_{n,i,j} δ xᵀ after a conv forward pass by ``forward_path`` on ``threads``, whose cache is ``cache``.

    Where that cache begins with the input x and k (``KEEPS_INPUT``), by the plan of ``conv_weight_increment`` on
    (δ, x, k) (``chooser``, default ``choose``), on its threads; else by the forward pass's path,
    on its threads. The plan is asked for before any thread count is changed: a plan measured
    now is keyed by, and times its candidates on, the threads Numba has.
    """
    if forward_path not in KEEPS_INPUT:
        with on_threads(threads):
            return CONV_WEIGHT_INCREMENT[forward_path](delta, cache)
    x, k = cache[:2]
    arguments = (np.ascontiguousarray(delta, dtype=x.dtype), x, k)
    chosen = (chooser or choose)("conv_weight_increment", *arguments)
    with on_threads(chosen.threads):
        return path_function("conv_weight_increment", chosen)(*arguments)


# path -> (what its block counts, the keyword its function takes it by, the candidate sizes, the default first)
_COLUMNS = tuned_conv_shifted.COLUMNS_PER_BLOCK
_TILE = tuned_locally_connected.IMAGES_PER_TILE
_PLANES_TILE = tuned_locally_connected.IMAGES_PER_PLANES_TILE
_BATCH_TILE = tuned_locally_connected.IMAGES_PER_BATCH_TILE
_BLOCK_TILE = tuned_untied_block.IMAGES_PER_TILE
_GROUP = tuned_pooling.PLANES_PER_GROUP
_SHIFTED_BLOCKS = ("columns per block", "columns", (_COLUMNS, _COLUMNS // 2, 2 * _COLUMNS))
_IMAGES = tuned_conv_winograd.IMAGES_PER_BLOCK
_WINOGRAD_BLOCKS = ("images per block", "images", (_IMAGES, _IMAGES // 2, 2 * _IMAGES))
_TERMS = tuned_conv_direct.TERMS_PER_PASS
_LANES = tuned_dropout.LANES
_GROUP_ROWS = tuned_conv_rows.CHANNELS_PER_GROUP
_GROUP_REGISTERS = tuned_untied_registers.CHANNELS_PER_GROUP
_SPAN_CHANNELS = tuned_conv_channels.SPAN
_PANEL = tuned_dense_kept.PANEL
BLOCKS = {
    "direct": ("terms per pass", "width", (_TERMS, 12 - _TERMS)),  # 8 and 4 (or 4 and 8)
    "shifted": _SHIFTED_BLOCKS,
    "shifted-correlation": _SHIFTED_BLOCKS,
    "shifted-scatter": _SHIFTED_BLOCKS,
    "winograd": _WINOGRAD_BLOCKS,
    "winograd-4x4": _WINOGRAD_BLOCKS,
    "rows": ("output channels per group", "group", (_GROUP_ROWS, 12 - _GROUP_ROWS)),  # 8 and 4 (or 4 and 8)
    "channels": ("positions per pass", "span", (_SPAN_CHANNELS, 14 - _SPAN_CHANNELS)),  # 8 and 6 (or 6 and 8)
    "loops-tiled": ("images per tile", "tile_size", (_TILE, _TILE // 4, 4 * _TILE)),
    "planes": ("images per tile", "tile_size", (_PLANES_TILE, _PLANES_TILE // 2, 2 * _PLANES_TILE)),
    "batch-last": ("images per tile", "tile_size", (_BATCH_TILE, _BATCH_TILE // 2, 2 * _BATCH_TILE)),
    "images-last": ("images per tile", "tile_size", (_BLOCK_TILE, _BLOCK_TILE // 2, _BLOCK_TILE // 4)),
    "registers": ("output channels per group", "group", (_GROUP_REGISTERS, 12 - _GROUP_REGISTERS)),  # 8 and 4, or 4, 8
    "plane-groups": ("planes per group", "group", (_GROUP, _GROUP // 2, 2 * _GROUP)),
    "lanes": ("steps per block", "lanes", (_LANES, _LANES // 4, 4 * _LANES)),
    "kept": ("inputs per panel", "panel", (_PANEL, _PANEL // 2, 2 * _PANEL)),
}


def path_function(equation, plan):
    """The function that computes ``equation`` by ``plan``: its path, with the plan's block size bound."""
    function = PATHS[equation][plan.path]
    if plan.block is None:
        return function
    return functools.partial(function, **{BLOCKS[plan.path][1]: plan.block})


# --- the one choice -------------------------------------------------------------------------
_chosen = {}  # key -> Plan, for this process


def choose(equation, *arguments):
    """The path and thread count for ``equation`` on ``arguments`` (those of the call about to be made).

    From memory if this process chose already; else from the plan file if timing is on
    and this machine measured these shapes before; else measured now (timing on) or
    ``default_plan`` (timing off).
    """
    key = plan_key(equation, arguments)
    if key in _chosen:
        return _chosen[key]
    if timing_enabled():
        plan = _read_plan(key, arguments) or _measure(equation, arguments, key)
    else:
        plan = default_plan(equation, arguments)
    _chosen[key] = plan
    return plan


def default_plan(equation, arguments):
    """The plan from the shapes alone, when nothing is measured (see the module docstring)."""
    path = next(iter(PATHS[equation]))
    if equation == "conv_weight_increment":  # the first path that applies (the forward pass's paths, with timing off)
        path = next(p for p in PATHS[equation] if applies(equation, p, arguments))
    elif equation == "conv_forward":
        x, W = arguments
        C_out, C_in, k, _ = W.shape
        path = "shifted" if C_in * k * k >= SHIFTED_FROM else "direct"
    elif equation == "conv_ramp_maxpool_forward":  # the block by the direct loops where they are the conv's default
        C_out, C_in, k, _ = arguments[1].shape
        path = "in-turn" if C_in * k * k >= SHIFTED_FROM else "direct"
    elif equation == "conv_input_error":
        delta, _, B = arguments
        C_out, C_in, k, _ = B.shape
        if C_out * k * k < SHIFTED_FROM:
            path = "direct"
        else:  # one product with C_in·k·k rows beats k·k products with C_in rows each when C_in < C_out
            path = "shifted-scatter" if C_in < C_out else "shifted-correlation"
    threads = numba.get_num_threads() if work(equation, arguments) >= PARALLEL_FROM else 1
    return Plan(path, threads, block=BLOCKS[path][2][0] if path in BLOCKS else None)


def work(equation, arguments):
    """Multiply-adds (conv, untied) or elements touched (pooling, ramp) of one call."""
    first = arguments[0]
    if equation in ("conv_forward", "conv_input_error"):  # (N, ·, H, W) positions times the filter bank
        return first.shape[0] * first.shape[2] * first.shape[3] * arguments[-1].size
    if equation == "conv_weight_increment":  # (δ, x, k): every position's product of C_out by C_in·k·k
        delta, x, k = arguments
        return delta.size * x.shape[1] * k * k
    if equation == "conv_ramp_maxpool_forward":  # (x, W, k, t, slope): the conv's multiply-adds
        return first.shape[0] * first.shape[2] * first.shape[3] * arguments[1].size
    if equation in ("locally_connected_forward", "locally_connected_input_error"):
        return first.shape[0] * arguments[-1].size
    if equation == "locally_connected_ramp_maxpool_forward":
        return first.shape[0] * arguments[1].size
    if equation == "dropout_dense_forward":  # (x, m, W, p): the dense products' multiply-adds, zeros included
        return first.shape[0] * arguments[2].size
    if equation == "locally_connected_weight_increment":
        delta, xp = arguments
        return delta.size * xp.shape[1] * (xp.shape[-1] - delta.shape[-1] + 1) ** 2
    if equation == "maxpool_forward":
        x, k, t = arguments
        return x.size * k * k // (t * t)
    return first.size


def timing_enabled():
    """$HEBBREF_TUNE=1: plans are measured; =0: never; unset: measured, except under pytest."""
    setting = os.environ.get(TUNE_VARIABLE)
    if setting is not None:
        return setting != "0"
    return "PYTEST_CURRENT_TEST" not in os.environ


def nothing_planned(threads=None):
    """Whether timing is on and the plan file holds no plan for this machine and the kernels' source now.

    Then the first steps compile every candidate path of each layer shape they meet and time
    it (about a minute for `simple` on 2 cores); hebbref's commands say so before they train.
    ``threads``: the Numba threads the runs will train on, where not this process's (a grid's
    worker processes each take a share of the cores, and plans hold for one thread count).
    """
    if not timing_enabled():
        return False
    return not any(stored.get("kernels") == kernels_source() for stored in stored_plans(threads).values())


def forget():
    """Forget this process's plans (the plan file stays)."""
    _chosen.clear()


def chosen_in_this_process():
    """{key: "path on n threads"} for every plan this process used."""
    return {key: describe(plan) for key, plan in _chosen.items()}


def plans_in_this_process():
    """{key: Plan} for every plan this process used (``measured_ms`` holds each candidate's time when measured)."""
    return dict(_chosen)


# --- measuring --------------------------------------------------------------------------------
def _describe(value):
    if isinstance(value, np.ndarray):
        return f"{value.dtype}{list(value.shape)}"
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(_describe(v) for v in value) + ")"
    if isinstance(value, str):
        return value
    return repr(value)


def plan_key(equation, arguments):
    """The equation and every argument's dtype and shape (scalars by value): what a plan depends on."""
    return f"{equation} " + " ".join(_describe(a) for a in arguments)


def _candidate(equation, plan, arguments):
    """A call of one path on the arguments; a forward pass whose cache fixes a backward path is timed with it.

    The conv forward pass with the weight increment that follows it (``increment_after``: where it
    is planned on its own, that plan is measured at the first such call); a block's forward pass
    (conv or untied, its ramp and its pool) with its backward pass.
    """
    function = path_function(equation, plan)
    if equation == "dropout_dense_forward":  # through a feedback matrix of its own, as urfb's and frfb's error goes
        return functools.partial(_dense_forward_and_backward, function, DENSE_BACKWARD[plan.path], arguments,
                                 arguments[2].copy())
    if equation in BLOCK_BACKWARD:
        return functools.partial(_block_forward_and_backward, function, BLOCK_BACKWARD[equation][plan.path], arguments)
    if equation != "conv_forward":
        return lambda: function(*arguments)
    x, W = arguments
    delta = np.random.default_rng(0).standard_normal((x.shape[0], W.shape[0]) + x.shape[2:]).astype(x.dtype)
    if plan.path in KEEPS_INPUT:  # the increment's own plan, made now on Numba's threads, not inside a candidate's
        choose("conv_weight_increment", delta, np.ascontiguousarray(x), W.shape[-1])

    def forward_and_increment():
        _, (tag, cache) = function(x, W)
        increment_after(tag, cache, numba.get_num_threads(), delta)  # the candidate's threads

    return forward_and_increment


def _block_forward_and_backward(forward, backward, arguments):
    y, _, _, cache = forward(*arguments)
    backward(np.ones_like(y), cache, arguments[-1])  # every window's error 1 (the work does not depend on it); the slope


def _dense_forward_and_backward(forward, backward, arguments, R):
    x, mask, W, p = arguments
    h, _, cache = forward(x, mask, W, p)
    backward(np.ones_like(h), cache, R, mask)  # the work does not depend on δ's values


def applies(equation, path, arguments):
    """Whether ``path`` can compute ``equation`` on ``arguments``: its kernel widths (``APPLIES``) and
    dtypes (``DTYPES``; every path of the other equations can)."""
    blocks = ("conv_ramp_maxpool_forward", "locally_connected_ramp_maxpool_forward")  # (x, W, k, t, slope)
    if equation == "dropout_dense_forward":  # (x, m, W, p)
        return path not in DTYPES or all(a.dtype in DTYPES[path] for a in arguments[:3])
    if equation not in ("conv_forward", "conv_input_error", "conv_weight_increment") + blocks:
        return True
    if equation == "conv_weight_increment":  # (δ, x, k)
        arrays, k = arguments[:2], arguments[2]
    else:
        kernel = arguments[1] if equation in blocks else arguments[-1]  # W or B
        arrays, k = (arguments[0], kernel), kernel.shape[-1]
    if path in DTYPES and any(a is not None and a.dtype not in DTYPES[path] for a in arrays):
        return False
    return path not in APPLIES or APPLIES[path](k)


def candidates(equation, arguments=None):
    """{"path/threads" or "path:block/threads": Plan} for every path, block size and thread count.

    Given the arguments, only the paths that apply to them (``applies``). A path made of
    other equations' functions (``PLANNED_PARTS``) runs each by its own plan, threads
    included: it is a candidate on all threads only.
    """
    plans = {}
    every = numba.get_num_threads()
    for path in PATHS[equation]:
        if arguments is not None and not applies(equation, path, arguments):
            continue
        for block in (BLOCKS[path][2] if path in BLOCKS else (None,)):
            for threads in ((every,) if path in PLANNED_PARTS else sorted({1, every})):
                name = path if block is None else f"{path}:{block}"
                plans[f"{name}/{threads}"] = Plan(path, threads, block=block)
    return plans


def _measure(equation, arguments, key):
    plans = candidates(equation, arguments)
    calls = {name: _candidate(equation, candidate, arguments) for name, candidate in plans.items()}
    best = {}
    for name, call in calls.items():  # warm-up: compiles or loads each kernel, touches the memory
        with on_threads(plans[name].threads):
            call()
        best[name] = float("inf")
    racing = dict(calls)
    for done in range(1, REPEATS + 1):  # every candidate still racing once per round, each keeping its best time
        for name, call in racing.items():
            with on_threads(plans[name].threads):
                start = time.perf_counter()
                call()
                best[name] = min(best[name], time.perf_counter() - start)
        if done >= RACED_AFTER:
            fastest = min(best.values())
            racing = {name: call for name, call in racing.items() if not loses(best[name], fastest)}
    times = {name: round(1e3 * seconds, 3) for name, seconds in best.items()}
    chosen = pick(plans, times)
    plan = Plan(chosen.path, chosen.threads, times, chosen.block)
    _write_plan(key, plan)
    return plan


def loses(seconds, fastest):
    """Whether a candidate's best time so far puts it out of the race (``LOSES_BY``, ``LOSES_BY_MS``)."""
    return seconds > LOSES_BY * fastest and seconds - fastest > LOSES_BY_MS / 1e3


def pick(plans, times):
    """The fastest of ``plans`` by ``times``; but on all threads when that is within FEWER_THREADS_MARGIN.

    Fewer threads win where waking the others costs more than the work they would share
    (small layers), and there they win by far. A narrow win for fewer threads on a large
    layer says rather that other work had a core while it was timed, and a plan is kept
    on disk long after: on all threads it loses at most the margin if the win was real,
    and it gains up to the thread count if it was not.
    """
    fastest_name = min(times, key=times.get)
    fastest = plans[fastest_name]
    every = numba.get_num_threads()
    if fastest.threads < every:
        for name, candidate in plans.items():
            same_path = (candidate.path, candidate.block) == (fastest.path, fastest.block)
            close = times[name] <= times[fastest_name] * (1 + FEWER_THREADS_MARGIN)
            if same_path and candidate.threads == every and close:
                return candidate
    return fastest


class on_threads:
    """Run a block with Numba's thread count set to ``threads``, then restore it."""

    def __init__(self, threads):
        self.threads = threads

    def __enter__(self):
        self.before = numba.get_num_threads()
        if self.threads != self.before:
            numba.set_num_threads(self.threads)

    def __exit__(self, *exc):
        if self.threads != self.before:
            numba.set_num_threads(self.before)


# --- the plan file ----------------------------------------------------------------------------
def cache_file():
    """Where plans are kept: $HEBBREF_CACHE/plans.json, else the user's cache directory."""
    folder = os.environ.get(CACHE_VARIABLE)
    if not folder:
        folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hebbref"
    return Path(folder) / "plans.json"


def machine(threads=None):
    """Plans hold for one CPU and one thread count: ``runtime.cpu_key()`` (more than the model's name) and the count
    (``threads``, by default this process's Numba threads)."""
    from ..runtime import cpu_key

    return f"{cpu_key()}, {threads or numba.get_num_threads()} threads"


def _load():
    try:
        return json.loads(cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no file yet, or a damaged one: measure again
        return {}


def stored_plans(threads=None):
    """{key: plan as stored} for this machine (on ``threads`` threads, by default this process's), from the plan file."""
    return _load().get(machine(threads), {})


@functools.lru_cache(maxsize=None)
def kernels_source():
    """The fingerprint of the kernels' source a plan is stored with (``disk_cache.fingerprint``), read once."""
    return disk_cache.fingerprint()


def _read_plan(key, arguments):
    stored = stored_plans().get(key)
    if not stored:
        return None
    if stored.get("kernels") != kernels_source():
        return None  # measured with other kernel code (or before plans recorded it): measure again
    try:
        plan = Plan(stored["path"], int(stored["threads"]), stored.get("measured_ms"), stored.get("block"))
    except (KeyError, TypeError, ValueError):
        return None
    equation = key.split(" ", 1)[0]
    if plan.path not in PATHS.get(equation, {}):
        return None  # a path this version no longer has: measure again
    if (plan.block is None) != (plan.path not in BLOCKS):
        return None  # a blocked path stored without its block size, or the other way round
    if plan.measured_ms and set(plan.measured_ms) != set(candidates(equation, arguments)):
        return None  # measured among other candidates (a path or block size added since): measure again
    return plan


def _write_plan(key, plan):
    """Add one plan to the file, read again just before; never fails the step.

    Read and written under the lock ``plans.json.lock`` of its folder (``disk_cache.folder_lock``):
    the runs of a grid plan the same layers at once, and without it a process that read the
    file before another wrote its plan wrote the file back without that plan.
    """
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with disk_cache.folder_lock(path.parent, exclusive=True, name=path.name + ".lock"):
            plans = _load()
            plans.setdefault(machine(), {})[key] = {**asdict(plan), "kernels": kernels_source()}
            temporary = path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps(plans, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(temporary, path)
    except OSError:  # a read-only home: the plan holds for this process only
        pass
