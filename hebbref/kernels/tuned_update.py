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
"""
import numpy as np
from numba import njit, prange

from ..rules import forward_update as reference_update


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
