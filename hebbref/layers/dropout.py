"""Dropout (SPEC §2): p is the probability of **dropping** a unit.

In training, ``out = x · m`` with ``m = [u >= p] / (1 - p)`` and u uniform on [0, 1);
the error goes back through the same mask and scale. At evaluation it is the identity.
"""
import numpy as np


def dropout_mask(rng, shape, p, dtype):
    """m = [u >= p] / (1-p), drawn from ``rng``: the kept units scaled by 1/(1-p).

    The product is taken in ``dtype`` directly: the same numbers as dividing in float64
    and casting (1/(1-p) is rounded to ``dtype`` either way), without the float64 array.
    """
    kept = rng.random(shape) >= p  # u uniform on [0, 1), float64 draws whatever the dtype
    return np.multiply(kept, np.dtype(dtype).type(1.0 / (1.0 - p)), dtype=dtype)


def dropout_forward(x, mask):
    """out = x ⊙ m."""
    return x * mask


def dropout_draw(rng, x, p):
    """A training pass: draw m for x and return (x ⊙ m, m)."""
    mask = dropout_mask(rng, x.shape, p, x.dtype)
    return dropout_forward(x, mask), mask


def dropout_backward(e, mask):
    """e_below = e ⊙ m."""
    return e * mask
