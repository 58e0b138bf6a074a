"""What the feedback is doing, measured per weighted layer (SPEC §1, §3).

Two numbers per layer, on a fixed probe batch:

- ``corr(W, R)``: Pearson correlation of the entries of W and R. Under ``urfb``
  R - W is constant, so as W grows away from its start the correlation climbs
  toward 1; under ``frfb`` it rises only if W comes to align with the fixed R.
- ``angle``: the angle, in degrees, between the error the layer sends down through
  its feedback ``Rᵀδ`` and the error back-propagation would send ``Wᵀδ``, for the
  same δ. 0° means the feedback carries exactly the gradient's direction; 90° means
  it carries nothing of it. It is measured for the first layer too, although
  nothing below it uses the error.
"""
import numpy as np

from ..losses import get_loss


def correlation(W, R):
    """corr(W, R) = cov(w, r) / (σ_w σ_r) over all entries (NaN when either is constant)."""
    w = W.ravel().astype(np.float64)
    r = R.ravel().astype(np.float64)
    w, r = w - w.mean(), r - r.mean()
    norm = np.linalg.norm(w) * np.linalg.norm(r)
    return float(w @ r / norm) if norm > 0 else float("nan")


def angle_degrees(a, b):
    """∠(a, b) = arccos(a·b / |a||b|) in degrees, the arrays seen as vectors (NaN if either is 0)."""
    a = a.ravel().astype(np.float64)
    b = b.ravel().astype(np.float64)
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    if norm == 0:
        return float("nan")
    return float(np.degrees(np.arccos(np.clip(a @ b / norm, -1.0, 1.0))))


def probe(net, x, y, loss="hinge", mu=1.0):
    """{layer name: {"corr_WR": ..., "angle_RW": ...}} on the batch (x, y); changes no weight.

    forward (no dropout) → e_L from the loss → backward (fills every δ, no update) →
    for each weighted layer, the error sent down through R and through W.
    """
    with np.errstate(all="ignore"):
        o = net.forward(x, train=False)  # (B, C)
        _, e = get_loss(loss)(o, y, mu=mu)
        net.backward(e.astype(o.dtype, copy=False))
    result = {}
    for layer in net.parameters():
        through_R = layer.send_down(layer.R)  # Rᵀ δ, the shape of the layer's input
        through_W = layer.send_down(layer.W)  # Wᵀ δ
        with np.errstate(all="ignore"):  # a diverging run gives NaN here, not a warning
            result[layer.name] = {
                "corr_WR": correlation(layer.W, layer.R),
                "angle_RW": angle_degrees(through_R, through_W),
            }
    return result
