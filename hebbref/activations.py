"""The saturated ramp, the paper's activation function (SPEC §2).

    x = σ(h) = clip(s·h, -1, 1)          σ'(h) = s  where |s·h| <= 1, else 0

The slope ``s`` is 0.5 by default. The derivative is taken as ``s`` on the closed
interval, so at the two kinks (|s·h| = 1 exactly) the error still passes.
"""
import numpy as np

DEFAULT_SLOPE = 0.5


def ramp(h, slope=DEFAULT_SLOPE):
    """σ(h) = clip(s·h, -1, 1).  Any shape in, same shape out.  # SPEC §2"""
    return np.clip(slope * h, -1.0, 1.0).astype(h.dtype, copy=False)


def ramp_derivative(h, slope=DEFAULT_SLOPE):
    """σ'(h) = s where |s·h| <= 1, else 0.  Same shape and dtype as ``h``.  # SPEC §3"""
    return np.where(np.abs(slope * h) <= 1.0, slope, 0.0).astype(h.dtype, copy=False)


def ramp_backward(e, h, slope=DEFAULT_SLOPE):
    """δ = e ⊙ σ'(h): the error through the ramp.  # SPEC §3"""
    return e * ramp_derivative(h, slope)


def ramp_plus(h, a, slope=DEFAULT_SLOPE):
    """σ(h) + a: a sum block's output, its second ramp's output plus the first's.  # SPEC §2"""
    x = ramp(h, slope)
    x += a
    return x


def ramp_backward_of_sum(e1, e2, h, slope=DEFAULT_SLOPE):
    """δ = (e1 + e2) ⊙ σ'(h): two errors that reach one unit add before its σ'.  # SPEC §3"""
    return ramp_backward(e1 + e2, h, slope)
