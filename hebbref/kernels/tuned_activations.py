"""TUNED TIER. The saturated ramp and its derivative: Numba CPU kernels.  # SPEC §2, §3

    x = σ(h) = clip(s·h, -1, 1)          σ'(h) = s  where |s·h| <= 1, else 0
    δ = e ⊙ σ'(h)                                                       ramp_backward (fused)
    σ(h) + a,  (e1 + e2) ⊙ σ'(h)           a sum block's two ends    ramp_plus, ramp_backward_of_sum (fused)

The same arithmetic as ``hebbref.activations`` (s·h in the dtype of h), one parallel
pass over the array. Any shape in, same shape and dtype out. The bounds ±1 and the 0
are numbers of the array's dtype (``h.dtype.type(1)``): with bare Python numbers Numba
clips float32 in float64, at half the vector width, to the same values.

The backward passes read e before the test that picks e·s or 0, not in the branch that
uses it: read under the test, the read is conditional, and compiled for AVX2 LLVM makes
it a masked load (``vmaskmovps``), slow on AMD's CPUs; read first, the loop is plain
loads and a select (BENCHMARKS.md, 2026-12-03, sixth session).
"""
import numpy as np
from numba import njit, prange

from ..activations import DEFAULT_SLOPE


@njit(parallel=True, cache=True)
def ramp_flat(h, s):
    x = np.empty_like(h)
    one = h.dtype.type(1)  # a bare 1 would make the clip, and the loop, float64
    for i in prange(h.size):
        x[i] = min(max(s * h[i], -one), one)
    return x


@njit(parallel=True, cache=True)
def ramp_derivative_flat(h, s):
    d = np.empty_like(h)
    one, zero = h.dtype.type(1), h.dtype.type(0)
    for i in prange(h.size):
        d[i] = s if abs(s * h[i]) <= one else zero
    return d


@njit(parallel=True, cache=True)
def ramp_backward_flat(e, h, s):
    delta = np.empty_like(e)
    one, zero = h.dtype.type(1), e.dtype.type(0)
    for i in prange(h.size):
        v = e[i] * s  # read before the test, not under it (the module's docstring)
        delta[i] = v if abs(s * h[i]) <= one else zero
    return delta


@njit(parallel=True, cache=True)
def ramp_plus_flat(h, a, s):
    x = np.empty_like(h)
    one = h.dtype.type(1)
    for i in prange(h.size):
        x[i] = min(max(s * h[i], -one), one)  # rounded to the dtype, as the reference's σ(h) is
        x[i] = x[i] + a[i]
    return x


@njit(parallel=True, cache=True)
def ramp_backward_of_sum_flat(e1, e2, h, s):
    delta = np.empty_like(e1)
    one, zero = h.dtype.type(1), e1.dtype.type(0)
    for i in prange(h.size):
        v = (e1[i] + e2[i]) * s  # read before the test, not under it
        delta[i] = v if abs(s * h[i]) <= one else zero
    return delta


def ramp(h, slope=DEFAULT_SLOPE):
    """σ(h) = clip(s·h, -1, 1).  # SPEC §2"""
    h = np.ascontiguousarray(h)
    return ramp_flat(h.reshape(-1), h.dtype.type(slope)).reshape(h.shape)


def ramp_derivative(h, slope=DEFAULT_SLOPE):
    """σ'(h) = s where |s·h| <= 1, else 0.  # SPEC §3"""
    h = np.ascontiguousarray(h)
    return ramp_derivative_flat(h.reshape(-1), h.dtype.type(slope)).reshape(h.shape)


def ramp_backward(e, h, slope=DEFAULT_SLOPE):
    """δ = e ⊙ σ'(h) in one pass, without forming σ'(h).  # SPEC §3"""
    e, h = np.ascontiguousarray(e), np.ascontiguousarray(h)
    return ramp_backward_flat(e.reshape(-1), h.reshape(-1), h.dtype.type(slope)).reshape(h.shape)


def ramp_plus(h, a, slope=DEFAULT_SLOPE):
    """σ(h) + a in one pass.  # SPEC §2"""
    h, a = np.ascontiguousarray(h), np.ascontiguousarray(a, dtype=h.dtype)
    return ramp_plus_flat(h.reshape(-1), a.reshape(-1), h.dtype.type(slope)).reshape(h.shape)


def ramp_backward_of_sum(e1, e2, h, slope=DEFAULT_SLOPE):
    """δ = (e1 + e2) ⊙ σ'(h) in one pass, without forming e1 + e2 or σ'(h).  # SPEC §3"""
    e1, e2, h = np.ascontiguousarray(e1), np.ascontiguousarray(e2), np.ascontiguousarray(h)
    return ramp_backward_of_sum_flat(e1.reshape(-1), e2.reshape(-1), h.reshape(-1),
                                     h.dtype.type(slope)).reshape(h.shape)
