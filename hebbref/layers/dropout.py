"""Dropout (SPEC §2): p is the probability of **dropping** a unit.

In training, ``out = x · m`` with ``m = [u >= p] / (1 - p)`` and u uniform on [0, 1);
the error goes back through the same mask and scale. At evaluation it is the identity.
"""


def dropout_mask(rng, shape, p, dtype):
    """m = [u >= p] / (1-p), drawn from ``rng``: the kept units scaled by 1/(1-p)."""
    return ((rng.random(shape) >= p) / (1.0 - p)).astype(dtype)


def dropout_forward(x, mask):
    """out = x ⊙ m."""
    return x * mask


def dropout_backward(e, mask):
    """e_below = e ⊙ m."""
    return e * mask
