"""The exact identities of the linear case, as functions to check along trajectories.  # SPEC §8

All of them follow from ``dW_l/dt = Q_l E P_{l-1}ᵀ`` (theory/flow.py) by algebra; the
derivations are in theory/README.md §3. Write g_l = A_lᵀ E P_{l-1}ᵀ for back-prop's
velocity of layer l (minus the gradient of V) and v_l = Q_l E P_{l-1}ᵀ for the rule's.

(I1) energy:      dV/dt = -Σ_l ⟨g_l, v_l⟩
                        = -Σ_l tr(Eᵀ A_l Q_l E P_{l-1}ᵀ P_{l-1})
     for L = 2:   dV/dt = -‖E W0ᵀ‖² - tr(Eᵀ W Rᵀ E)                        (SPEC §8)
(I2) urfb:        R_l = W_l + D_l with D_l = R_l(0) - W_l(0) constant, so
                  Q_l = Π_{k=l+1..L} (W_k + D_k)ᵀ splits into the all-W product A_lᵀ,
                  the all-D product F_l = D_{l+1}ᵀ ⋯ D_Lᵀ and the mixed rest:
                  ⟨g_l, v_l⟩ = ‖g_l‖² + ⟨g_l, F_l E P_{l-1}ᵀ⟩ + mixed_l
     for L = 2:   dV/dt = -‖E W0ᵀ‖² - ‖Wᵀ E‖² - tr(Eᵀ W Dᵀ E)              (SPEC §8)
     The top hidden layer (l = L-1) has no mixed term; lower layers do (L ≥ 3).
(I3) conservation: d(R_l - W_l)/dt = 0 under urfb.
(I4) symmetric init: D = 0 makes the urfb field equal to the bp field, so the
     trajectories coincide.
"""
from itertools import product

import numpy as np

from .flow import feedback_matrices, feedback_products, forward_products, products_above


def _inner(a, b):
    return float(np.sum(a * b))


def dissipation_terms(T, Ws, Rs, rule):
    """⟨g_l, v_l⟩ = tr(Eᵀ A_l Q_l E P_{l-1}ᵀ P_{l-1}) for l = 1..L, so dV/dt = -Σ.  # (I1)"""
    P = forward_products(Ws)
    E = T - P[-1]  # (m, d)
    A = products_above(Ws)
    Q = feedback_products(feedback_matrices(Ws, Rs, rule))
    return [float(np.trace(E.T @ A[l] @ Q[l] @ E @ P[l].T @ P[l])) for l in range(len(Ws))]


def energy_rate(T, Ws, Rs, rule):
    """dV/dt from the closed form (I1): -Σ_l tr(Eᵀ A_l Q_l E P_{l-1}ᵀ P_{l-1})."""
    return -sum(dissipation_terms(T, Ws, Rs, rule))


def energy_rate_two_layer(T, W0, W, R):
    """dV/dt = -‖E W0ᵀ‖² - tr(Eᵀ W Rᵀ E) for ŷ = W W0 x, exactly as SPEC §8 writes it."""
    E = T - W @ W0  # (m, d)
    return -_inner(E @ W0.T, E @ W0.T) - float(np.trace(E.T @ W @ R.T @ E))


def energy_rate_two_layer_urfb(T, W0, W, D):
    """dV/dt = -‖E W0ᵀ‖² - ‖Wᵀ E‖² - tr(Eᵀ W Dᵀ E), D = R(0) - W(0).  # SPEC §8, (I2)"""
    E = T - W @ W0
    return -_inner(E @ W0.T, E @ W0.T) - _inner(W.T @ E, W.T @ E) - float(np.trace(E.T @ W @ D.T @ E))


def energy_rate_complex_step(T, Ws, dWs, h=1e-20):
    """dV/dt = d/ds V(W + s·dW/dt) at s = 0, by the complex step (no cancellation).

    V is a polynomial in the weights, so Im V(W + i h Ẇ) / h is its directional
    derivative up to O(h²) and to rounding: an independent check of (I1) that uses
    only V and the velocity field, not the algebra.
    """
    M = np.eye(Ws[0].shape[1], dtype=complex)
    for W, dW in zip(Ws, dWs):
        M = (W + 1j * h * dW) @ M  # (n_l, d)
    E = T - M
    return float(np.imag(0.5 * np.sum(E * E)) / h)  # E·E, not |E|²: holomorphic in s


def urfb_decomposition(T, Ws, Ds):
    """Split each layer's urfb dissipation ⟨g_l, v_l⟩ into (bp, fixed_D, mixed).  # (I2)

    bp      = ‖g_l‖² = ‖A_lᵀ E P_{l-1}ᵀ‖²         (≥ 0: what back-prop dissipates)
    fixed_D = ⟨g_l, F_l E P_{l-1}ᵀ⟩               (what fixed feedback D would dissipate)
    mixed   = the products with some W and some D factors (only for l ≤ L-2)
    Each is computed on its own, by expanding Π (W_k + D_k)ᵀ over which factor is D,
    so that bp + fixed_D + mixed = the l-th term of ``dissipation_terms(..., 'urfb')``
    is a check, not a definition.
    """
    L = len(Ws)
    P = forward_products(Ws)
    E = T - P[-1]
    A = products_above(Ws)
    out = []
    for l in range(L):
        g = A[l].T @ E @ P[l].T  # back-prop velocity of layer l+1, (n_l, n_{l-1})
        above = range(l + 1, L)  # 0-based indices of the layers above
        parts = {"bp": 0.0, "fixed_D": 0.0, "mixed": 0.0}
        for choice in product((False, True), repeat=len(above)):  # True: take D_k
            Qc = np.eye(Ws[-1].shape[0])
            for k, use_D in reversed(list(zip(above, choice))):
                Qc = (Ds[k] if use_D else Ws[k]).T @ Qc  # (n_k-1, m)
            value = _inner(g, Qc @ E @ P[l].T)
            key = "bp" if not any(choice) else ("fixed_D" if all(choice) else "mixed")
            parts[key] += value
        if not above:  # the top layer: Q_L = I, only the back-prop term
            parts = {"bp": _inner(g, g), "fixed_D": 0.0, "mixed": 0.0}
        out.append(parts)
    return out


def trajectory_identity_errors(result, n_points=50):
    """Largest deviations of (I1)-(I3) at ``n_points`` of an integrated trajectory.

    ``result`` is a theory.flow.FlowResult; its stored solver steps are used (every
    accepted step, or an even subsample of them). Returns a dict of relative errors:

    energy_closed_form   |(I1) - complex-step derivative of V along the field| / scale
    energy_two_layer     |SPEC §8's two-layer formula - (I1)| / scale     (L = 2 only)
    urfb_decomposition   |bp + fixed_D + mixed - (I1) term| / scale       (urfb only)
    conservation         max |R_l(t) - W_l(t) - D_l| / max(|D_l|, |W_l|)   (urfb only)
    """
    flow = result.flow
    T = flow.T
    idx = np.unique(np.linspace(0, result.z.shape[1] - 1, min(n_points, result.z.shape[1])).astype(int))
    W_start, R_start = flow.unpack(result.z[:, 0])
    Ds = [R - W for R, W in zip(R_start, W_start)]
    errors = {"energy_closed_form": 0.0, "energy_two_layer": 0.0, "urfb_decomposition": 0.0,
              "conservation": 0.0}
    for i in idx:
        Ws, Rs = flow.unpack(result.z[:, i])
        dWs, _ = flow.velocities(Ws, Rs)
        terms = dissipation_terms(T, Ws, Rs, flow.rule)
        scale = max(sum(abs(x) for x in terms), 1e-300)
        closed = -sum(terms)
        errors["energy_closed_form"] = max(errors["energy_closed_form"],
                                           abs(closed - energy_rate_complex_step(T, Ws, dWs)) / scale)
        if len(Ws) == 2:
            B = feedback_matrices(Ws, Rs, flow.rule)[1]
            spec = energy_rate_two_layer(T, Ws[0], Ws[1], B)
            errors["energy_two_layer"] = max(errors["energy_two_layer"], abs(spec - closed) / scale)
        if flow.rule == "urfb":
            parts = urfb_decomposition(T, Ws, Ds)
            gap = max(abs(p["bp"] + p["fixed_D"] + p["mixed"] - term) for p, term in zip(parts, terms))
            errors["urfb_decomposition"] = max(errors["urfb_decomposition"], gap / scale)
            if len(Ws) == 2:
                spec = energy_rate_two_layer_urfb(T, Ws[0], Ws[1], Ds[1])
                errors["energy_two_layer"] = max(errors["energy_two_layer"], abs(spec - closed) / scale)
            drift = max(float(np.max(np.abs(R - W - D))) / max(float(np.max(np.abs(D))),
                                                                float(np.max(np.abs(W))), 1e-300)
                        for R, W, D in zip(Rs, Ws, Ds))
            errors["conservation"] = max(errors["conservation"], drift)
    return errors
