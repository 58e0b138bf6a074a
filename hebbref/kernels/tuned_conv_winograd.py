"""TUNED TIER. Tied convolution, stride 1, "same" padding, by Winograd's minimal filtering.  # SPEC §2, §3, §5

The equations of ``hebbref.layers.conv`` (xp is x zero-padded, p the padding before):

    h[n,o,i,j] = Σ_{c,a,b} W[o,c,a,b] xp[n,c,i+a,j+b]          conv_forward
    e[n,c,y,x] = Σ_{o,a,b} B[o,c,a,b] δ[n,o,y+p-a,x+p-b]        conv_input_error   (B = W or R)
    G[o,c,a,b] = Σ_{n,i,j} δ[n,o,i,j] xp[n,c,i+a,j+b]           conv_weight_increment

**One dimension.** m outputs of a correlation with an r-tap kernel g, y_i = Σ_a g_a d_{i+a}
(i < m), read t = m + r - 1 inputs d. Written as polynomials, y is the transpose of the
product of a degree m-1 polynomial with g's: evaluate both at t points (the last one ∞,
which reads the leading coefficient), multiply the t values, and interpolate back. With
E_n the t×n evaluation matrix (row p: 1, p, p², …; row ∞: 0, …, 0, 1) and Vt = E_t,

    y = Aᵀ [ (G g) ⊙ (Bᵀ d) ],     A = E_m (t×m),  G = E_r (t×r),  Bᵀ = Vt⁻ᵀ (t×t)

(``winograd_matrices``): t products where the direct sum takes m·r. Winograd's and
Toom and Cook's construction; Lavin and Gray (2016, "Fast algorithms for convolutional
neural networks") brought it to conv layers, F(2×2, 3×3) and F(4×4, 3×3) among others.
The points (``POINTS``) decide the rounding: with 0, ±1 and ∞ alone (t ≤ 4: F(2, 3),
F(3, 2)) the transforms hold only 0, ±1 and ±½, and float32 keeps as many digits as the
direct sums; F(4, 3) needs ±2 too, and loses about five bits more
(``tests/test_conv_winograd.py`` measures both). ``plan.APPLIES`` offers the two.

**Two dimensions**, tiles of m×m outputs, each reading a t×t patch d of xp:

    Y (m×m) = Aᵀ [ Σ_c U[o,c] ⊙ V[c] ] A,    U[o,c] = G W[o,c] Gᵀ,   V[c] = Bᵀ d[c] B

For each of the t·t positions ξ of the transformed tile, the sum over c is a matrix
product over all tiles at once: M[ξ] (tiles, C_out) = V[ξ] (tiles, C_in) @ U[ξ]ᵀ. So a
tile takes t² products per pair of channels where the direct sum takes m²·k²: 16
against 36 for F(2×2, 3×3), 36 against 144 for F(4×4, 3×3), in t² gemms, plus the
transforms of the input and of the output.

**The weight increment** is the exact derivative of the same formula (it equals the
correlation's): dM = A dY Aᵀ per tile (dY the tile's δ, zero past the image), then
dU[ξ] (C_out, C_in) = Σ_tiles dM[ξ]ᵀ V[ξ] and G = Gᵀ dU G.
**The input error** is the forward equation applied to δ padded the other way round,
with B flipped in space and its two channel axes swapped (``readable.transposed_convolution``).

**Blocks.** The batch is cut into blocks of whole images (``images_per_block``: at most
``images``, an argument that ``plan.choose`` times at several sizes), and ``prange``
runs over the blocks. Each block lays its images out with the channels last (padded),
so that every transform is a sum of vectors along the channels; transforms the patches
(first along their rows, a whole row of tiles at once, then along their columns,
``to_tiles``); runs the t² products; transforms the result back (``from_tiles``) and
writes its images out.

**The products.** In float32 the forward products M[ξ] = V[ξ] @ U[ξ]ᵀ are the channel
path's loops (``register_products``, ``tuned_conv_channels.correlate_group``): a tile for
an output position, an input channel for a window term, sums for SPAN tiles and a block
of BLOCK output channels in vector registers, U[ξ] laid out beforehand block by block
(``register_weights``). These products are small (deep 3 at 16 images a block: 64 tiles
by 64 input channels by 64 output channels), where OpenBLAS's gemm, which packs both
matrices first, ran slower (BENCHMARKS.md, sixteenth session: deep 2b's and 3's Winograd
paths 0.76 to 0.97 of their time with gemm). Where the output channels do not fill whole
blocks (16 output channels against AVX-512's blocks of 32, or an input error's 3 or 16
channels below) the register loops add zeros in the lanes past them; a first version
that ran them there took up to 1.78 times gemm's time (the same section): there the
products stay gemm's. float64, which those loops do not take, goes by gemm too (SciPy's OpenBLAS through
``tuned_conv_shifted.gemm``; ``by_registers``). The weight increment's products
dU[ξ] = Σ_tiles dM[ξ]ᵀ V[ξ] stay gemm's in both dtypes: summed over the tiles, the
channel path's increment loops were no faster there (a scratch timing). The two layouts
(``channels_last``, ``channels_first``) turn each image over whole, through vector
registers for float32 (``tuned_simd.turn_over_any``). Every run of numbers that the
layouts and the transforms move is indexed by unsigned numbers (``tuned_simd.copy_run``,
``add_rows``): Numba wraps a negative signed index around, and LLVM compiles such a
loop with gathers and scatters. The weight increment forms V again from x, block by
block, rather than keep it (t²/m² = 2.25 to 4 times the input's size), and each thread
adds its blocks into its own dU.

Shapes as in the reference: x (N, C_in, H, W); W, R (C_out, C_in, k, k); h, δ (N, C_out, H, W).
The cache of ``forward`` is ``(x, k, m, images)``: the input and the kernel width first, as the
row and channel paths' (the plan's ``conv_weight_increment`` reads them, ``plan.increment_after``).
"""
import numba
import numpy as np
from numba import njit, prange

from ..layers.conv import same_padding
from .readable import transposed_convolution
from .tuned_conv_channels import BLOCK, SPAN, correlate_block, positions, term_offsets
from .tuned_conv_shifted import NO_TRANSPOSE, TRANSPOSE, blas_for, gemm
from .tuned_simd import copy_run, turn_over_any

# the finite evaluation points, in the order they are taken; ∞ is always the last point
POINTS = (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5)
OUTPUTS_PER_TILE = 2  # m: 2×2 outputs per tile by default (the plan's paths choose per kernel width)
IMAGES_PER_BLOCK = 8  # at most this many images per block by default (the plan times others too)


def evaluation_matrix(t, n):
    """E (t×n): row i evaluates a degree n-1 polynomial at POINTS[i]; the last row reads its leading coefficient (∞)."""
    E = np.zeros((t, n))
    for i, point in enumerate(POINTS[: t - 1]):
        E[i] = point ** np.arange(n)
    E[t - 1, n - 1] = 1.0
    return E


def winograd_matrices(m, r):
    """(A (t×m), G (t×r), Bᵀ (t×t)) of F(m, r): y = Aᵀ [(G g) ⊙ (Bᵀ d)] for y_i = Σ_a g_a d_{i+a}, i < m."""
    t = m + r - 1
    if t - 1 > len(POINTS):
        raise ValueError(f"F({m}, {r}) needs {t - 1} finite points; hebbref has {len(POINTS)}")
    return evaluation_matrix(t, m), evaluation_matrix(t, r), np.linalg.inv(evaluation_matrix(t, t)).T


@njit(cache=True)
def channels_last(x, n0, n1, before, Xc):
    """Xc[n - n0, before + y, before + x, c] = x[n, c, y, x] for images n0..n1-1, zeros around each image.

    Xc (images, Hb, Wb, C): the block's images with their channels last, so that every
    operation on a pixel below is a loop along the channels, which vectorises. Each
    image is turned over whole (``tuned_simd.turn_over_any``: (C, H·W) -> (H·W, C), by
    vector registers for float32), then its rows are copied into the padded image.
    """
    _, C, H, W = x.shape
    _, Hb, Wb, _ = Xc.shape
    source = x.reshape(-1)
    target = Xc.reshape(-1)
    pixels = np.empty(H * W * C, dtype=x.dtype)  # one image with its channels last, not padded
    row = W * C
    for n in range(n0, n1):
        image = Xc[n - n0]
        image[:before] = 0
        image[before + H :] = 0
        for y in range(H):
            image[before + y, :before] = 0
            image[before + y, before + W :] = 0
        turn_over_any(source, n * C * H * W, H * W, pixels, 0, C, C, H * W)  # pixels[p·C + c] = x[n, c, p]
        for y in range(H):
            copy_run(pixels, y * row, target, (((n - n0) * Hb + before + y) * Wb + before) * C, row)


@njit(cache=True)
def channels_first(Yc, n0, n1, h):
    """h[n, o, y, x] = Yc[n - n0, y, x, o] for images n0..n1-1, the positions past the image dropped.

    Each image is turned over whole ((Hb·Wb, O) -> (O, Hb·Wb), ``tuned_simd.turn_over_any``):
    straight into h where the tiles cover the image exactly, else into a scratch image
    whose planes' rows are then copied out without the block's padding.
    """
    _, O, H, W = h.shape
    _, Hb, Wb, _ = Yc.shape
    source = Yc.reshape(-1)
    target = h.reshape(-1)
    exact = Hb == H and Wb == W
    planes = np.empty(0 if exact else O * Hb * Wb, dtype=h.dtype)  # one image with its channels first, padded
    for n in range(n0, n1):
        if exact:
            turn_over_any(source, (n - n0) * H * W * O, O, target, n * O * H * W, H * W, H * W, O)
            continue
        turn_over_any(source, (n - n0) * Hb * Wb * O, O, planes, 0, Hb * Wb, Hb * Wb, O)  # planes[o·Hb·Wb + p]
        for o in range(O):
            for y in range(H):
                copy_run(planes, (o * Hb + y) * Wb, target, ((n * O + o) * H + y) * W, W)


@njit(cache=True, inline="always")  # inlined where it is called: as a call, its loops do not vectorise
def add_rows(weights, source, start, step, count, target, at, length, reps, source_jump, target_jump):
    """target[at + r·target_jump :][:length] = Σ_b weights[b] source[start + b·step + r·source_jump :][:length].

    For b < count and each of ``reps`` runs r. The zero weights are skipped and the
    others taken two at a time, so that each pass over a run adds two source rows: the
    transforms' matrices hold two to four nonzero entries a row, and these passes are
    most of their cost. The runs are indexed in the flat arrays by unsigned numbers, as
    in ``copy_run``, with no slice made per run (most runs are one pixel's channels).
    """
    first = True  # the first pass writes, the later ones add
    pending = -1  # a nonzero weight waiting for a second one
    n = np.uint64(length)
    for b in range(count + 1):
        if b < count and weights[b] == 0:
            continue
        if b < count and pending < 0:
            pending = b
            continue
        if pending < 0:
            break
        w0 = weights[pending]
        if b < count:  # two rows in one pass
            w1 = weights[b]
            for r in range(reps):
                out = np.uint64(at + r * target_jump)
                s0 = np.uint64(start + pending * step + r * source_jump)
                s1 = np.uint64(start + b * step + r * source_jump)
                if first:
                    for s in range(n):  # vectorised
                        target[out + s] = w0 * source[s0 + s] + w1 * source[s1 + s]
                else:
                    for s in range(n):  # vectorised
                        target[out + s] += w0 * source[s0 + s] + w1 * source[s1 + s]
        else:  # the last nonzero weight, alone
            for r in range(reps):
                out = np.uint64(at + r * target_jump)
                s0 = np.uint64(start + pending * step + r * source_jump)
                if first:
                    for s in range(n):  # vectorised
                        target[out + s] = w0 * source[s0 + s]
                else:
                    for s in range(n):  # vectorised
                        target[out + s] += w0 * source[s0 + s]
        first = False
        pending = -1
    if first:  # every weight zero
        for r in range(reps):
            out = np.uint64(at + r * target_jump)
            for s in range(n):
                target[out + s] = 0


@njit(cache=True)
def to_tiles(Xc, L, m, Th, Tw, out):
    """out[i·q+j, tile, c] = Σ_{a,b<p} L[i,a] L[j,b] Xc[n, ti·m+a, tj·m+b, c], tile = (n·Th+ti)·Tw+tj: L @ patch @ Lᵀ.

    L (q×p) is Bᵀ (t×t) for the input's patches and A (t×m) for the tiles of δ; the
    patches of a tile row start m apart and overlap. First along the patch rows, for a
    whole row of tiles at once (Z[i] = Σ_a L[i,a] Xc[n, ti·m+a]: vectors of a whole
    image row), then along the patch columns, tile by tile (vectors along the
    channels). The zero entries of L are skipped. out is (q², tiles, C).
    """
    nb, Hb, Wb, C = Xc.shape
    q, p = L.shape
    nt = out.shape[1]
    X = Xc.reshape(-1)
    target = out.reshape(-1)
    row = Wb * C
    Z = np.empty(q * row, dtype=Xc.dtype)
    for n in range(nb):
        for ti in range(Th):
            for i in range(q):
                add_rows(L[i], X, (n * Hb + ti * m) * row, row, p, Z, i * row, row, 1, 0, 0)
            first_tile = (n * Th + ti) * Tw
            for i in range(q):
                for j in range(q):  # tile tj reads columns tj·m + b of Z[i]
                    add_rows(L[j], Z, i * row, C, p, target, ((i * q + j) * nt + first_tile) * C, C, Tw, m * C, C)


@njit(cache=True)
def from_tiles(M, A_t, m, Th, Tw, Yc):
    """Yc[n, ti·m+i, tj·m+j, o] = Σ_{a,b<t} Aᵀ[i,a] Aᵀ[j,b] M[a·t+b, tile, o], tile = (n·Th+ti)·Tw+tj: Aᵀ @ M_tile @ A.

    First along the tiles' columns, tile by tile (Q[a, tj·m+j] = Σ_b Aᵀ[j,b] M[a·t+b, tile]:
    vectors along the channels), then along their rows for a whole row of tiles at once
    (vectors of a whole image row).
    """
    nb, Hb, Wb, O = Yc.shape
    _, t = A_t.shape
    nt = M.shape[1]  # at least the tiles: rows past the block's own are not read
    source = M.reshape(-1)
    Y = Yc.reshape(-1)
    row = Wb * O
    Q = np.empty(t * row, dtype=Yc.dtype)
    for n in range(nb):
        for ti in range(Th):
            first_tile = (n * Th + ti) * Tw
            for a in range(t):
                for j in range(m):
                    add_rows(A_t[j], source, (a * t * nt + first_tile) * O, nt * O, t, Q, a * row + j * O, O, Tw, O,
                             m * O)
            for i in range(m):
                add_rows(A_t[i], Q, 0, row, t, Y, (n * Hb + ti * m + i) * row, row, 1, 0, 0)


@njit(cache=True)
def tiles_of(x, n0, n1, before, L, m, Th, Tw):
    """(q², tiles, C): L @ patch @ Lᵀ for every p×p patch (p = L's columns) of images n0..n1-1, x padded by ``before``.

    With L = Bᵀ the input's transformed patches V, with L = A the transformed tiles of δ.
    """
    C = x.shape[1]
    q, p = L.shape
    Xc = np.empty((n1 - n0, Th * m + p - m, Tw * m + p - m, C), dtype=x.dtype)
    channels_last(x, n0, n1, before, Xc)
    out = np.empty((q * q, (n1 - n0) * Th * Tw, C), dtype=x.dtype)
    to_tiles(Xc, L, m, Th, Tw, out)
    return out


@njit(cache=True)
def block_of(block, per_block, N):
    """(n0, n1): the images of a block."""
    n0 = block * per_block
    return n0, min(N, n0 + per_block)


def register_weights(U):
    """U (t², O, C) float32 -> (t², O·C): each position's U laid out for ``register_products``, a block of BLOCK output
    channels at a time, an input channel's weights of the block together; (t², 0) where O is not a whole number of
    blocks (the products go by gemm there)."""
    tt, O, C = U.shape
    if O % BLOCK:
        return np.empty((tt, 0), dtype=np.float32)
    return np.ascontiguousarray(U.reshape(tt, O // BLOCK, BLOCK, C).transpose(0, 1, 3, 2)).reshape(tt, -1)


@njit(cache=True)
def register_products(V, Ub, O):
    """M[ξ] (tiles, O) = V[ξ] (tiles, C) @ U[ξ]ᵀ for every position ξ, the sums held in vector registers.

    The products are the channel path's loops (``tuned_conv_channels.correlate_group``)
    with a tile for a position and an input channel for a window term: SPAN tiles at once
    for a block of BLOCK output channels (O a whole number of blocks), each input
    channel's BLOCK weights loaded as two vectors and the tiles' inputs broadcast. M has
    whole passes of rows, the last tile repeated past the block's own.
    """
    tt, nt, C = V.shape
    q = positions(nt, 1, C, SPAN)  # tile p's row of V[ξ]: p·C, in whole passes
    offs = term_offsets(C, 1, 1, 1, C)  # input channel c: c
    Pq = q.size
    M = np.empty((tt, Pq, O), dtype=np.float32)
    for xi in range(tt):
        source, target, weights = V[xi].reshape(-1), M[xi].reshape(-1), Ub[xi]
        for g in range(O // BLOCK):
            correlate_block(source, weights, g * C * BLOCK, C, offs, q, Pq, target, g * BLOCK, O, SPAN)
    return M


@njit(cache=True)
def gemm_products(blas, V, U_flat, O):
    """M[ξ] (tiles, O) = V[ξ] (tiles, C) @ U[ξ]ᵀ for every position ξ, by gemm; U_flat is U (t², O, C) flat."""
    tt, nt, C = V.shape
    M = np.empty((tt, nt, O), dtype=V.dtype)
    for xi in range(tt):
        # M[ξ] (nt, O) = V[ξ] (nt, C) @ U[ξ]ᵀ (C, O)  is, in Fortran terms,
        # M[ξ]ᵀ (O, nt) = (U[ξ] as Fortran (C, O), ld = C)ᵀ @ (V[ξ] as Fortran (C, nt), ld = C)
        gemm(blas, TRANSPOSE, NO_TRANSPOSE, O, nt, C, 1.0, U_flat[xi * O * C :], C, V[xi].reshape(-1), C, 0.0,
             M[xi].reshape(-1), O)
    return M


@njit(parallel=True, cache=True)
def winograd_products(blas, x, U, Ub, A_t, B_t, m, before, per_block, O):
    """h (N, O, H, W) = Σ_c the correlation of x with the kernels whose transforms are U (t², O, C): tile by tile.

    Per block: its images with the channels last, V = Bᵀ d B of every patch (t², tiles,
    C), M[ξ] = V[ξ] @ U[ξ]ᵀ (tiles, O) for each ξ, Y = Aᵀ M A, written out. The products
    by ``register_products`` from ``Ub`` = ``register_weights(U)`` (float32) where the output
    channels fill whole blocks, else (``Ub`` empty) by gemm; ``Ub`` is None in float64 (Numba compiles only
    the branch the type of ``Ub`` takes there: the register loops take float32 alone).
    """
    N, C, H, W = x.shape
    Th, Tw = -(-H // m), -(-W // m)
    blocks = -(-N // per_block)
    U_flat = U.reshape(-1)
    h = np.empty((N, O, H, W), dtype=x.dtype)
    for block in prange(blocks):
        n0, n1 = block_of(block, per_block, N)
        V = tiles_of(x, n0, n1, before, B_t, m, Th, Tw)  # (t², tiles, C)
        if Ub is None:
            M = gemm_products(blas, V, U_flat, O)
        elif Ub.shape[1] == 0:  # no layout from register_weights: a part block of output channels, gemm
            M = gemm_products(blas, V, U_flat, O)
        else:
            M = register_products(V, Ub, O)
        Yc = np.empty((n1 - n0, Th * m, Tw * m, O), dtype=x.dtype)
        from_tiles(M, A_t, m, Th, Tw, Yc)
        channels_first(Yc, n0, n1, h)
    return h


@njit(parallel=True, cache=True)
def winograd_weight_products(blas, x, delta, A, B_t, m, before, per_block, parts):
    """dU (parts, t², O, C): Σ over a part's blocks of Σ_tiles dM[ξ]ᵀ V[ξ], dM = A dY Aᵀ of δ's tiles, V = Bᵀ d B of x's patches.

    The blocks are shared out in ``parts`` runs of consecutive blocks (one per thread),
    each adding its blocks' products into its own dU (beta = 1 after its first block).
    """
    N, C, H, W = x.shape
    O = delta.shape[1]
    t = B_t.shape[0]
    Th, Tw = -(-H // m), -(-W // m)
    blocks = -(-N // per_block)
    partial = np.zeros((parts, t * t, O, C), dtype=x.dtype)
    for part in prange(parts):
        G_flat = partial[part].reshape(t * t, O * C)
        for block in range(part * blocks // parts, (part + 1) * blocks // parts):
            n0, n1 = block_of(block, per_block, N)
            nt = (n1 - n0) * Th * Tw
            V = tiles_of(x, n0, n1, before, B_t, m, Th, Tw)  # (t², nt, C)
            dM = tiles_of(delta, n0, n1, 0, A, m, Th, Tw)  # (t², nt, O): A dY Aᵀ, δ zero past the image
            for xi in range(t * t):
                # dU[ξ] (O, C) += dM[ξ]ᵀ (O, nt) @ V[ξ] (nt, C)  is, in Fortran terms,
                # dU[ξ]ᵀ (C, O) += (V[ξ] as Fortran (C, nt), ld = C) @ (dM[ξ] as Fortran (O, nt), ld = O)ᵀ
                gemm(blas, NO_TRANSPOSE, TRANSPOSE, C, O, nt, 1.0, V[xi].reshape(-1), C, dM[xi].reshape(-1), O, 1.0,
                     G_flat[xi], C)
    return partial


def images_per_block(N, images=None):
    """Whole images per block: at most ``images`` (default ``IMAGES_PER_BLOCK``), as many as leave a block count
    that the threads share evenly (or one image a block)."""
    threads = numba.get_num_threads()
    per_block = max(1, min(N, IMAGES_PER_BLOCK if images is None else images))
    while per_block > 1 and -(-N // per_block) % threads:
        per_block -= 1
    return per_block


@njit(parallel=True, cache=True)
def sandwich(G, W):
    """U[a·t+b, o, c] = Σ_{i,j} G[a,i] G[b,j] W[o,c,i,j] = (G W[o,c] Gᵀ)[a,b]: (C_out, C_in, k, k) -> (t², C_out, C_in), float64.

    In float64 (G is) on Numba's threads, one output channel o per parallel iteration:
    W[o]'s taps laid out along the input channels, then for each position a·t+b a sum
    over the k² taps of vectors along c. A filter's few products are no work for BLAS,
    and NumPy's products would wake NumPy's own threads in the middle of a step (README,
    "Choices and deviations").
    """
    O, C, k, _ = W.shape
    t = G.shape[0]
    GG = np.empty((t * t, k * k))  # GG[a·t+b, i·k+j] = G[a,i] G[b,j]
    for a in range(t):
        for b in range(t):
            for i in range(k):
                for j in range(k):
                    GG[a * t + b, i * k + j] = G[a, i] * G[b, j]
    U = np.empty((t * t, O, C))
    for o in prange(O):
        taps = np.empty((k * k, C))  # taps[i·k+j, c] = W[o,c,i,j]
        for c in range(C):
            for i in range(k):
                for j in range(k):
                    taps[i * k + j, c] = W[o, c, i, j]
        for position in range(t * t):
            row = U[position, o]
            row[:] = 0.0
            for tap in range(k * k):
                weight = GG[position, tap]
                if weight != 0.0:  # most of G's products are 0 or ±1
                    for c in range(C):  # vectorised
                        row[c] += weight * taps[tap, c]
    return U


@njit(parallel=True, cache=True)
def sandwich_back(G, dU):
    """dW[o,c,i,j] = Σ_{a,b} G[a,i] G[b,j] dU[a·t+b, o, c] = (Gᵀ dU[:,o,c] G)[i,j]: (t², C_out, C_in) -> (C_out, C_in, k, k).

    The derivative of ``sandwich`` (its transpose), in float64 in the same way.
    """
    _, O, C = dU.shape
    t, k = G.shape
    dW = np.empty((O, C, k, k))
    for o in prange(O):
        taps = np.zeros((k * k, C))  # taps[i·k+j, c] = Σ_{a,b} G[a,i] G[b,j] dU[a·t+b, o, c]
        for a in range(t):
            for b in range(t):
                row = dU[a * t + b, o]
                for i in range(k):
                    for j in range(k):
                        weight = G[a, i] * G[b, j]
                        if weight != 0.0:
                            for c in range(C):  # vectorised
                                taps[i * k + j, c] += weight * np.float64(row[c])
        for c in range(C):
            for i in range(k):
                for j in range(k):
                    dW[o, c, i, j] = taps[i * k + j, c]
    return dW


def kernel_transforms(W, m):
    """U (t², C_out, C_in) = G W[o,c] Gᵀ at each of the t² positions, and the matrices (A, G, Bᵀ) of F(m, k)."""
    k = W.shape[-1]
    A, G, B_t = winograd_matrices(m, k)
    U = sandwich(G, W)
    return np.ascontiguousarray(U, dtype=W.dtype), (A, G, B_t)


def by_registers(dtype):
    """Whether the forward products may go by vector registers (float32: ``register_products``, where the output
    channels fill whole blocks) rather than by gemm (float64, which the register loops do not take)."""
    return np.dtype(dtype) == np.float32


def correlation(x, W, before, m, images=None):
    """h[n,o,i,j] = Σ_{c,a,b} W[o,c,a,b] xp[n,c,i+a,j+b], xp padded by ``before`` (and as needed after)."""
    x = np.ascontiguousarray(x)
    N = x.shape[0]
    U, (A, _, B_t) = kernel_transforms(np.asarray(W, dtype=x.dtype), m)
    dtype = x.dtype
    per_block = images_per_block(N, images)
    Ub = register_weights(U) if by_registers(dtype) else None
    return winograd_products(blas_for(dtype), x, U, Ub, np.ascontiguousarray(A.T, dtype=dtype),
                             np.ascontiguousarray(B_t, dtype=dtype), m, before, per_block, W.shape[0])


def forward(x, W, m=OUTPUTS_PER_TILE, images=None):
    """h = W ⊛ x, "same" padding: (N, C_in, H, W) -> (N, C_out, H, W); cache = (x, k, m, images)."""
    x = np.ascontiguousarray(x)
    before, _ = same_padding(W.shape[-1])
    return correlation(x, W, before, m, images), (x, W.shape[-1], m, images)


def input_error(delta, B, m=OUTPUTS_PER_TILE, images=None):
    """e_below = Bᵀ δ as the forward correlation of δ padded the other way round: -> (N, C_in, H, W)."""
    (before, _), B_flipped = transposed_convolution(B)
    return correlation(delta, B_flipped, before, m, images)


def weight_increment(delta, cache):
    """G = Σ_{n,i,j} δ xᵀ: -> (C_out, C_in, k, k); cache = (x, k, m, images) from ``forward``."""
    return increment_from_input(delta, *cache)


def increment_from_input(delta, x, k, m=OUTPUTS_PER_TILE, images=None):
    """G = Σ_{n,i,j} δ xᵀ from the input x itself, by tiles of m×m outputs, ``images`` per block."""
    delta = np.ascontiguousarray(delta, dtype=x.dtype)
    N = x.shape[0]
    A, G, B_t = winograd_matrices(m, k)
    before, _ = same_padding(k)
    dtype = x.dtype
    per_block = images_per_block(N, images)
    parts = min(numba.get_num_threads(), -(-N // per_block))
    partial = winograd_weight_products(blas_for(dtype), x, delta, np.ascontiguousarray(A, dtype=dtype),
                                       np.ascontiguousarray(B_t, dtype=dtype), m, before, per_block, parts)
    dU = partial.sum(axis=0)  # dU[a·t+b, o, c]
    return np.ascontiguousarray(sandwich_back(G, dU), dtype=dtype)
