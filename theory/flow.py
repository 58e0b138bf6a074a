"""Population gradient flow of a deep linear network under bp, frfb and urfb.  # SPEC §8

Setting (see theory/README.md). A depth-L linear network maps x to ``M x`` with
``M = W_L ⋯ W_1``; layer l has ``W_l`` and its feedback twin ``R_l``, both
(n_l, n_{l-1}), n_0 = d inputs, n_L = m outputs. A teacher gives ``y = T x`` (T: (m, d)),
inputs are whitened (E[x xᵀ] = I), the loss is the squared error, so the population
loss and the error map are

    V = ½ ‖E‖²_F,     E = T - M.

Products used throughout (l = 1..L):

    P_l = W_l ⋯ W_1         (n_l, d),   P_0 = I     what reaches layer l from the input
    A_l = W_L ⋯ W_{l+1}     (m, n_l),   A_L = I     what layer l's output goes through
    Q_l = B_{l+1}ᵀ ⋯ B_Lᵀ   (n_l, m),   Q_L = I     how the output error reaches layer l

with B = W for bp and B = R for frfb and urfb. Continuous-time SGD on the population
(step η → 0, time t = η · steps) is

    dW_l/dt = Q_l E P_{l-1}ᵀ                    every rule
    dR_l/dt = 0            (bp, frfb)
    dR_l/dt = dW_l/dt      (urfb)

For L = 2 (W_2 = W, W_1 = W0) this is SPEC §8: dW/dt = E W0ᵀ, dW0/dt = Bᵀ E.
"""
from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import solve_ivp

from hebbref.errors import ConfigError
from hebbref.rules import get_rule


# --- the products and the error map -------------------------------------------------------
def forward_products(Ws):
    """[P_0, P_1, ..., P_L] with P_l = W_l ⋯ W_1 and P_0 = I (d, d)."""
    d = Ws[0].shape[1]
    P = [np.eye(d, dtype=Ws[0].dtype)]
    for W in Ws:
        P.append(W @ P[-1])  # (n_l, d)
    return P


def products_above(Ws):
    """[A_1, ..., A_L] with A_l = W_L ⋯ W_{l+1} and A_L = I (m, m)."""
    m = Ws[-1].shape[0]
    A = [np.eye(m, dtype=Ws[0].dtype)]
    for W in reversed(Ws[1:]):
        A.append(A[-1] @ W)  # (m, n_l)
    return A[::-1]


def feedback_products(Bs):
    """[Q_1, ..., Q_L] with Q_l = B_{l+1}ᵀ ⋯ B_Lᵀ and Q_L = I (m, m): the error's path down."""
    m = Bs[-1].shape[0]
    Q = [np.eye(m, dtype=Bs[0].dtype)]
    for B in reversed(Bs[1:]):
        Q.append(B.T @ Q[-1])  # (n_l, m)
    return Q[::-1]


def error_map(T, Ws):
    """E = T - W_L ⋯ W_1, (m, d).  # SPEC §8"""
    return T - forward_products(Ws)[-1]


def population_loss(T, Ws):
    """V = ½ ‖T - W_L ⋯ W_1‖²_F, the squared loss on whitened inputs.  # SPEC §8"""
    E = error_map(T, Ws)
    return 0.5 * float(np.sum(E * E))


def feedback_matrices(Ws, Rs, rule):
    """The B_l that carry the error down: W_l for bp, R_l for frfb and urfb (hebbref.rules)."""
    return list(Ws) if get_rule(rule).feedback_is_forward else list(Rs)


def weight_velocities(T, Ws, Bs):
    """dW_l/dt = Q_l E P_{l-1}ᵀ for l = 1..L, given the feedback matrices B_l.  # SPEC §8"""
    P = forward_products(Ws)
    E = T - P[-1]  # (m, d)
    Q = feedback_products(Bs)
    return [Q[l] @ E @ P[l].T for l in range(len(Ws))]  # (n_l, n_{l-1}); P[l] is P_{l-1} here


# --- the flow as an ODE on a flat state ------------------------------------------------------
@dataclass
class LinearFlow:
    """The gradient-flow ODE of one network under one rule, on a flat state vector.

    The state holds every W_l, and for ``urfb`` every R_l too (R_l moves with W_l);
    under ``frfb`` the R_l are constants of the problem and under ``bp`` they are unused.
    Keeping R in the urfb state lets the solver's trajectory be checked for the
    conservation of R - W instead of assuming it.
    """

    T: np.ndarray  # (m, d)
    R0s: list  # the feedback matrices at t = 0
    rule: str
    W_start: list = None  # W_l(0); needed only by the norm-matched control
    norm_matched: bool = False  # frfb whose feedback gains follow urfb's trace law (below)
    shapes: list = field(init=False)

    def __post_init__(self):
        get_rule(self.rule)
        if self.norm_matched and (self.rule != "frfb" or self.W_start is None):
            raise ConfigError("the norm-matched control is frfb with W_start given")
        self.shapes = [R.shape for R in self.R0s]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.moves_R = get_rule(self.rule).feedback_rate_factor != 0.0

    def pack(self, Ws, Rs=None):
        """State vector (W_1, ..., W_L[, R_1, ..., R_L])."""
        parts = [W.ravel() for W in Ws]
        if self.moves_R:
            parts += [R.ravel() for R in (self.R0s if Rs is None else Rs)]
        return np.concatenate(parts)

    def unpack(self, z):
        """(Ws, Rs) from a state vector; Rs are the fixed R0s unless the rule moves R."""
        arrays, start = [], 0
        n_blocks = 2 * len(self.shapes) if self.moves_R else len(self.shapes)
        for k in range(n_blocks):
            shape = self.shapes[k % len(self.shapes)]
            size = self.sizes[k % len(self.shapes)]
            arrays.append(z[start : start + size].reshape(shape))
            start += size
        L = len(self.shapes)
        Ws = arrays[:L]
        Rs = arrays[L:] if self.moves_R else self.R0s
        return Ws, Rs

    def norm_matched_feedback(self, Ws):
        """R_l(0) rescaled to the norm urfb's conservation law would give it at this state.

        Under urfb, ‖R_{l+1}‖² − ‖W_l‖² is constant (theory/theorems.py, T1), so the control
        uses B_{l+1} = R_{l+1}(0) · sqrt(max(0, ‖R_{l+1}(0)‖² + ‖W_l‖² − ‖W_l(0)‖²)) / ‖R_{l+1}(0)‖:
        urfb's feedback gain, frfb's fixed direction. (B_1 carries nothing and stays R_1(0).)
        """
        Bs = [self.R0s[0]]
        for R0, W, W_begin in zip(self.R0s[1:], Ws[:-1], self.W_start[:-1]):
            norm0 = float(np.sum(R0 * R0))
            gain2 = max(0.0, norm0 + float(np.sum(W * W)) - float(np.sum(W_begin * W_begin)))
            Bs.append(R0 * np.sqrt(gain2 / norm0) if norm0 > 0 else R0)
        return Bs

    def velocities(self, Ws, Rs):
        """(dW_l/dt, dR_l/dt) lists at a state."""
        Bs = self.norm_matched_feedback(Ws) if self.norm_matched else feedback_matrices(Ws, Rs, self.rule)
        dWs = weight_velocities(self.T, Ws, Bs)
        dRs = dWs if self.moves_R else [np.zeros_like(R) for R in Rs]
        return dWs, dRs

    def __call__(self, t, z):
        Ws, Rs = self.unpack(z)
        dWs, dRs = self.velocities(Ws, Rs)
        return self.pack(dWs, dRs)

    def loss(self, z):
        return population_loss(self.T, self.unpack(z)[0])


@dataclass
class FlowResult:
    """One integrated trajectory: ``sol`` is scipy's OdeSolution (or None)."""

    rule: str
    V0: float
    t_eps: float  # first time V(t) <= eps · V0; inf if not reached by t_max
    status: str  # "reached", "t_max", "diverged" or "failed"
    t_levels: dict  # level q -> first time V(t) <= q · V0 (inf if not before the run ended), for q in levels
    t: np.ndarray
    z: np.ndarray  # (n_state, n_times)
    sol: object
    flow: LinearFlow
    n_rhs: int


def integrate(T, W0s, R0s, rule, eps=0.01, t_max=500.0, rtol=1e-7, atol=1e-10, method="RK45",
              dense_output=False, stop_at_eps=True, t_eval=None, diverge_factor=1e4, levels=(),
              norm_matched=False):
    """Integrate the flow from (W0s, R0s) until V <= eps · V(0), t_max, or divergence.

    Returns a ``FlowResult``. ``stop_at_eps=False`` keeps going to ``t_max`` (the time of
    reaching eps is still recorded, from a non-terminal event). ``levels`` (each above
    eps) get their first-crossing times recorded too, in ``t_levels``. ``norm_matched``
    integrates the control of ``LinearFlow.norm_matched_feedback`` (rule must be frfb).
    """
    if not 0.0 < eps < 1.0:
        raise ConfigError(f"eps must lie in (0, 1), got {eps}")
    if len(W0s) != len(R0s) or any(W.shape != R.shape for W, R in zip(W0s, R0s)):
        raise ConfigError("W0s and R0s must be lists of matching shapes")
    flow = LinearFlow(np.asarray(T, dtype=float), [np.array(R, dtype=float) for R in R0s], rule,
                      W_start=[np.array(W, dtype=float) for W in W0s], norm_matched=norm_matched)
    z0 = flow.pack([np.array(W, dtype=float) for W in W0s])
    V0 = flow.loss(z0)
    if V0 == 0.0:
        raise ConfigError("the network already equals the teacher (V(0) = 0)")

    def reached(t, z):
        return flow.loss(z) - eps * V0

    reached.terminal = stop_at_eps
    reached.direction = -1

    def diverged(t, z):
        return flow.loss(z) - diverge_factor * V0

    diverged.terminal = True
    diverged.direction = 1

    def crossing(q):
        def event(t, z):
            return flow.loss(z) - q * V0

        event.terminal, event.direction = False, -1
        return event

    levels = [float(q) for q in levels if q != eps]
    with np.errstate(over="ignore", invalid="ignore"):  # a rejected trial step may overflow; divergence is reported
        sol = solve_ivp(flow, (0.0, t_max), z0, method=method, rtol=rtol, atol=atol,
                        events=(reached, diverged, *map(crossing, levels)), dense_output=dense_output,
                        t_eval=t_eval)
    t_eps = float(sol.t_events[0][0]) if len(sol.t_events[0]) else np.inf
    t_levels = {q: (float(times[0]) if len(times) else np.inf) for q, times in zip(levels, sol.t_events[2:])}
    t_levels[float(eps)] = t_eps
    if not sol.success:
        status = "failed"
    elif len(sol.t_events[1]):
        status = "diverged"
    elif np.isfinite(t_eps):
        status = "reached"
    else:
        status = "t_max"
    return FlowResult(rule, V0, t_eps, status, t_levels, sol.t, sol.y, sol.sol, flow, sol.nfev)
