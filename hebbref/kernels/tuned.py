"""TUNED TIER: the ``numba`` backend's functions, with the signatures of the NumPy reference.

Each one asks ``plan.choose`` (the one place where the tuned backend chooses between
paths and thread counts, by measurement or by a sound default) and runs the path it
names, from the tuned kernel modules:

    tuned_conv_direct.py        tied conv by direct loops (few terms per output), eight or
                                four window terms per pass
    tuned_conv_shifted.py       tied conv by k·k gemm on shifted views (many terms)
    tuned_conv_winograd.py      tied conv by Winograd's tiles: t² gemm over all tiles, the
                                input and output transformed around them (k = 2, 3)
    tuned_conv_rows.py          tied conv by pieces of output rows, eight output channels'
                                sums held in vector registers while every window term is
                                added (float32; ``tuned_simd`` gives the vectors)
    tuned_conv_channels.py      the same along blocks of output channels rather than rows
                                (narrow images, many channels)
    tuned_locally_connected.py  untied layer, location by location, along tiles of images
                                laid out batch last or along the output channels (the
                                input error also along padded planes)
    tuned_pooling.py            max pooling, window by window, in a row and a column pass,
                                or window by window along groups of planes laid out with
                                the planes last; fused with a ramp's below it, or with a
                                sum block's output σ(h) + a (and, backward, with the
                                block's first ramp, whose error adds the pool's)
    tuned_activations.py        the ramp, σ' and δ = e ⊙ σ'(h), one parallel pass
    tuned_dropout.py            dropout's training pass: the reference's uniform numbers,
                                NumPy's PCG64 stepped in the kernel (or drawn by NumPy a
                                chunk per thread), mask and output in one pass
    tuned_untied_block.py       an untied layer, its ramp and the pool above, one step
                                each way, every array between them laid out images last
    tuned_conv_block.py         a tied conv layer, its ramp and the pool above, one step
                                each way: the direct loops, with the ramp and pool taken
                                image by image while its h is in cache
    tuned_dense.py              the dense layer's three products, one SciPy gemm per
                                Numba thread: no path to choose, and no NumPy BLAS
                                thread left spinning against the kernels that follow
    tuned_dense_kept.py         a dense layer right above dropout: its three products
                                over the inputs dropout kept, the input error at kept
                                entries only (the plan times it against tuned_dense)

Every tuned kernel computes what the readable tier (``hebbref.kernels.readable``) and
the NumPy reference compute; ``tests/test_kernels_tuned.py`` holds it to both. The
conv cache is ``(path, cache of that path, threads)``: the weight increment follows the
path and thread count of the forward pass, whose cache it reads, where that cache is a
layout of the pass's own (direct loops, shifted products); where it is the input x
itself, the increment goes by a plan of its own (``plan.increment_after``). ``conv_backward`` asks for
the input error and the increment of one δ together: one kernel computes both when
the forward pass was "shifted" and the input error's plan is "shifted-correlation"
(``plan.conv_backward_together``), laying δ out once.
"""
from ..activations import DEFAULT_SLOPE
from .tuned_dense import dense_forward, dense_input_error, dense_weight_increment  # noqa: F401 (no plan: one path)
from .plan import (BLOCK_BACKWARD, DENSE_BACKWARD, choose, conv_backward_together, increment_after, on_threads,
                   path_function)


def _run(equation, *arguments, plan_arguments=None):
    plan = choose(equation, *(arguments if plan_arguments is None else plan_arguments))
    with on_threads(plan.threads):
        return path_function(equation, plan)(*arguments), plan


def conv_forward(x, W):
    """h = W ⊛ x, "same" padding: (N, C_in, H, W) -> (N, C_out, H, W); cache = (path, its cache, threads)."""
    (h, (path, cache)), plan = _run("conv_forward", x, W)
    return h, (path, cache, plan.threads)


def conv_input_error(delta, cache, B):
    """e_below = Bᵀ δ, the transposed convolution: (N, C_out, H, W) -> (N, C_in, H, W)."""
    return _run("conv_input_error", delta, cache, B, plan_arguments=(delta, None, B))[0]


def conv_weight_increment(delta, cache):
    """G = Σ_{n,i,j} δ xᵀ: -> (C_out, C_in, k, k), by the forward pass's path or by a plan of its own
    (``plan.increment_after``)."""
    path, saved, threads = cache
    return increment_after(path, saved, threads, delta, choose)


def conv_backward(delta, cache, B):
    """(e_below, G) of one δ: together in one kernel where the two plans allow it (plan.conv_backward_together)."""
    path, saved, threads = cache
    together = conv_backward_together(path, choose("conv_input_error", delta, None, B))
    if together is None:
        return conv_input_error(delta, cache, B), conv_weight_increment(delta, cache)
    with on_threads(threads):
        return together(delta, saved, B)


def _block_forward(equation, x, W, k, t, slope):
    """A block's forward pass by its plan: -> (y, layer cache, h or a function forming it, (path, cache, threads))."""
    (y, layer_cache, h, saved), plan = _run(equation, x, W, k, t, slope)
    return y, layer_cache, h, (plan.path, saved, plan.threads)


def _block_backward(equation, dy, cache, slope):
    """A block's backward pass, by the path and on the threads of its forward pass: -> (δ or a function forming it, G)."""
    path, saved, threads = cache
    with on_threads(threads):
        return BLOCK_BACKWARD[equation][path](dy, saved, slope)


def conv_ramp_maxpool_forward(x, W, k, t, slope=DEFAULT_SLOPE):
    """A conv layer, the ramp above it and the pool above that: -> (y, conv cache, h or a function forming it, cache).

    The block's path (tuned_conv_block.py) is chosen with its backward pass, which follows it.
    """
    return _block_forward("conv_ramp_maxpool_forward", x, W, k, t, slope)


def maxpool_ramp_conv_backward(dy, cache, slope=DEFAULT_SLOPE):
    """δ = (maxpool_backward of dy) ⊙ σ'(h) and G = Σ δ xᵀ of the block: -> (δ or a function forming it, G)."""
    return _block_backward("conv_ramp_maxpool_forward", dy, cache, slope)


def locally_connected_forward(x, W):
    """h = W ⊛_untied x: (N, C_in, H, W) -> (N, C_out, H, W); cache = padded x."""
    return _run("locally_connected_forward", x, W)[0]


def locally_connected_input_error(delta, cache, B):
    """e_below = Bᵀ δ location by location or along padded planes: -> (N, C_in, H, W)."""
    return _run("locally_connected_input_error", delta, cache, B)[0]


def locally_connected_weight_increment(delta, cache):
    """G[i,j] = Σ_n δ[:, :, i, j] x_windowᵀ: -> (H, W, C_out, C_in, k, k)."""
    return _run("locally_connected_weight_increment", delta, cache)[0]


def locally_connected_ramp_maxpool_forward(x, W, k, t, slope=DEFAULT_SLOPE):
    """An untied layer, the ramp above it and the pool above that: -> (y, untied cache, h or a function forming it, cache).

    The block's path (tuned_untied_block.py) is chosen with its backward pass, which follows it.
    """
    return _block_forward("locally_connected_ramp_maxpool_forward", x, W, k, t, slope)


def maxpool_ramp_locally_connected_backward(dy, cache, slope=DEFAULT_SLOPE):
    """δ = (maxpool_backward of dy) ⊙ σ'(h) and G = Σ_n δ xᵀ of the block: -> (δ or a function forming it, G)."""
    return _block_backward("locally_connected_ramp_maxpool_forward", dy, cache, slope)


def maxpool_forward(x, k, t):
    """y = max over each k×k window at stride t: (N, C, H, W) -> (N, C, Ho, Wo)."""
    return _run("maxpool_forward", x, k, t)[0]


def maxpool_backward(dy, cache):
    """Route each window's error to its maximum: (N, C, Ho, Wo) -> (N, C, H, W)."""
    return _run("maxpool_backward", dy, cache)[0]


def ramp_maxpool_forward(h, k, t, slope=DEFAULT_SLOPE):
    """maxpool_forward(σ(h), k, t): a ramp and the pool above it, σ(h) not written out; -> (y, cache).  # SPEC §2"""
    return _run("ramp_maxpool_forward", h, k, t, slope)[0]


def ramp_plus_maxpool_forward(h, a, k, t, slope=DEFAULT_SLOPE):
    """maxpool_forward(σ(h) + a, k, t): a sum block's output and the pool above it, σ(h) + a not written out.  # SPEC §2"""
    return _run("ramp_plus_maxpool_forward", h, a, k, t, slope)[0]


def maxpool_ramp_backward(dy, cache, h, slope=DEFAULT_SLOPE):
    """δ = (maxpool_backward of dy) ⊙ σ'(h) in one pass: the error through a pool and the ramp below it.  # SPEC §3"""
    return _run("maxpool_ramp_backward", dy, cache, h, slope)[0]


def maxpool_ramp_backward_of_sum(e1, dy, cache, h, slope=DEFAULT_SLOPE):
    """δ = (e1 + maxpool_backward of dy) ⊙ σ'(h) in one pass: a sum block's first ramp, with a pool above the block.  # SPEC §3"""
    return _run("maxpool_ramp_backward_of_sum", e1, dy, cache, h, slope)[0]


def ramp(h, slope=DEFAULT_SLOPE):
    """σ(h) = clip(s·h, -1, 1).  # SPEC §2"""
    return _run("ramp", h, slope)[0]


def ramp_derivative(h, slope=DEFAULT_SLOPE):
    """σ'(h) = s where |s·h| <= 1, else 0.  # SPEC §3"""
    return _run("ramp_derivative", h, slope)[0]


def ramp_backward(e, h, slope=DEFAULT_SLOPE):
    """δ = e ⊙ σ'(h) in one pass.  # SPEC §3"""
    return _run("ramp_backward", e, h, slope)[0]


def ramp_plus(h, a, slope=DEFAULT_SLOPE):
    """σ(h) + a in one pass (a sum block's output).  # SPEC §2"""
    return _run("ramp_plus", h, a, slope)[0]


def ramp_backward_of_sum(e1, e2, h, slope=DEFAULT_SLOPE):
    """δ = (e1 + e2) ⊙ σ'(h) in one pass (the two errors at a sum block's first ramp).  # SPEC §3"""
    return _run("ramp_backward_of_sum", e1, e2, h, slope)[0]


def dropout_backward(e, mask):
    """e_below = e ⊙ m, one parallel pass."""
    return _run("dropout_backward", e, mask)[0]


def weight_update(W, G, eta, weight_decay=0.0):
    """W ← W - η (G + λ W), in place, one parallel pass; timed on G alone (``tuned_update.update_of``).  # SPEC §3"""
    _run("weight_update", G, W, eta, weight_decay, plan_arguments=(G,))


def dropout_dense_forward(x, mask, W, p):
    """A dense layer reading dropout's output x, given its mask, drawn with dropping probability p:
    -> (h, dense cache = x, (path, cache, threads)), the plan chosen for these shapes and p.

    The path ("blas" or "kept": tuned_dense, tuned_dense_kept) is chosen with the backward pass, which follows it.
    """
    (h, dense_cache, saved), plan = _run("dropout_dense_forward", x, mask, W, p)
    return h, dense_cache, (plan.path, saved, plan.threads)


def dense_dropout_backward(delta, cache, B, mask):
    """(dropout_backward(δ B, m), δᵀ x), the first None when B is None: by the forward pass's path, on its threads."""
    path, saved, threads = cache
    with on_threads(threads):
        return DENSE_BACKWARD[path](delta, saved, B, mask)


def dropout_draw(rng, x, p):
    """A training pass: (x ⊙ m, m), m = [u >= p]/(1-p) with u = rng.random(x.shape), the reference's numbers.

    The plan is timed on (x, p) with a generator of its own, never with ``rng``.
    """
    return _run("dropout_draw", x, p, rng, plan_arguments=(x, p))[0]
