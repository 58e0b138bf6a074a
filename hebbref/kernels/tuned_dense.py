"""TUNED TIER. The dense layer's three products on Numba's threads.  # SPEC §2, §3

The equations of ``hebbref.layers.dense`` (x (B, D_in), W and R (D_out, D_in), δ (B, D_out)):

    h = x Wᵀ              dense_forward
    e_below = δ B         dense_input_error   (B = W or R)
    G = δᵀ x              dense_weight_increment

Each is one matrix product, C = op(P) op(Q), with op a transpose or none. The product
is cut into as many parts as Numba has threads, along the longer side of C, and
``prange`` runs one SciPy gemm per part; ``hebbref.runtime`` loaded SciPy's OpenBLAS on
one thread, so each part runs on the thread that calls it.

**Why not NumPy's ``@``**, which is as fast alone: NumPy's own OpenBLAS runs a product on
threads of its own, and after each product they spin (about 0.1 s) waiting for more
work, unless ``OPENBLAS_THREAD_TIMEOUT`` was set before NumPy loaded, which a library
cannot do. In a training step the conv kernels follow at once, on Numba's threads, and
shared the cores with the spinning ones: on 2 cores `deep`'s step took about one and a
half times as long as with the variable set. Even with it set, `simple`'s three products
took nearly twice as long in a step as alone. Here the products run on Numba's threads,
which sleep when idle (``hebbref.runtime``), and both went away (BENCHMARKS.md,
2026-12-02, "a Zen 5 EPYC with AVX-512; the dense products on Numba's threads").
"""
import numba
import numpy as np
from numba import njit, prange

from .tuned_conv_shifted import NO_TRANSPOSE, TRANSPOSE, blas_for, gemm


@njit(parallel=True, cache=True)
def split_product(blas, P, Q, transpose_p, transpose_q, parts):
    """C = op(P) op(Q), row-major, (M, N): the M or N side (the longer) cut into ``parts``, one gemm each.

    op(P) is (M, K): P itself (M, K), or Pᵀ with P (K, M); op(Q) is (K, N): Q (K, N), or
    Qᵀ with Q (N, K). In gemm's column-major terms C is the (N, M) matrix Cᵀ = op(Q)ᵀ op(P)ᵀ,
    and a row-major matrix the column-major transpose of itself (``tuned_conv_shifted.gemm``).
    """
    M = P.shape[1] if transpose_p else P.shape[0]
    K = P.shape[0] if transpose_p else P.shape[1]
    N = Q.shape[0] if transpose_q else Q.shape[1]
    C = np.empty((M, N), dtype=P.dtype)
    p, q, c = P.ravel(), Q.ravel(), C.ravel()
    # column-major, a stored (r, s) array is its transpose (s, r): op(Q)ᵀ (N, K) is Q (K, N) as
    # stored ("N", ld N), or Q (N, K) transposed ("T", ld K); op(P)ᵀ (K, M) likewise from P
    code_q, ld_q = (TRANSPOSE, K) if transpose_q else (NO_TRANSPOSE, N)
    code_p, ld_p = (TRANSPOSE, M) if transpose_p else (NO_TRANSPOSE, K)
    along_rows = M >= N
    side = M if along_rows else N
    parts = max(1, min(parts, side))
    for part in prange(parts):
        start, stop = part * side // parts, (part + 1) * side // parts
        if stop == start:
            continue
        if along_rows:  # C[start:stop] = op(P)[start:stop] op(Q): columns start.. of the column-major Cᵀ
            p_at = start if transpose_p else start * K
            gemm(blas, code_q, code_p, N, stop - start, K, 1.0, q, ld_q, p[p_at:], ld_p, 0.0, c[start * N:], N)
        else:  # C[:, start:stop] = op(P) op(Q)[:, start:stop]: rows start.. of Cᵀ
            q_at = start * K if transpose_q else start
            gemm(blas, code_q, code_p, stop - start, M, K, 1.0, q[q_at:], ld_q, p, ld_p, 0.0, c[start:], N)
    return C


def _product(P, Q, transpose_p, transpose_q):
    """op(P) op(Q) by ``split_product`` in float32 and float64; another dtype or an empty operand by NumPy's ``@``."""
    dtype = np.result_type(P, Q)
    if dtype not in (np.float32, np.float64) or P.size == 0 or Q.size == 0:
        return (P.T if transpose_p else P) @ (Q.T if transpose_q else Q)
    P = np.ascontiguousarray(P, dtype=dtype)
    Q = np.ascontiguousarray(Q, dtype=dtype)
    return split_product(blas_for(dtype), P, Q, transpose_p, transpose_q, numba.get_num_threads())


def dense_forward(x, W):
    """h = x Wᵀ: (B, D_in), (D_out, D_in) -> (B, D_out), cache = x."""
    return _product(x, W, False, True), x


def dense_input_error(delta, cache, B):
    """e_below = δ B: (B, D_out) -> (B, D_in), with B = W (bp) or R (frfb, urfb)."""
    return _product(delta, B, False, False)


def dense_weight_increment(delta, cache):
    """G = δᵀ x: (B, D_out) -> (D_out, D_in), the Hebbian product."""
    return _product(delta, cache, True, False)
