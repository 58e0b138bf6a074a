"""The three learning rules, in one place (SPEC §1 and §3).

Every weighted layer holds a forward matrix ``W`` and a feedback matrix ``R`` of the
same shape. A rule answers two questions:

1. which matrix carries the error down:  ``e_{l-1} = Bᵀ δ_l`` with ``B = W`` (bp) or ``B = R``;
2. how ``R`` changes when ``W`` changes by ``-η G``:  ``R -= η_R G``.

| rule   | feedback B | η_R | what it is                                  |
|--------|-----------|-----|----------------------------------------------|
| bp     | W         |  0  | ordinary back-propagation                    |
| frfb   | R         |  0  | fixed random feedback (feedback alignment)   |
| urfb   | R         |  η  | updated random feedback: the paper's method  |

Both updates are the same local, Hebbian product ``G = Σ_batch δ_l x_{l-1}ᵀ``
(error-unit activity above times feed-forward activity below), so under ``urfb``
the difference ``R - W`` never changes.
"""
from dataclasses import dataclass

from .errors import choose


@dataclass(frozen=True)
class Rule:
    name: str
    feedback_is_forward: bool  # True: the error goes down through W itself (bp)
    feedback_rate_factor: float  # η_R = factor · η


RULES = {
    "bp": Rule("bp", feedback_is_forward=True, feedback_rate_factor=0.0),
    "frfb": Rule("frfb", feedback_is_forward=False, feedback_rate_factor=0.0),
    "urfb": Rule("urfb", feedback_is_forward=False, feedback_rate_factor=1.0),
}


def get_rule(name):
    """Look up a rule by name ('bp', 'frfb' or 'urfb')."""
    return choose("rule", name, RULES)


def feedback_matrix(W, R, rule):
    """B, the matrix whose transpose sends the error down: W for bp, R otherwise.  # SPEC §3"""
    return W if get_rule(rule).feedback_is_forward else R


def forward_update(W, G, eta):
    """W ← W - η G, in place.  # SPEC §3"""
    W -= eta * G


def feedback_update(R, G, eta, rule):
    """R ← R - η_R G, in place, with η_R = η for urfb and 0 for bp and frfb.  # SPEC §3

    Under ``urfb`` this is the very increment that ``forward_update`` gives W, which
    is why ``R - W`` is conserved. Under ``frfb`` R is not touched at all (bit for bit).
    """
    factor = get_rule(rule).feedback_rate_factor
    if factor:
        R -= (factor * eta) * G
