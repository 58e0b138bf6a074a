"""TUNED TIER. Tied convolution, stride 1, "same" padding, by shifted matrix products (no im2col).  # SPEC §2, §3, §5

The equations of ``hebbref.layers.conv`` (xp is x zero-padded, p the padding before):

    h[n,o,i,j] = Σ_{c,a,b} W[o,c,a,b] xp[n,c,i+a,j+b]          conv_forward
    e[n,c,y,x] = Σ_{o,a,b} B[o,c,a,b] δ[n,o,y+p-a,x+p-b]        conv_input_error   (B = W or R)
    G[o,c,a,b] = Σ_{n,i,j} δ[n,o,i,j] xp[n,c,i+a,j+b]           conv_weight_increment

Lay the padded input out channel-major, X (C, columns): row c holds every image's
plane flattened, one image after another, each pixel row followed by g = max(p, k-1-p)
zero columns and each image by g zero rows. The zeros after one row (or image) serve
as the padding after it and as the padding before the next, so a plane takes
Hs·Ws = (H+g)·(W+g) columns, not (H+k-1)·(W+k-1). Pixel (y, x) of image n sits at
column n·Hs·Ws + (y+p)·Ws + x + p; output position (n, i, j) is column
q = n·Hs·Ws + i·Ws + j, and the tap (a, b) reads column q + a·Ws + b, which is pixel
(i+a-p, j+b-p) when that is inside the image and a zero otherwise (a tap that runs off
the end of a row lands in the gap before the next one). So

    h_cols (O, ·) = Σ_{a,b} W[:, :, a, b] (O, C)  @  X[:, s_ab : s_ab + span],   s_ab = a·Ws + b
    G[:, :, a, b] (O, C) = D (O, span)  @  X[:, s_ab : s_ab + span]ᵀ

a sum of k·k matrix products whose right operand is a shifted *view* of X: the row
stride of X is the BLAS leading dimension, nothing is copied. D is δ laid out the same
way with no offset (δ[n, o, i, j] at column q), zeros in the gaps. Columns that fall in
the gaps are computed and dropped (Hs·Ws / (H·W) times the useful work: 1.19× on 11×11
with k = 3, against 1.40× with a separate border for each image), in exchange for
im2col's k·k times larger copy of the input. The input error is, as in the
reference, the forward equation applied to δ padded the other way round, with B flipped
in space and its two channel axes swapped (``readable.transposed_convolution``:
``input_error_correlation``), or one product per block, Bᵀ δ (C_in·k·k rows), whose
rows are added back shifted (``input_error_scatter``, faster with fewer input than
output channels). ``hebbref.kernels.plan.choose`` picks the path per layer shape.

The columns are cut into blocks of whole images (about ``columns`` of them: an argument,
``COLUMNS_PER_BLOCK`` by default, which ``plan.choose`` times against other sizes), each
followed by the few zero columns that its last image's taps read beyond its plane
(``geometry``), and ``prange`` runs over blocks: each block lays out its own images
(while they are in the L2 cache), calls the gemm of SciPy's OpenBLAS once per tap
(``scipy.linalg.cython_blas``, whose address Numba hands over; ``hebbref.runtime``
loads that library on one thread, and says there why the gemm is reached this way) on
its columns up to its last output position, so that no block reads another's images,
and writes its images of the result. Each public function is one parallel region: on a machine whose cores are busy
with other work, waking the second thread costs milliseconds each time.

Shapes as in the reference: x (N, C_in, H, W); W, R (C_out, C_in, k, k); h, δ (N, C_out, H, W).
The cache is ``(X, k, columns)``: the padded input X (C_in, blocks × block columns) that
the forward pass laid out (k·k times smaller than im2col's rows), read again by the
weight increment in blocks of the same size.
"""
import ctypes

import numba
import numpy as np
from numba import njit, prange

from ..layers.conv import same_padding
from .readable import transposed_convolution
from .tuned_simd import copy_run, zero_run

# a block holds whole images, about this many columns by default: with 64 input and 64 output
# channels in float32 its input and output take 2 × 64 × 2048 × 4 bytes = 1 MiB, half of a
# 2 MiB L2, the rest left to OpenBLAS's packed copies. The best size depends on the cache
# of the CPU at hand: a measured plan (plan.BLOCKS) times this one against others
COLUMNS_PER_BLOCK = 2048

NO_TRANSPOSE, TRANSPOSE = ord("N"), ord("T")
_BLAS = {}  # dtype -> SciPy's sgemm or dgemm as a ctypes function, filled on first use


def blas_for(dtype):
    """SciPy's Fortran gemm for ``dtype`` (float32: sgemm, float64: dgemm), loaded by hebbref.runtime.

    The kernels take the gemm as an argument, not as a global, so that Numba can cache them on disk.
    """
    dtype = np.dtype(dtype)
    if dtype not in _BLAS:
        from .. import runtime

        address = runtime.scipy_gemm_address("sgemm" if dtype == np.float32 else "dgemm")
        # C = alpha op(A) op(B) + beta C, column-major, every argument a pointer
        _BLAS[dtype] = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 13)(address)
    return _BLAS[dtype]


@njit(cache=True)
def gemm(blas, transpose_a, transpose_b, m, n, depth, alpha, A, lda, B, ldb, beta, C, ldc):
    """C (m, n) = alpha op(A) op(B) + beta C in Fortran (column-major) terms, by ``blas`` (sgemm or dgemm).

    A, B, C are 1-d views starting at the matrix's first element; op(A) is (m, depth).
    A C-order (r, s) matrix with row stride ld is a Fortran (s, r) one with the same ld,
    which is how the callers turn their row-major products around.
    """
    codes = np.array([transpose_a, transpose_b], dtype=np.uint8)
    sizes = np.array([m, n, depth, lda, ldb, ldc], dtype=np.int32)
    scalars = np.empty(2, dtype=C.dtype)
    scalars[0], scalars[1] = alpha, beta
    blas(codes[0:].ctypes, codes[1:].ctypes, sizes[0:].ctypes, sizes[1:].ctypes, sizes[2:].ctypes,
         scalars[0:].ctypes, A.ctypes, sizes[3:].ctypes, B.ctypes, sizes[4:].ctypes,
         scalars[1:].ctypes, C.ctypes, sizes[5:].ctypes)


@njit(cache=True)
def geometry(H, W, k, before):
    """The layout of (H, W) images for a k×k kernel padded by ``before``: (gap, Ws, plane, tail).

    gap = max(before, after) zeros after each pixel row and each image, Ws = W + gap the
    row stride, plane = (H + gap)·Ws the columns of one image, and tail the zero columns
    that a block's last image reads beyond its plane: its last output position is
    (H-1)·Ws + W-1 and its taps reach (k-1)·Ws + k-1 further.
    """
    gap = max(before, k - 1 - before)
    Ws = W + gap
    plane = (H + gap) * Ws
    tail = max(0, (H - 1 + k - 1) * Ws + W - 1 + k - 1 + 1 - plane)
    return gap, Ws, plane, tail


@njit(cache=True)
def images_to_columns(x, n0, n1, offset, Ws, plane, tail, X, first=0):
    """Write images n0..n1-1 of x (N, C, H, W) into X (C, ≥ first + (n1-n0)·plane + tail), zeros in the gaps.

    Pixel (n, c, y, x) goes to column first + (n-n0)·plane + (y+offset)·Ws + offset + x
    of row c; every other column of those planes, and the ``tail`` columns after the
    last one, get a zero. Every column is written once. X is C-contiguous, and both
    arrays are read flat: a row of a view would have a stride Numba cannot know, and
    LLVM would write it with scatters.
    """
    _, C, H, W = x.shape
    Hs = plane // Ws
    ld = X.shape[1]
    columns = X.reshape(-1)
    pixels = x.reshape(-1)
    for c in range(C):
        row = c * ld + first
        for n in range(n0, n1):
            image = (n * C + c) * H * W
            base = row + (n - n0) * plane
            for r in range(Hs):  # the plane's rows: `offset` zero rows, H pixel rows, zero rows
                start = base + r * Ws
                y = r - offset
                if 0 <= y < H:
                    zero_run(columns, start, offset)
                    copy_run(pixels, image + y * W, columns, start + offset, W)
                    zero_run(columns, start + offset + W, Ws - offset - W)
                else:
                    zero_run(columns, start, Ws)
        zero_run(columns, row + (n1 - n0) * plane, tail)


@njit(cache=True)
def valid_span(images, H, W, Ws, plane):
    """Columns of a block of images up to its last output position: (images-1)·plane + (H-1)·Ws + W."""
    return (images - 1) * plane + (H - 1) * Ws + W


@njit(cache=True)
def block_of(block, images_per_block, N, H, W, Ws, plane, tail):
    """(n0, n1, columns, span) of a block: its images n0..n1-1, the columns they take with the tail, and the valid span."""
    n0 = block * images_per_block
    n1 = min(N, n0 + images_per_block)
    return n0, n1, (n1 - n0) * plane + tail, valid_span(n1 - n0, H, W, Ws, plane)


@njit(cache=True)
def tap_products(blas, X_flat, ld, base, Ws, k, span, taps_flat, O, C, out_flat):
    """out (O, span) = Σ_{a,b} taps[a·k+b] (O, C) @ X[:, base + a·Ws + b : … + span]: one gemm per tap.

    X is (C, ld) row-major, flattened; beta = 0 for the first tap, 1 after.
    """
    for t in range(k * k):
        shift = base + (t // k) * Ws + t % k
        # out (O, span) += taps[t] (O, C) @ X[:, shift : shift + span]  is, in Fortran terms,
        # outᵀ (span, O) += X_viewᵀ (span, C; ld = X's row length) @ taps[t]ᵀ (C, O; ld = C)
        gemm(blas, NO_TRANSPOSE, NO_TRANSPOSE, span, O, C, 1.0, X_flat[shift:], ld,
             taps_flat[t * O * C :], C, 0.0 if t == 0 else 1.0, out_flat, span)


@njit(cache=True)
def tap_weight_products(blas, X_flat, ld, base, Ws, k, span, D_flat, ld_D, O, C, G_flat):
    """G_t (O, C) = D (O, span) @ X[:, base + a·Ws + b : … + span]ᵀ for every tap t = a·k+b, into G_flat[t·O·C:]."""
    for t in range(k * k):
        shift = base + (t // k) * Ws + t % k
        # G_t (O, C) = D (O, span) @ X_viewᵀ (span, C)  is, in Fortran terms, G_tᵀ (C, O) =
        # (X_view as Fortran (span, C), ld = X's row length)ᵀ @ (D as Fortran (span, O), ld = ld_D)
        gemm(blas, TRANSPOSE, NO_TRANSPOSE, C, O, span, 1.0, X_flat[shift:], ld,
             D_flat, ld_D, 0.0, G_flat[t * O * C :], C)


@njit(cache=True)
def columns_to_images(out, n0, n1, plane, Ws, H, W, offset, target):
    """target[n, r, i·W + j] = out[r, (n-n0)·plane + (i+offset)·Ws + offset + j] for images n0..n1-1: the gaps dropped.

    ``out`` (rows, ·) is a block's result in the layout of X; target is (N, rows, H·W).
    """
    for n in range(n0, n1):
        for r in range(out.shape[0]):
            source, row = out[r], target[n, r]
            for i in range(H):  # one row of pixels
                copy_run(source, (n - n0) * plane + (i + offset) * Ws + offset, row, i * W, W)


@njit(parallel=True, cache=True)
def shifted_products(blas, x, taps, before, after, images_per_block, X):
    """h[n,o,i,j] = Σ_{a,b} (taps[a·k+b] @ X[:, s_ab : s_ab + span])[o, n·plane + i·Ws + j]: -> (N, O, H, W).

    x (N, C, H, W) padded by (before, after) is X (C, blocks × block columns), which the
    blocks fill in (the caller may keep it); taps (k·k, O, C) holds W[:, :, a, b] at a·k+b. Each block lays out its images, computes their columns
    (O, span) with one gemm per tap (beta = 1 after the first), and copies the valid
    ones out.
    """
    N, C, H, W = x.shape
    O = taps.shape[1]
    k = before + after + 1
    _, Ws, plane, tail = geometry(H, W, k, before)
    stride = images_per_block * plane + tail  # columns from one block to the next
    blocks = (N + images_per_block - 1) // images_per_block
    ld = X.shape[1]
    taps_flat = taps.reshape(-1)
    X_flat = X.reshape(-1)
    h = np.empty((N, O, H, W), dtype=x.dtype)
    h_rows = h.reshape(N, O, H * W)
    for block in prange(blocks):
        n0, n1, _, span = block_of(block, images_per_block, N, H, W, Ws, plane, tail)
        images_to_columns(x, n0, n1, before, Ws, plane, tail, X, block * stride)
        out = np.empty((O, span), dtype=x.dtype)  # h for these images, gap positions included
        tap_products(blas, X_flat, ld, block * stride, Ws, k, span, taps_flat, O, C, out.reshape(-1))
        columns_to_images(out, n0, n1, plane, Ws, H, W, 0, h_rows)
    return h


@njit(parallel=True, cache=True)
def shifted_scatter(blas, delta, B_rows, k, before, images_per_block):
    """e = Bᵀ δ by one product per block and shifted adds: (N, O, H, W) -> (N, C, H, W).

    For fewer input than output channels. With D holding δ[n, o, i, j] at column
    q = n·plane + i·Ws + j (zeros in the gaps) and ``B_rows[(c·k+a)·k+b, o] = B[o, c, a, b]``,

        Y (C·k·k, span) = B_rows @ D_block,    e_padded[c, q + a·Ws + b] += Y[(c,a,b), q]

    the padded position (i+a, j+b) being pixel (y, x) = (i+a-p, j+b-p), which is
    e[n,c,y,x] = Σ_{o,a,b} B[o,c,a,b] δ[n,o,y+p-a,x+p-b]; what lands outside the image
    lands in a gap. The pixels are copied out.
    """
    N, O, H, W = delta.shape
    rows = B_rows.shape[0]
    C = rows // (k * k)
    _, Ws, plane, tail = geometry(H, W, k, before)
    blocks = (N + images_per_block - 1) // images_per_block
    B_flat = B_rows.reshape(-1)
    e = np.empty((N, C, H, W), dtype=delta.dtype)
    e_rows = e.reshape(N, C, H * W)
    for block in prange(blocks):
        n0, n1, columns, span = block_of(block, images_per_block, N, H, W, Ws, plane, tail)
        D = np.empty((O, columns), dtype=delta.dtype)
        images_to_columns(delta, n0, n1, 0, Ws, plane, tail, D)
        Y = np.empty((rows, span), dtype=delta.dtype)
        # Y (rows, span) = B_rows (rows, O) @ D (O, span)  is, in Fortran terms,
        # Yᵀ (span, rows) = Dᵀ (span, O; ld = columns) @ B_rowsᵀ (O, rows; ld = O)
        gemm(blas, NO_TRANSPOSE, NO_TRANSPOSE, span, rows, O, 1.0, D.reshape(-1), columns, B_flat, O, 0.0,
             Y.reshape(-1), span)
        padded = np.zeros((C, columns), dtype=delta.dtype)  # e in the layout of X
        for c in range(C):
            for t in range(k * k):
                shift = (t // k) * Ws + t % k
                target = padded[c, shift : shift + span]
                source = Y[c * k * k + t]
                for m in range(span):  # vectorised
                    target[m] += source[m]
        columns_to_images(padded, n0, n1, plane, Ws, H, W, before, e_rows)
    return e


@njit(parallel=True, cache=True)
def shifted_weight_products(blas, delta, X, k, before, images_per_block):
    """G[o,c,a,b] = Σ_q D[o, q] X[c, q + a·Ws + b], by blocks: -> partial (blocks, k·k, O, C), G = Σ_blocks.

    D is δ (N, O, H, W) at q = n·plane + i·Ws + j (zeros in the gaps), X the padded
    input as the forward pass laid it out, in blocks of the same images. Each block
    lays out its images of δ and sums its k·k products (O, span) @ (span, C) into its own
    partial G; the caller adds them up (a reduction written here would become one
    parallel region per element).
    """
    N, O, H, W = delta.shape
    C, ld = X.shape
    _, Ws, plane, tail = geometry(H, W, k, before)
    stride = images_per_block * plane + tail
    blocks = (N + images_per_block - 1) // images_per_block
    X_flat = X.reshape(-1)
    partial = np.empty((blocks, k * k, O, C), dtype=delta.dtype)  # partial[block, a·k+b] = its G[:, :, a, b]
    for block in prange(blocks):
        n0, n1, columns, span = block_of(block, images_per_block, N, H, W, Ws, plane, tail)
        D = np.empty((O, columns), dtype=delta.dtype)
        images_to_columns(delta, n0, n1, 0, Ws, plane, tail, D)
        tap_weight_products(blas, X_flat, ld, block * stride, Ws, k, span, D.reshape(-1), columns, O, C,
                            partial[block].reshape(-1))
    return partial


@njit(parallel=True, cache=True)
def shifted_backward_products(blas, delta, X, taps_e, k, before, images_per_block):
    """The input error by correlation and the weight increment of one δ, δ laid out once per block: -> (e, partial).

    δ as the input error's correlation reads it (``shifted_products`` on δ padded by
    after = k-1-p before) and as the increment reads it (D, no offset) are the same
    columns, the first shifted by off = (k-1-p)·Ws + (k-1-p): the gaps are equally wide.
    So each block lays δ out once, ``off`` zero columns ahead of D, and runs the
    increment's k·k products (``tap_weight_products``, from column off, against X of the
    forward pass) and the input error's (``tap_products``, from column 0, taps_e
    (k·k, C, O) holding B flipped in space, channel axes swapped). X and the blocks are
    the forward pass's.
    """
    N, O, H, W = delta.shape
    C, ld = X.shape
    _, Ws, plane, tail = geometry(H, W, k, before)
    off = (k - 1 - before) * (Ws + 1)
    stride = images_per_block * plane + tail
    blocks = (N + images_per_block - 1) // images_per_block
    X_flat = X.reshape(-1)
    taps_flat = taps_e.reshape(-1)
    partial = np.empty((blocks, k * k, O, C), dtype=delta.dtype)
    e = np.empty((N, C, H, W), dtype=delta.dtype)
    e_rows = e.reshape(N, C, H * W)
    for block in prange(blocks):
        n0, n1, columns, span = block_of(block, images_per_block, N, H, W, Ws, plane, tail)
        length = max(off + columns, span + (k - 1) * (Ws + 1))  # what either set of products reads
        D = np.empty((O, length), dtype=delta.dtype)
        D[:, :off] = 0
        D[:, off + columns :] = 0
        images_to_columns(delta, n0, n1, 0, Ws, plane, tail, D, off)
        D_flat = D.reshape(-1)
        tap_weight_products(blas, X_flat, ld, block * stride, Ws, k, span, D_flat[off:], length, O, C,
                            partial[block].reshape(-1))
        out = np.empty((C, span), dtype=delta.dtype)  # e for these images, gap positions included
        tap_products(blas, D_flat, length, 0, Ws, k, span, taps_flat, C, O, out.reshape(-1))
        columns_to_images(out, n0, n1, plane, Ws, H, W, 0, e_rows)
    return e, partial


def images_per_block(N, plane, columns=None):
    """Whole images per block: about ``columns`` columns (default ``COLUMNS_PER_BLOCK``), a block count the threads share evenly."""
    columns = COLUMNS_PER_BLOCK if columns is None else columns
    threads = numba.get_num_threads()
    blocks = max(1, -(-N * plane // columns))
    blocks = min(N, -(-blocks // threads) * threads)  # a multiple of the thread count, at most N
    return -(-N // blocks)


def _blocking(N, H, W, k, before, columns):
    """(images per block, columns of X): the blocks of ``shifted_products`` and ``shifted_weight_products``."""
    _, _, plane, tail = geometry(H, W, k, before)
    per_block = images_per_block(N, plane, columns)
    blocks = -(-N // per_block)
    return per_block, blocks * (per_block * plane + tail)


def forward(x, W, columns=None):
    """h = W ⊛ x, "same" padding: (N, C_in, H, W) -> (N, C_out, H, W); cache = (X, k, columns), X the padded x."""
    x = np.ascontiguousarray(x)
    W = np.ascontiguousarray(W, dtype=x.dtype)  # gemm reads both through bare pointers: one dtype
    C_out, C_in, k, _ = W.shape
    N, _, H, Wd = x.shape
    before, after = same_padding(k)
    taps = np.ascontiguousarray(W.transpose(2, 3, 0, 1)).reshape(k * k, C_out, C_in)  # [a·k+b] = W[:, :, a, b]
    per_block, total = _blocking(N, H, Wd, k, before, columns)
    X = np.empty((C_in, total), dtype=x.dtype)  # filled in by the blocks
    h = shifted_products(blas_for(x.dtype), x, taps, before, after, per_block, X)
    return h, (X, k, columns)  # (N, C_out, H, W), ((C_in, blocks × block columns), k, block size)


def _correlation_taps(B):
    """(padding of δ, taps): the transposed convolution's padding and B flipped in space, channel axes
    swapped, as (k·k, C_in, C_out) with [a·k+b] the tap (a, b) (``readable.transposed_convolution``)."""
    C_out, C_in, k, _ = B.shape
    padding, B_flipped = transposed_convolution(B)  # (C_in, C_out, k, k)
    return padding, np.ascontiguousarray(B_flipped.transpose(2, 3, 0, 1)).reshape(k * k, C_in, C_out)


def input_error_correlation(delta, B, columns=None):
    """e_below = Bᵀ δ as the forward correlation of δ padded the other way round: -> (N, C_in, H, W)."""
    delta = np.ascontiguousarray(delta)
    B = np.ascontiguousarray(B, dtype=delta.dtype)  # gemm reads both through bare pointers: one dtype
    C_out, _, k, _ = B.shape
    N, _, H, Wd = delta.shape
    (before, after), taps = _correlation_taps(B)
    per_block, total = _blocking(N, H, Wd, k, before, columns)
    D = np.empty((C_out, total), dtype=delta.dtype)
    return shifted_products(blas_for(delta.dtype), delta, taps, before, after, per_block, D)


def input_error_scatter(delta, B, columns=None):
    """e_below = Bᵀ δ by one product with C_in·k·k rows per block and shifted adds: -> (N, C_in, H, W)."""
    delta = np.ascontiguousarray(delta)
    B = np.ascontiguousarray(B, dtype=delta.dtype)
    C_out, C_in, k, _ = B.shape
    N, _, H, Wd = delta.shape
    before, _ = same_padding(k)
    B_rows = np.ascontiguousarray(B.reshape(C_out, C_in * k * k).T)  # (C_in·k·k, C_out)
    per_block, _ = _blocking(N, H, Wd, k, before, columns)
    return shifted_scatter(blas_for(delta.dtype), delta, B_rows, k, before, per_block)


def backward_correlation(delta, cache, B):
    """(e_below, G) for one δ: ``input_error_correlation`` and ``weight_increment`` with δ laid out once per block."""
    X, k, columns = cache
    delta = np.ascontiguousarray(delta, dtype=X.dtype)
    B = np.ascontiguousarray(B, dtype=X.dtype)
    N, _, H, Wd = delta.shape
    before, _ = same_padding(k)
    _, taps = _correlation_taps(B)
    per_block, _ = _blocking(N, H, Wd, k, before, columns)
    e, partial = shifted_backward_products(blas_for(delta.dtype), delta, X, taps, k, before, per_block)
    return e, _increment_from_partial(partial, k)


def _increment_from_partial(partial, k):
    """G (C_out, C_in, k, k) from the blocks' partial increments (blocks, k·k, C_out, C_in)."""
    _, _, C_out, C_in = partial.shape
    G = partial.sum(axis=0).reshape(k, k, C_out, C_in)  # G[a, b, o, c]
    return np.ascontiguousarray(G.transpose(2, 3, 0, 1))  # (C_out, C_in, k, k)


def weight_increment(delta, cache):
    """G = Σ_{n,i,j} δ xᵀ, summed over all positions: -> (C_out, C_in, k, k); cache from ``forward``."""
    X, k, columns = cache
    delta = np.ascontiguousarray(delta, dtype=X.dtype)  # gemm reads both through bare pointers: one dtype
    N, _, H, Wd = delta.shape
    before, _ = same_padding(k)
    per_block, _ = _blocking(N, H, Wd, k, before, columns)
    partial = shifted_weight_products(blas_for(delta.dtype), delta, X, k, before, per_block)
    return _increment_from_partial(partial, k)  # partial: one G per block, G[:, :, a, b] at a·k+b
