"""TUNED TIER. The SGD step on a weight array, in place, in one parallel pass.  # SPEC §3, §9

The reference (``hebbref.rules.forward_update``) is

    W ← W - η (G + λ W)        (with λ = 0 exactly W ← W - η G)

written as NumPy's ``W -= eta * G``: a temporary array for η G, then a second pass. In
the step benchmark's table 6 on a 2-core Xeon, bp's updates of W (``simple``'s dense
layer alone is 500 × 6272 in float32, 12.5 MB) took 3.0 to 3.1 ms of a ``simple`` step
that way (3.6 to 3.7 untied), and 1.0 to 1.1 (1.2) as the pass below; urfb updates R
too, twice the time (BENCHMARKS.md, 2026-12-02, afternoon). Here each element is updated
where it lies, with the same arithmetic in the same order and dtype, so the same bits:
η and λ are taken in W's dtype, as NumPy takes a Python number next to a float32 array.
Where NumPy would compute in another dtype (η a float64 NumPy scalar with a float32 W,
G of another dtype) or W is not one contiguous block, the reference's own lines run.

Any shape; W is changed in place and nothing is returned. ``update_of`` is the same
with G first, for the plan, which times it on G alone.

**W and R in one pass** (``paired_update``). urfb and kp give R the very increment G that
W gets (``hebbref.rules.UpdatedRandomFeedback``): taken as two passes, G is read twice, and
the step of a large layer is bound by memory, not arithmetic. One pass reads each G[i]
once and writes W[i] and R[i], each with the arithmetic of its own step, so the same bits
as the two steps one after the other. On ``simple``'s dense layer (500 × 6272, float32,
its arrays out of cache) on a 2-core Xeon the two steps took 1.35 ms (best of 41; median
1.57) and the one pass 0.96 (1.08), 0.67 of the two steps' time as a median of the rounds'
ratios (``benchmarks/bench_update.py``, BENCHMARKS.md, eleventh session).
"""
import numpy as np
from numba import njit, prange

from ..rules import forward_update as reference_update
from ..rules import paired_update as reference_pair


@njit(parallel=True, cache=True)
def subtract_scaled(w, g, eta):
    """w ← w - η g, element by element, on flat arrays."""
    for i in prange(w.size):
        w[i] -= eta * g[i]


@njit(parallel=True, cache=True)
def subtract_scaled_with_decay(w, g, eta, decay):
    """w ← w - η (g + λ w), element by element, on flat arrays."""
    for i in prange(w.size):
        w[i] -= eta * (g[i] + decay * w[i])


def weight_update(W, G, eta, weight_decay=0.0):
    """W ← W - η (G + λ W), in place: ``hebbref.rules.forward_update``, bit for bit.  # SPEC §3"""
    exact = (isinstance(W, np.ndarray) and isinstance(G, np.ndarray) and W.flags.c_contiguous
             and W.flags.writeable and G.shape == W.shape and G.dtype == W.dtype
             and W.dtype in (np.float32, np.float64) and np.result_type(eta, weight_decay, G, W) == W.dtype)
    if not exact:
        reference_update(W, G, eta, weight_decay)
        return
    g = np.ascontiguousarray(G).reshape(-1)
    dtype = W.dtype.type
    if weight_decay:
        subtract_scaled_with_decay(W.reshape(-1), g, dtype(eta), dtype(weight_decay))
    else:
        subtract_scaled(W.reshape(-1), g, dtype(eta))


def update_of(G, W=None, eta=0.5, weight_decay=0.0):
    """``weight_update(W, G, eta, weight_decay)`` with G first: the plan's path (``hebbref.kernels.plan``).

    The plan times it on G alone, so W None is a scratch array of zeros of G's shape:
    timing never changes a network's weights.
    """
    weight_update(np.zeros_like(G) if W is None else W, G, eta, weight_decay)


@njit(parallel=True, cache=True)
def subtract_scaled_pair(w, r, g, eta):
    """w ← w - η g and r ← r - η g, element by element, on flat arrays, each g[i] read once."""
    for i in prange(w.size):
        step = eta * g[i]
        w[i] -= step
        r[i] -= step


@njit(parallel=True, cache=True)
def subtract_scaled_pair_with_decay(w, r, g, eta, decay, feedback_decay):
    """w ← w - η (g + λ w) and r ← r - η (g + λ_R r), element by element; a decay of 0 is no decay term at all
    (``forward_update``'s branch: g + 0·r is not g where r is infinite)."""
    for i in prange(w.size):
        gi = g[i]
        w[i] -= eta * (gi + decay * w[i]) if decay else eta * gi
        r[i] -= eta * (gi + feedback_decay * r[i]) if feedback_decay else eta * gi


def paired_update(W, R, G, eta, weight_decay=0.0, feedback_decay=0.0):
    """W ← W - η (G + λ W) and R ← R - η (G + λ_R R), in place, in one pass over G: ``hebbref.rules.paired_update``,
    bit for bit.  # SPEC §3, §9"""
    def fits(A):
        return (isinstance(A, np.ndarray) and A.flags.c_contiguous and A.flags.writeable and A.shape == G.shape
                and A.dtype == G.dtype)

    exact = (isinstance(G, np.ndarray) and G.dtype in (np.float32, np.float64) and fits(W) and fits(R)
             and not np.shares_memory(W, R)
             and np.result_type(eta, weight_decay, feedback_decay, G, W) == W.dtype)
    if not exact:
        reference_pair(W, R, G, eta, weight_decay, feedback_decay)
        return
    g = np.ascontiguousarray(G).reshape(-1)
    dtype = W.dtype.type
    if weight_decay or feedback_decay:
        subtract_scaled_pair_with_decay(W.reshape(-1), R.reshape(-1), g, dtype(eta), dtype(weight_decay),
                                        dtype(feedback_decay))
    else:
        subtract_scaled_pair(W.reshape(-1), R.reshape(-1), g, dtype(eta))


def paired_update_of(G, W=None, R=None, eta=0.5, weight_decay=0.0, feedback_decay=0.0):
    """``paired_update(W, R, G, ...)`` with G first: the plan's path. W or R None is a scratch array of zeros of G's
    shape, as in ``update_of``."""
    paired_update(np.zeros_like(G) if W is None else W, np.zeros_like(G) if R is None else R, G, eta,
                  weight_decay, feedback_decay)
