"""What the feedback is doing, measured per weighted layer (SPEC §1, §3).

Three numbers per layer, on a fixed probe batch, B being the matrix the network's
rule sends the error down through (``rule.probe_feedback``: W for bp, R for frfb and
urfb, s·sign(W) for usf, ...):

- ``corr(W, R)``: Pearson correlation of the entries of W and R. Under ``urfb``
  R - W is constant, so as W grows away from its start the correlation climbs
  toward 1; under ``frfb`` it rises only if W comes to align with the fixed R.
- ``angle``: the angle, in degrees, between the error the layer sends down through
  its feedback ``Rᵀδ`` and the error back-propagation would send ``Wᵀδ``, for the
  same δ. 0° means the feedback carries exactly the gradient's direction; 90° means
  it carries nothing of it. It is measured for the first layer too, although
  nothing below it uses the error. The key keeps its name ``angle_RW`` for every
  rule; the error compared is always ``Bᵀδ``.
- ``norm_ratio``: ‖B‖_F / ‖W‖_F, the scale of the feedback against the forward weights.

Direct feedback (``dfa``) sends nothing down a layer. For it, at every layer the
angle is that of the layer's δ under dfa, ``(F e_L) ⊙ σ'(h)``, against the δ that
back-propagation gives at the same state, and ``norm_ratio`` the ratio of their norms
(dfa's over bp's); at the output both are ``e_L`` (angle 0, ratio 1).
"""
import numpy as np

from ..losses import get_loss
from ..rules import BackPropagation


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


def norm_ratio(a, b):
    """‖a‖_F / ‖b‖_F (NaN when b is 0)."""
    denominator = np.linalg.norm(b.ravel().astype(np.float64))
    return float(np.linalg.norm(a.ravel().astype(np.float64)) / denominator) if denominator > 0 else float("nan")


def probe(net, x, y, loss="hinge", mu=1.0):
    """{layer name: {"corr_WR", "angle_RW", "norm_ratio"}} on the batch (x, y); changes no weight.

    forward (no dropout) → e_L from the loss → backward (fills every δ, no update) →
    for each weighted layer, the error sent down through B and through W.
    """
    rule_state = net.rule.state()  # brsf draws its B in the backward pass: training's stream stays put
    with np.errstate(all="ignore"):
        o = net.forward(x, train=False)  # (B, C)
        _, e = get_loss(loss)(o, y, mu=mu)
        e = e.astype(o.dtype, copy=False)
        if net.rule.direct:
            return _probe_direct(net, e)
        net.backward(e)
    net.rule.load_state(rule_state)
    result = {}
    for layer in net.parameters():
        B = net.rule.probe_feedback(layer)
        through_B = layer.send_down(B)  # Bᵀ δ, the shape of the layer's input
        through_W = layer.send_down(layer.W)  # Wᵀ δ
        with np.errstate(all="ignore"):  # a diverging run gives NaN here, not a warning
            result[layer.name] = {
                "corr_WR": correlation(layer.W, layer.R),
                "angle_RW": angle_degrees(through_B, through_W),
                "norm_ratio": norm_ratio(B, layer.W),
            }
    return result


def _probe_direct(net, e):
    """dfa: each layer's δ under the rule against back-prop's δ at the same state."""
    with np.errstate(all="ignore"):
        net.backward(e)
        direct = {layer.name: layer.delta for layer in net.parameters()}
        net.backward(e, rule=BackPropagation())  # the same state, back-prop's errors
    result = {}
    for layer in net.parameters():
        with np.errstate(all="ignore"):
            result[layer.name] = {
                "corr_WR": correlation(layer.W, layer.R),
                "angle_RW": angle_degrees(direct[layer.name], layer.delta),
                "norm_ratio": norm_ratio(direct[layer.name], layer.delta),
            }
    return result
