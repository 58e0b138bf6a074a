"""Losses on the linear output ``o = h_L`` (SPEC §4).

Each loss function takes the outputs ``o`` (B, C) and integer labels ``y`` (B,) and
returns ``(loss, e_L)``: the batch **mean** of the per-example losses and its
gradient ``e_L = ∂loss/∂o`` (B, C), which therefore carries the factor 1/B.

Locality. For the Hebbian hinge cost the error at output unit c depends only on
``o_c`` and on whether c is the label, so the last-layer update
``ΔW_{cj} = -η e_c x_j`` is a product of two activities at the ends of the synapse.
For softmax cross-entropy ``e_c = p_c - [c = y]`` with ``p_c = exp(o_c) / Σ_k exp(o_k)``:
unit c needs every other output to form its error, so the update is not local.
"""
import numpy as np

from .errors import choose


def hinge_loss(o, y, mu=1.0):
    """The Hebbian hinge cost.  # SPEC §4

        ℓ = max(0, 1 - o_y) + (μ/(C-1)) Σ_{c≠y} max(0, 1 + o_c)
        ∂ℓ/∂o_y = -1 if o_y < 1 else 0;   ∂ℓ/∂o_c = μ/(C-1) if o_c > -1 else 0  (c ≠ y)
    """
    B, C = o.shape
    is_label = np.zeros_like(o, dtype=bool)  # (B, C)
    is_label[np.arange(B), y] = True
    off = mu / (C - 1)
    per_unit = np.where(is_label, np.maximum(0.0, 1.0 - o), off * np.maximum(0.0, 1.0 + o))
    e = np.where(is_label, -1.0 * (o < 1.0), off * (o > -1.0)).astype(o.dtype)  # (B, C)
    return float(per_unit.sum() / B), e / B


def softmax_cross_entropy(o, y, mu=None):
    """ℓ = -log p_y with p = softmax(o);  ∂ℓ/∂o = p - onehot(y).  # SPEC §4"""
    B = o.shape[0]
    shifted = o - o.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (B, C)
    p = np.exp(log_p)
    p[np.arange(B), y] -= 1.0
    return float(-log_p[np.arange(B), y].mean()), (p / B).astype(o.dtype, copy=False)


def squared_error(o, y, mu=None):
    """ℓ = ½ Σ_c (o_c - t_c)², t_c = +1 for c = y and -1 otherwise;  ∂ℓ/∂o = o - t.  # SPEC §4"""
    B = o.shape[0]
    t = -np.ones_like(o)
    t[np.arange(B), y] = 1.0
    diff = o - t
    return float(0.5 * (diff**2).sum() / B), diff / B


LOSSES = {
    "hinge": hinge_loss,
    "softmax": softmax_cross_entropy,
    "squared": squared_error,
}


def get_loss(name):
    """Look up a loss function by name ('hinge', 'softmax' or 'squared')."""
    return choose("loss", name, LOSSES)
