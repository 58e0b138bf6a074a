"""The proved results of the linear case (theory/README.md §3) and their numerical checks.

Each function here checks one statement along trajectories of the ODE solver; the
proofs are in the README. Notation as in theory/flow.py: v_l = Q_l E P_{l-1}ᵀ.

(T1) urfb conservation law, l = 1..L-1:   C_l = W_l W_lᵀ − R_{l+1}ᵀ R_{l+1} is constant.
     Trace corollary from W_l(0) = 0:     ‖R_{l+1}‖² = ‖R_{l+1}(0)‖² + ‖W_l‖².
     Discrete step (hebbref SGD, same G for W and R):
                                          C_l ← C_l + η² (G_l G_lᵀ − G_{l+1}ᵀ G_{l+1}).
(T2) frfb bottom layer:                   W_1(t) = W_1(0) + Q_1 U(t),  U(t) = ∫₀ᵗ E ds,
     so at L = 2 from W0(0) = 0:          W0(t) = R(0)ᵀ U(t).
(T3) scalar chain / aligned modes, L = 2, W(0) = 0 (theory.instances.aligned_instance):
     each mode i follows, with U_i = u_iᵀ U v_i and r_i = ρ_i,
         frfb  w0 = r U,        w = r U²/2,          r constant
         urfb  w0 = r sinh U,   w = r (cosh U − 1),   r(t) = r cosh U
     and dU_i/dt = τ_i − r_i² s(U_i) with s(U) = U³/2 (frfb), sinh U (cosh U − 1) (urfb).
     Consequences: V_urfb(t) < V_frfb(t) for t > 0, every level reached sooner, a strictly
     higher asymptotic rate.
(T4) stationary points: v_1 = Q_1 E, so a stationary point with E ≠ 0 has rank Q_1 < m.
"""
import numpy as np
from scipy.integrate import quad, solve_ivp
from scipy.optimize import brentq

from hebbref.errors import ConfigError

from .flow import LinearFlow, feedback_products, forward_products


# --- (T1) the urfb conservation law ------------------------------------------------------------------
def conservation_matrices(Ws, Rs):
    """[C_1, ..., C_{L-1}] with C_l = W_l W_lᵀ − R_{l+1}ᵀ R_{l+1}, each (n_l, n_l)."""
    return [W @ W.T - R_next.T @ R_next for W, R_next in zip(Ws[:-1], Rs[1:])]


def conservation_drift(Ws_start, Rs_start, Ws, Rs):
    """max_l max|C_l − C_l(start)| / max(|W_l W_lᵀ|, |R_{l+1}ᵀ R_{l+1}|) at a later state."""
    worst = 0.0
    for C0, C, W, R_next in zip(conservation_matrices(Ws_start, Rs_start), conservation_matrices(Ws, Rs),
                                Ws[:-1], Rs[1:]):
        scale = max(float(np.max(np.abs(W @ W.T))), float(np.max(np.abs(R_next.T @ R_next))), 1e-300)
        worst = max(worst, float(np.max(np.abs(C - C0))) / scale)
    return worst


def trace_corollary_error(Ws_start, Rs_start, Ws, Rs):
    """max over layers with W_l(0) = 0 of |‖R_{l+1}‖² − ‖R_{l+1}(0)‖² − ‖W_l‖²| / ‖R_{l+1}‖²."""
    worst = 0.0
    for W0, R0_next, W, R_next in zip(Ws_start[:-1], Rs_start[1:], Ws[:-1], Rs[1:]):
        if np.any(W0 != 0):
            continue
        gap = np.sum(R_next**2) - np.sum(R0_next**2) - np.sum(W**2)
        worst = max(worst, abs(float(gap)) / float(np.sum(R_next**2)))
    return worst


def sgd_conservation_step_error(Ws, Rs, Gs, eta, Ws_after, Rs_after):
    """|C_l(after) − C_l(before) − η² (G_l G_lᵀ − G_{l+1}ᵀ G_{l+1})| / scale, max over l (T1, discrete)."""
    worst = 0.0
    for l, (C0, C1) in enumerate(zip(conservation_matrices(Ws, Rs), conservation_matrices(Ws_after, Rs_after))):
        predicted = eta**2 * (Gs[l] @ Gs[l].T - Gs[l + 1].T @ Gs[l + 1])
        scale = max(float(np.max(np.abs(Ws[l] @ Ws[l].T))), float(np.max(np.abs(Rs[l + 1].T @ Rs[l + 1]))),
                    1e-300)
        worst = max(worst, float(np.max(np.abs(C1 - C0 - predicted))) / scale)
    return worst


# --- integration with U(t) = ∫ E ----------------------------------------------------------------------
def integrate_with_U(T, W0s, R0s, rule, t_eval, rtol=1e-12, atol=1e-14, method="DOP853", norm_matched=False):
    """Integrate the flow together with U(t) = ∫₀ᵗ E ds, (m, d); returns (t, [(Ws, Rs, U), ...])."""
    t_eval = np.asarray(t_eval, dtype=float)
    flow = LinearFlow(np.asarray(T, dtype=float), [np.array(R, dtype=float) for R in R0s], rule)
    z0 = flow.pack([np.array(W, dtype=float) for W in W0s])
    n = z0.size
    T = flow.T

    def rhs(t, y):
        Ws, _ = flow.unpack(y[:n])
        E = T - forward_products(Ws)[-1]
        return np.concatenate([flow(t, y[:n]), E.ravel()])

    sol = solve_ivp(rhs, (0.0, float(t_eval[-1])), np.concatenate([z0, np.zeros(T.size)]), method=method,
                    rtol=rtol, atol=atol, t_eval=t_eval)
    if not sol.success:
        raise RuntimeError(f"integration failed: {sol.message}")
    states = []
    for y in sol.y.T:
        Ws, Rs = flow.unpack(y[:n])
        states.append(([W.copy() for W in Ws], [R.copy() for R in Rs], y[n:].reshape(T.shape).copy()))
    return sol.t, states


def frfb_invariant_error(T, W0s, R0s, t_eval, **options):
    """max_t max|W_1(t) − W_1(0) − Q_1 U(t)| / max(|W_1(t) − W_1(0)|, tiny) along frfb (T2)."""
    Q1 = feedback_products(R0s)[0]  # constant under frfb, (n_1, m)
    _, states = integrate_with_U(T, W0s, R0s, "frfb", t_eval, **options)
    worst = 0.0
    for Ws, _, U in states[1:]:
        moved = Ws[0] - W0s[0]
        worst = max(worst, float(np.max(np.abs(moved - Q1 @ U))) / max(float(np.max(np.abs(moved))), 1e-300))
    return worst


# --- (T3) the scalar chain and the aligned modes ------------------------------------------------------
def scalar_closed_form(rule, U, r0):
    """(w0, w, r) of the two-layer scalar chain from w0 = w = 0 with feedback r(0) = r0, as functions of U."""
    U = np.asarray(U, dtype=float)
    if rule == "frfb":
        return r0 * U, r0 * U**2 / 2, r0 * np.ones_like(U)
    if rule == "urfb":
        return r0 * np.sinh(U), r0 * (np.cosh(U) - 1.0), r0 * np.cosh(U)
    raise ConfigError(f"the closed forms are for frfb and urfb, got {rule!r}")


def scalar_product(rule, U):
    """s(U) = w w0 / r0²: U³/2 (frfb), sinh U (cosh U − 1) = 4 sinh³(U/2) cosh(U/2) (urfb)."""
    w0, w, _ = scalar_closed_form(rule, U, 1.0)
    return w0 * w


def scalar_product_derivative(rule, U):
    """s'(U): 3U²/2 (frfb), cosh U (cosh U − 1) + sinh² U (urfb)."""
    U = np.asarray(U, dtype=float)
    if rule == "frfb":
        return 1.5 * U**2
    return np.cosh(U) * (np.cosh(U) - 1.0) + np.sinh(U) ** 2


def scalar_fixed_point(rule, tau, r0):
    """U* > 0 with r0² s(U*) = τ: where U(t) goes as t → ∞."""
    upper = 1.0
    while r0**2 * scalar_product(rule, upper) < tau:
        upper *= 2.0
    return brentq(lambda U: r0**2 * scalar_product(rule, U) - tau, 0.0, upper, xtol=1e-15, rtol=1e-15)


def scalar_asymptotic_rate(rule, tau, r0):
    """lim −d ln V/dt = 2 r0² s'(U*) for one mode (V = ½ e², de/dt = −r0² s'(U) e)."""
    return 2.0 * r0**2 * float(scalar_product_derivative(rule, scalar_fixed_point(rule, tau, r0)))


def scalar_time_to_error(rule, tau, r0, e):
    """t at which the mode's error τ − r0² s(U) first equals e (0 < e < τ): ∫₀^{U(e)} dU / (τ − r0² s(U))."""
    U_e = brentq(lambda U: r0**2 * scalar_product(rule, U) - (tau - e), 0.0, scalar_fixed_point(rule, tau, r0),
                 xtol=1e-15, rtol=1e-15)
    return quad(lambda U: 1.0 / (tau - r0**2 * scalar_product(rule, U)), 0.0, U_e, epsabs=0, epsrel=1e-12,
                limit=200)[0]


def solve_mode(rule, tau, r0, t_eval, rtol=1e-12, atol=1e-14):
    """U(t) of one mode from its own scalar ODE dU/dt = τ − r0² s(U), U(0) = 0."""
    sol = solve_ivp(lambda t, U: tau - r0**2 * scalar_product(rule, U), (0.0, float(t_eval[-1])), [0.0],
                    method="DOP853", rtol=rtol, atol=atol, t_eval=t_eval)
    return sol.y[0]


def aligned_closed_form(inst, rule, U_modes):
    """(W0, W, R) predicted by T3 from each mode's U_i, for an AlignedInstance."""
    w0, w, r = scalar_closed_form(rule, U_modes, 1.0)
    rho = inst.rho_modes
    W0 = (inst.modes_z * (rho * w0)) @ inst.modes_v.T  # (n, d)
    W = (inst.modes_u * (rho * w)) @ inst.modes_z.T  # (m, n)
    R = (inst.modes_u * (rho * r)) @ inst.modes_z.T  # (m, n)
    return W0, W, R


def aligned_closed_form_errors(inst, rule, t_eval, **options):
    """Largest deviations along the matrix ODE from T3's closed forms (relative to the weights' size).

    weights:   W0, W (and R under urfb) against the closed forms in U_i = u_iᵀ U v_i
    reduction: U(t) against Σ_i U_i u_i v_iᵀ (nothing outside the modes) and each U_i
               against the mode's own scalar ODE, solved separately
    """
    t, states = integrate_with_U(inst.T, inst.W0s, inst.R0s, rule, t_eval, **options)
    mode_U = np.array([solve_mode(rule, tau, r0, t) for tau, r0 in zip(inst.tau, inst.rho_modes)])  # (k, times)
    errors = {"weights": 0.0, "reduction": 0.0}
    for i, (Ws, Rs, U) in enumerate(states):
        U_modes = np.einsum("mk,md,dk->k", inst.modes_u, U, inst.modes_v)
        W0, W, R = aligned_closed_form(inst, rule, U_modes)
        scale = max(1.0, float(np.max(np.abs(Ws[0]))), float(np.max(np.abs(Ws[1]))))
        gaps = [np.abs(Ws[0] - W0), np.abs(Ws[1] - W)] + ([np.abs(Rs[1] - R)] if rule == "urfb" else [])
        errors["weights"] = max(errors["weights"], max(float(np.max(g)) for g in gaps) / scale)
        outside = U - (inst.modes_u * U_modes) @ inst.modes_v.T
        errors["reduction"] = max(errors["reduction"], float(np.max(np.abs(outside))),
                                  float(np.max(np.abs(U_modes - mode_U[:, i]))) / max(1.0, float(np.max(np.abs(U_modes)))))
    return errors


def aligned_asymptotic_rate(inst, rule):
    """T3: lim −d ln V/dt = 2 min_i r_i² s'(U_i*) for an AlignedInstance."""
    return min(scalar_asymptotic_rate(rule, tau, r0) for tau, r0 in zip(inst.tau, inst.rho_modes))


# --- (T4) stationary points and the rank of the feedback path ---------------------------------------------
def numerical_rank(X, rtol=1e-6):
    """Number of singular values above rtol · the largest."""
    s = np.linalg.svd(X, compute_uv=False)
    return int(np.sum(s > rtol * s[0])) if s.size and s[0] > 0 else 0


# --- all the checks, for summary.json's "theorems" ----------------------------------------------------------
def _accurate_run(inst, rule, **options):
    from .flow import integrate

    return integrate(inst.T, inst.W0s, inst.R0s, rule, rtol=1e-12, atol=1e-14, method="DOP853", **options)


def _along(result, function):
    W_start, R_start = result.flow.unpack(result.z[:, 0])
    return max(function(W_start, R_start, *result.flow.unpack(z)) for z in result.z.T)


def theorem_checks(quick=False):
    """One entry per proved result with a numerical check: name, statement, max_check_error, n_checked."""
    from .instances import aligned_instance, random_instance
    from .sgd import linear_network, sgd_step, teacher_sample

    n_random, n_aligned = (3, 4) if quick else (12, 20)
    checks = []

    conservation, corollary = [], []
    for seed in range(n_random):
        inst = random_instance(3000 + seed, scales=(0.0, 0.3, 1.0))
        conservation.append(_along(_accurate_run(inst, "urfb", eps=1e-3, t_max=200), conservation_drift))
        zero = random_instance(3100 + seed, scales=(0.0,))
        corollary.append(_along(_accurate_run(zero, "urfb", eps=1e-3, t_max=200), trace_corollary_error))
    checks.append({"name": "T1 urfb conservation law",
                   "statement": "under the urfb flow, W_l W_l^T - R_{l+1}^T R_{l+1} is constant for l = 1..L-1",
                   "max_check_error": max(conservation), "n_checked": len(conservation),
                   "check": "max over stored solver points (DOP853, rtol 1e-12) of |C_l(t) - C_l(0)| / scale; "
                            "random instances, depths 2-4"})
    checks.append({"name": "T1 trace corollary",
                   "statement": "from W_l(0) = 0: |R_{l+1}|^2 = |R_{l+1}(0)|^2 + |W_l|^2 along urfb",
                   "max_check_error": max(corollary), "n_checked": len(corollary),
                   "check": "relative gap along whole trajectories from W(0) = 0"})

    step_errors = []
    for seed in range(n_random):
        inst = random_instance(3200 + seed, scales=(0.0, 0.3, 1.0))
        X, Y = teacher_sample(inst, 10 * inst.widths[0], seed)
        net = linear_network(inst, "urfb")
        for step in range(20):
            Ws, Rs = [p.W.copy() for p in net.parameters()], [p.R.copy() for p in net.parameters()]
            batch = slice(5 * step % len(X), 5 * step % len(X) + 5)
            sgd_step(net, X[batch], Y[batch], 0.05)
            step_errors.append(sgd_conservation_step_error(Ws, Rs, [p.G for p in net.parameters()], 0.05,
                                                           [p.W for p in net.parameters()],
                                                           [p.R for p in net.parameters()]))
    checks.append({"name": "T1 discrete step",
                   "statement": "one hebbref SGD step of urfb changes C_l by exactly eta^2 (G_l G_l^T - "
                                "G_{l+1}^T G_{l+1})",
                   "max_check_error": max(step_errors), "n_checked": len(step_errors),
                   "check": "hebbref Dense layers, batch 5, eta 0.05, relative to |W_l W_l^T|"})

    invariant = []
    for seed in range(n_random):
        inst = random_instance(3300 + seed, scales=(0.0, 0.3, 1.0))
        invariant.append(frfb_invariant_error(inst.T, inst.W0s, inst.R0s, np.linspace(0.0, 10.0, 21)))
    checks.append({"name": "T2 frfb bottom layer",
                   "statement": "under frfb, W_1(t) = W_1(0) + Q_1 U(t) with U = integral of E; at L = 2 from "
                                "W0(0) = 0, W0(t) = R(0)^T U(t)",
                   "max_check_error": max(invariant), "n_checked": len(invariant),
                   "check": "U integrated with the flow (DOP853, rtol 1e-12); relative to |W_1(t) - W_1(0)|"})

    closed, dominance_gap, times = [], [], []
    for seed in range(n_aligned):
        inst = aligned_instance(3400 + seed, widths=[1, 1, 1] if seed < n_aligned // 4 else None)
        for rule in ("frfb", "urfb"):
            errors = aligned_closed_form_errors(inst, rule, np.linspace(0.0, 12.0, 25))
            closed.append(max(errors.values()))
        t_end = 1.2 * _accurate_run(inst, "frfb", eps=1e-4, t_max=2000).t_eps
        grid = np.linspace(0.0, t_end, 201)
        V = {rule: np.array([run.flow.loss(z) for z in run.z.T])
             for rule, run in ((r, _accurate_run(inst, r, eps=0.5, t_max=t_end, stop_at_eps=False, t_eval=grid))
                               for r in ("frfb", "urfb"))}
        dominance_gap.append(max(0.0, float(np.max(V["urfb"][1:] - V["frfb"][1:])) / V["frfb"][0]))
        if inst.widths == [1, 1, 1]:
            tau, r0 = inst.tau[0], inst.rho_modes[0]
            for rule in ("frfb", "urfb"):
                solver = _accurate_run(inst, rule, eps=0.01, t_max=500).t_eps
                closed_form = scalar_time_to_error(rule, tau, r0, 0.1 * tau)
                times.append(abs(solver - closed_form) / closed_form)
    checks.append({"name": "T3 closed forms",
                   "statement": "L = 2, W(0) = 0, R(0) aligned with the teacher's left singular vectors: per mode, "
                                "frfb w0 = r U, w = r U^2/2; urfb w0 = r sinh U, w = r (cosh U - 1), r(t) = r cosh U",
                   "max_check_error": max(closed), "n_checked": len(closed),
                   "check": "matrix ODE (DOP853, rtol 1e-12) against the closed forms in U_i = u_i^T U v_i, and each "
                            "U_i against its own scalar ODE; relative to max(1, |W|)"})
    checks.append({"name": "T3 dominance",
                   "statement": "under T3's hypotheses V_urfb(t) < V_frfb(t) for every t > 0, so urfb reaches every "
                                "error level sooner, and its asymptotic rate is strictly higher",
                   "max_check_error": max(dominance_gap), "n_checked": len(dominance_gap),
                   "check": "max over 200 times of (V_urfb - V_frfb)^+ / V(0), up to 1.2 x frfb's time to 1e-4 V(0)"})
    checks.append({"name": "T3 time to an error level (scalar chain)",
                   "statement": "t(e) = integral_0^{U(e)} dU / (tau - r^2 s(U)), s = U^3/2 (frfb), "
                                "sinh U (cosh U - 1) (urfb)",
                   "max_check_error": max(times), "n_checked": len(times),
                   "check": "relative gap between the quadrature and the solver's event time at V = 0.01 V(0)"})
    return checks
