# %% [markdown]
# # 6. The linear theory: what is proved about frfb and urfb, and what is measured
#
# The paper's claim 6 (SPEC §7): in linear networks, updating the feedback weights
# accelerates the convergence of the error. `theory/` settles what it can of this
# (theory/README.md labels every claim *proved*, *conjectured* or *measured*). This
# tutorial walks through it on two-layer linear networks:
#
# 1. the flow, and hebbref's own increments as that flow;
# 2. two exact facts: the extra dissipation of `urfb` at a state, and a conservation law;
# 3. **a theorem** (T3): from zero forward weights, with feedback aligned with the
#    teacher (the scalar chain is the simplest case), `urfb`'s error is below `frfb`'s at
#    every time, with closed forms we plot against the ODE solver;
# 4. what lies beyond the theorem: a conjecture, and measurements over random instances,
#    counting the runs that never arrive.
#
# The setting (SPEC §8): a linear network $\hat y = W\,W_0\,x$, a teacher $y = T x$,
# whitened inputs ($\mathbb E[x x^\top] = I$), squared loss. The population error map
# and loss are
#
# $$E = T - W W_0, \qquad V = \tfrac12 \|E\|_F^2$$

# %%
import dataclasses
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from hebbref.palette import rule_colour, rule_linestyle
from theory.ensemble import EPS_LEVELS, SETTINGS, run_setting
from theory.flow import error_map, integrate, population_loss, weight_velocities
from theory.identities import energy_rate_two_layer, energy_rate_two_layer_urfb
from theory.instances import aligned_instance, make_instance
from theory.sgd import linear_network, sgd_step, teacher_sample
from theory.theorems import (
    aligned_closed_form_errors,
    conservation_matrices,
    integrate_with_U,
    scalar_asymptotic_rate,
    scalar_closed_form,
    scalar_product,
    scalar_time_to_error,
    sgd_conservation_step_error,
)

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = Path(os.environ.get("HEBBREF_FIGURES", HERE / "figures"))
FIGURES.mkdir(parents=True, exist_ok=True)
FAST = os.environ.get("HEBBREF_FAST", "") not in ("", "0")  # fewer random instances

# %% [markdown]
# ## 1. One instance, and the flow
#
# `theory.instances.make_instance(seed, widths, rank, scale, rho)` draws a teacher T of
# the given rank and the starting weights: $W_l(0) = s\cdot$Glorot, $R_l(0) = \rho\cdot$Glorot
# (independent draws). Widths $[d, n, m]$: 8 inputs, 6 hidden units, 4 outputs; the
# layers are listed input first, so `W0s = [W_0, W]`.
#
# SGD with a small step η on the population is, in time $t = \eta\cdot$steps, the flow
#
# $$\frac{dW}{dt} = E\,W_0^\top, \qquad \frac{dW_0}{dt} = B^\top E, \qquad
# B = W\ (\texttt{bp}),\quad B = R\ (\texttt{frfb},\ dR/dt = 0),\quad B = R\ (\texttt{urfb},\ dR/dt = dW/dt)$$

# %%
instance = make_instance(seed=3, widths=[8, 6, 4], rank=4, scale=0.3, rho=1.0)
T = instance.T  # (m=4, d=8)
W0, W = instance.W0s  # (6, 8), (4, 6)
R0_first, R = instance.R0s  # R is the top layer's feedback matrix, (4, 6)
print(instance.describe())

E = T - W @ W0  # (4, 8)
np.testing.assert_allclose(error_map(T, [W0, W]), E, rtol=1e-14)
np.testing.assert_allclose(population_loss(T, [W0, W]), 0.5 * np.sum(E**2), rtol=1e-14)
velocity_W0, velocity_W = weight_velocities(T, [W0, W], [R0_first, R])  # feedback through R
np.testing.assert_allclose(velocity_W, E @ W0.T, rtol=1e-13)
np.testing.assert_allclose(velocity_W0, R.T @ E, rtol=1e-13)

# %% [markdown]
# ### The same velocity from hebbref's own layers
#
# The linear network is `"dense6 out"` in hebbref's grammar (no ramp);
# `theory.sgd.linear_network(instance, rule)` builds it and loads the instance's W and R.
# On a batch whose inputs are *exactly* whitened ($X^\top X / B = I$), with targets
# $y = T x$ and the output error $e_L = (o - y)/B$, every increment the library computes
# is exactly minus the flow's velocity: $G = -dW/dt$.

# %%
B_size, d = 32, 8
X = np.sqrt(B_size) * np.linalg.qr(np.random.default_rng(0).normal(size=(B_size, d)))[0]  # (B, d)
np.testing.assert_allclose(X.T @ X / B_size, np.eye(d), atol=1e-12)

net = linear_network(instance, "frfb")
first, top = net.parameters()
o = net.forward(X, train=True)  # (B, 4)
net.backward((o - X @ T.T) / B_size)  # e_L of ½ mean ‖o - y‖²
np.testing.assert_allclose(-top.G, velocity_W, rtol=1e-10, atol=1e-12)
np.testing.assert_allclose(-first.G, velocity_W0, rtol=1e-10, atol=1e-12)
print("hebbref's increments on a whitened batch are minus the flow's velocities")

# %% [markdown]
# ## 2. Two exact facts
#
# ### The dissipation of the error (proved, P3-P4)
#
# Along the flow, $dV/dt = -\langle E,\ \dot W W_0 + W \dot W_0 \rangle$, which gives
#
# $$\frac{dV}{dt} = -\|E W_0^\top\|^2 - \mathrm{tr}(E^\top W B^\top E).$$
#
# Under `urfb` R receives W's increments, so $R = W + D$ with $D = R(0) - W(0)$ fixed, and
#
# $$\frac{dV}{dt}\Big|_{\texttt{urfb}} = -\|E W_0^\top\|^2 - \|W^\top E\|^2 - \mathrm{tr}(E^\top W D^\top E):$$
#
# at any one state, `urfb` dissipates $\|W^\top E\|^2 \ge 0$ more than fixed feedback D
# would. This compares two *fields at one state*; it does not by itself say which rule
# reaches an error first, because the two rules visit different states.

# %%
def dV_dt_by_hand(B_top):
    return -np.sum((E @ W0.T) ** 2) - np.trace(E.T @ W @ B_top.T @ E)


step = 1e-6
finite_difference = (population_loss(T, [W0 + step * velocity_W0, W + step * velocity_W])
                     - population_loss(T, [W0 - step * velocity_W0, W - step * velocity_W])) / (2 * step)
np.testing.assert_allclose(energy_rate_two_layer(T, W0, W, R), dV_dt_by_hand(R), rtol=1e-12)
np.testing.assert_allclose(finite_difference, dV_dt_by_hand(R), rtol=1e-7)
D = R - W  # as if the network got here by urfb from R(0) - W(0) = D
extra = np.sum((W.T @ E) ** 2)  # ‖Wᵀ E‖²
np.testing.assert_allclose(energy_rate_two_layer_urfb(T, W0, W, D), dV_dt_by_hand(W + D), rtol=1e-12)
np.testing.assert_allclose(dV_dt_by_hand(D) - dV_dt_by_hand(W + D), extra, rtol=1e-10)
print(f"fixed D: dV/dt = {dV_dt_by_hand(D):.4f};  urfb: {dV_dt_by_hand(W + D):.4f};  ‖WᵀE‖² = {extra:.4f}")

# %% [markdown]
# ### urfb's conservation law (proved, T1)
#
# Under `urfb`, $C = W_0 W_0^\top - R^\top R$ is constant in time (at depth L, every
# $W_l W_l^\top - R_{l+1}^\top R_{l+1}$ is): both terms have derivative $S + S^\top$ with
# $S = R^\top E W_0^\top$. From $W_0(0) = 0$ its trace reads
# $\|R\|^2 = \|R(0)\|^2 + \|W_0\|^2$: the feedback *gain* grows as the layer below learns.
# Under `frfb` R is fixed and C moves. We integrate both rules from $W(0) = 0$ with the
# accurate DOP853 solver and watch C.

# %%
zero_start = make_instance(seed=3, widths=[8, 6, 4], rank=4, scale=0.0, rho=1.0)
t_law = np.linspace(0.0, 6.0, 61)
drift = {}
for rule in ("frfb", "urfb"):
    _, states = integrate_with_U(zero_start.T, zero_start.W0s, zero_start.R0s, rule, t_law)
    C = [conservation_matrices(Ws, Rs)[0] for Ws, Rs, _ in states]
    drift[rule] = max(np.abs(c - C[0]).max() for c in C) / np.abs(C[0]).max()
    if rule == "urfb":
        gain = np.array([np.sum(Rs[1] ** 2) for _, Rs, _ in states])
        below = np.array([np.sum(Ws[0] ** 2) for Ws, _, _ in states])
print({rule: f"{value:.1e}" for rule, value in drift.items()}, "(largest change of C, relative)")
assert drift["urfb"] < 1e-10 < 0.1 < drift["frfb"]
np.testing.assert_allclose(gain, gain[0] + below, rtol=1e-10)
print(f"urfb: ‖R‖² grew from {gain[0]:.3f} to {gain[-1]:.3f} = ‖R(0)‖² + ‖W0‖²")

# %% [markdown]
# hebbref's discrete step gives W and R the same increment $-\eta G$; then the first-order
# terms still cancel for any batch, and one step moves C by exactly
# $\eta^2 (G_0 G_0^\top - G^\top G)$ (T1, discrete step): the law holds in the flow, and the
# SGD step drifts from it by a term of order $\eta^2$ per step. With hebbref's layers:

# %%
X_sample, Y_sample = teacher_sample(zero_start, n_samples=200, seed=0)
net = linear_network(zero_start, "urfb")
step_errors, C_start = [], conservation_matrices([p.W for p in net.parameters()], [p.R for p in net.parameters()])[0]
for k in range(100):
    Ws, Rs = [p.W.copy() for p in net.parameters()], [p.R.copy() for p in net.parameters()]
    sgd_step(net, X_sample[2 * k % 200: 2 * k % 200 + 2], Y_sample[2 * k % 200: 2 * k % 200 + 2], 0.05)
    step_errors.append(sgd_conservation_step_error(Ws, Rs, [p.G for p in net.parameters()], 0.05,
                                                   [p.W for p in net.parameters()], [p.R for p in net.parameters()]))
C_end = conservation_matrices([p.W for p in net.parameters()], [p.R for p in net.parameters()])[0]
print(f"100 SGD steps (eta 0.05, batch 2): each step matches the eta² formula to {max(step_errors):.1e}; "
      f"C drifted by {np.abs(C_end - C_start).max():.2e} in all")
assert max(step_errors) < 1e-12 and np.abs(C_end - C_start).max() > 0

# %% [markdown]
# ## 3. The theorem (T3): zero forward weights, feedback aligned with the teacher
#
# **Hypotheses.** Two layers; $W_0(0) = 0$, $W(0) = 0$; the teacher
# $T = \sum_i \tau_i u_i v_i^\top$ ($\tau_i > 0$) and the feedback
# $R(0) = \sum_i \rho_i u_i z_i^\top$ ($\rho_i \ne 0$) share the left singular vectors $u_i$;
# $\{v_i\}$, $\{z_i\}$ orthonormal. The scalar chain ($d = n = m = 1$, $\hat y = w\,w_0\,x$,
# feedback weight $r_0$) is the simplest case.
#
# **Closed forms.** The flow keeps each mode separate. With $U(t) = \int_0^t E\,ds$ (one
# number per mode), for one mode with feedback $r_0$:
#
# | | $w_0$ | $w$ | $r$ |
# |---|---|---|---|
# | `frfb` | $r_0 U$ | $r_0 U^2/2$ | $r_0$ |
# | `urfb` | $r_0 \sinh U$ | $r_0(\cosh U - 1)$ | $r_0 \cosh U$ |
#
# and $\dot U = \tau - r_0^2 s(U)$ with $s = U^3/2$ (frfb) or $s = \sinh U(\cosh U - 1)$ (urfb).
# (Differentiate: e.g. $\frac{d}{dt} r_0\sinh U = r_0\cosh U\,\dot U = r\,E$, which is
# $\dot w_0 = r E$; and $\frac{d}{dt} r_0(\cosh U - 1) = w_0 E = \dot w$.)
#
# **Consequences (proved in theory/README.md, T3).** At equal error, urfb's error shrinks
# faster: writing $s = \varphi^3$, frfb has $\varphi' = 2^{-1/3}$ and urfb has
# $\varphi' > 2^{-1/3}$ for $U > 0$ (because $s = 4\sinh^3(U/2)\cosh(U/2)$). From this:
# $V_{urfb}(t) < V_{frfb}(t)$ for every $t > 0$, every error level is reached sooner, and
# the asymptotic rate $-d\ln V/dt$ is strictly higher.
#
# Below: a scalar chain integrated by the ODE solver (lines) and the closed forms evaluated
# at the solver's U (dots).

# %%
chain = aligned_instance(0, widths=[1, 1, 1])
tau, r0 = chain.tau[0], chain.rho_modes[0]
t_end = 1.5 * integrate(chain.T, chain.W0s, chain.R0s, "frfb", eps=1e-3, t_max=100).t_eps
t_chain = np.linspace(0.0, t_end, 121)
V_chain, worst_gap = {}, 0.0
fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 3.6))
for rule in ("frfb", "urfb"):
    _, states = integrate_with_U(chain.T, chain.W0s, chain.R0s, rule, t_chain)
    w0 = np.array([Ws[0][0, 0] for Ws, _, _ in states])
    w = np.array([Ws[1][0, 0] for Ws, _, _ in states])
    U = np.array([u[0, 0] for _, _, u in states])
    closed_w0, closed_w, _ = scalar_closed_form(rule, U, r0)
    worst_gap = max(worst_gap, np.abs(w0 - closed_w0).max(), np.abs(w - closed_w).max())
    V_chain[rule] = 0.5 * (tau - w * w0) ** 2
    colour = rule_colour(rule)
    left.plot(t_chain, w0, color=colour, ls="-", label=f"{rule}: $w_0$")
    left.plot(t_chain, w, color=colour, ls="--", label=f"{rule}: $w$")
    left.plot(t_chain[::8], closed_w0[::8], "o", color=colour, ms=3)
    left.plot(t_chain[::8], closed_w[::8], "s", color=colour, ms=3)
    middle.semilogy(t_chain, V_chain[rule] / V_chain[rule][0], color=colour, ls=rule_linestyle(rule), label=rule)
print(f"scalar chain tau = {tau:.3f}, r0 = {r0:.3f}: closed forms match the solver to {worst_gap:.1e}")
assert worst_gap < 1e-8
assert np.all(V_chain["urfb"][1:] < V_chain["frfb"][1:])  # dominance at every time shown
left.set_title("weights: ODE (lines), closed forms (dots)")
left.set_xlabel("t")
left.legend(fontsize=7)
middle.set_title("V(t) / V(0)")
middle.set_xlabel("t")
middle.legend()
U_axis = np.linspace(0.0, 2.5, 200)
right.plot(U_axis, np.cbrt(scalar_product("frfb", U_axis)), color=rule_colour("frfb"), ls="--", label="frfb: $s^{1/3}$")
right.plot(U_axis, np.cbrt(scalar_product("urfb", U_axis)), color=rule_colour("urfb"), label="urfb: $s^{1/3}$")
right.set_xlabel("U")
right.set_title("key inequality: $s^{1/3}$ is steeper for urfb", fontsize=10)
right.legend()
fig.tight_layout()
fig.savefig(FIGURES / "06_theorem_scalar_chain.png", dpi=100)
print("saved", FIGURES / "06_theorem_scalar_chain.png")

# %% [markdown]
# The times to every error level, from the closed form
# $t(e) = \int_0^{U(e)} dU / (\tau - r_0^2 s(U))$, against the solver, and the two
# asymptotic rates $2 r_0^2 s'(U^*)$ (with $r_0^2 s(U^*) = \tau$):

# %%
for eps in EPS_LEVELS:
    closed = {rule: scalar_time_to_error(rule, tau, r0, np.sqrt(eps) * tau) for rule in ("frfb", "urfb")}
    solver = {rule: integrate(chain.T, chain.W0s, chain.R0s, rule, eps=eps, t_max=100, rtol=1e-12, atol=1e-14,
                              method="DOP853").t_eps for rule in ("frfb", "urfb")}
    print(f"V = {eps:g} V(0): frfb t = {closed['frfb']:.4f} (solver {solver['frfb']:.4f}), "
          f"urfb t = {closed['urfb']:.4f} (solver {solver['urfb']:.4f})")
    assert closed["urfb"] < closed["frfb"]
    for rule in closed:
        assert abs(closed[rule] - solver[rule]) < 1e-8 * closed[rule]
rates = {rule: scalar_asymptotic_rate(rule, tau, r0) for rule in ("frfb", "urfb")}
print(f"asymptotic rates -dlnV/dt: frfb {rates['frfb']:.3f}, urfb {rates['urfb']:.3f}")
assert rates["urfb"] > rates["frfb"]

# %% [markdown]
# The same holds mode by mode in a wider aligned network: `theory.instances.aligned_instance`
# draws one (random widths and number of modes), and `aligned_closed_form_errors` compares
# the whole matrices $W_0, W, R$ along the solver with the closed forms, and each mode's U
# with its own scalar ODE.

# %%
wide = aligned_instance(5, widths=[6, 5, 4])
for rule in ("frfb", "urfb"):
    errors = aligned_closed_form_errors(wide, rule, np.linspace(0.0, 10.0, 21))
    print(f"{wide.describe()} {rule}: largest deviation {max(errors.values()):.1e}")
    assert max(errors.values()) < 1e-8

# %% [markdown]
# ## 4. Beyond the theorem
#
# ### A conjecture (C1): zero forward weights, any feedback
#
# Drop the alignment: two layers, $W(0) = 0$, a random Glorot $R(0)$. We conjecture that
# $V_{urfb}(t) \le V_{frfb}(t)$ at every time still, but have no proof. `theory`'s setting
# `conjecture_zero_forward` tests it on random instances; here a few of them (the full
# report runs 200 and lists any counterexample).

# %%
conjecture = next(s for s in SETTINGS if s.name == "conjecture_zero_forward")
conjecture = dataclasses.replace(conjecture, n_quick=12 if FAST else 60, norm_matched=False)
_, conjecture_summary = run_setting(conjecture, quick=True)
n_dominated = round(conjecture_summary["frac_all_time_dominance"] * conjecture_summary["n_instances"])
print(f"{conjecture_summary['n_instances']} instances: V_urfb <= V_frfb at every time in {n_dominated}; "
      f"smallest margin {conjecture_summary['min_dominance_margin']['margin']:.2e}")
assert conjecture_summary["n_instances"] >= 12

# %% [markdown]
# ### Measured: general random instances
#
# With depth 2 to 4, random teacher rank and initial scale $s$ of W(0) from 0 to Glorot
# (`theory`'s setting `main`), nothing is proved. We measure, for each instance, the time
# $t_\varepsilon$ at which each rule first reaches $\varepsilon V(0)$, at three levels ε,
# and whether $V_{urfb} \le V_{frfb}$ at every time. A run that never reaches ε (by
# $t = 500$) counts as $t_\varepsilon = \infty$; the histogram below says how many.

# %%
main = next(s for s in SETTINGS if s.name == "main")
main = dataclasses.replace(main, n_quick=16 if FAST else 80, norm_matched=False)
main_results, main_summary = run_setting(main, quick=True)
n_main = main_summary["n_instances"]
for eps in EPS_LEVELS:
    never = main_summary["n_never_reached_by_eps"][str(eps)]
    print(f"eps = {eps:g}: urfb first in {main_summary['frac_urfb_faster_by_eps'][str(eps)]:.0%} of {n_main}; "
          f"never arrived: frfb {never['frfb']}, urfb {never['urfb']}")
print(f"V_urfb <= V_frfb at every time: {main_summary['frac_all_time_dominance']:.0%} of {n_main}")
assert 0.0 <= main_summary["frac_all_time_dominance"] <= 1.0

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
t_frfb = np.array([r.t_eps["frfb"] for r in main_results])
t_urfb = np.array([r.t_eps["urfb"] for r in main_results])
both = np.isfinite(t_frfb) & np.isfinite(t_urfb)
only_urfb = int(np.sum(~np.isfinite(t_frfb) & np.isfinite(t_urfb)))
only_frfb = int(np.sum(np.isfinite(t_frfb) & ~np.isfinite(t_urfb)))
neither = int(np.sum(~np.isfinite(t_frfb) & ~np.isfinite(t_urfb)))
assert both.sum() + only_urfb + only_frfb + neither == n_main
left.hist(np.log2(t_frfb[both] / t_urfb[both]), bins=20, color=rule_colour("urfb"), alpha=0.8)
left.axvline(0, color="k", lw=0.8)
left.set_xlabel("log2 of t(frfb) / t(urfb) at eps = 0.01   (> 0: urfb first)")
left.set_ylabel("instances")
left.set_title(f"{both.sum()} of {n_main} instances; not shown: only urfb arrived {only_urfb},\n"
               f"only frfb arrived {only_frfb}, neither {neither}", fontsize=9)
fractions = [main_summary["frac_urfb_faster_by_eps"][str(eps)] for eps in EPS_LEVELS]
right.bar([f"eps = {eps:g}" for eps in EPS_LEVELS], fractions, color=rule_colour("urfb"))
right.axhline(main_summary["frac_all_time_dominance"], color="k", ls=":", label="V_urfb <= V_frfb at all times")
right.set_ylim(0, 1.05)
right.set_ylabel("fraction of instances")
right.set_title("urfb reaches eps V(0) first (measured)")
right.legend(fontsize=8, loc="lower right")
fig.tight_layout()
fig.savefig(FIGURES / "06_measured.png", dpi=100)
print("saved", FIGURES / "06_measured.png")

# %% [markdown]
# What these numbers are: measurements on random instances, not a theorem. The full
# report (`hebbref theory`) runs more instances and more settings (large initial W,
# feedback much larger or smaller than W, hebbref's SGD), the norm-matched control that
# gives `frfb` urfb's feedback gain but not its alignment, and the stalled `urfb` runs at
# the rank-loss points of T4; theory/README.md §4 has the numbers and the commands.
