# %% [markdown]
# # 7. The linear theory: why updating R speeds learning
#
# The paper's claim 6 (SPEC §7): in linear networks, updating the feedback weights
# accelerates the convergence of the error. `theory/` reconstructs the argument (its
# README states what is proved and what is only measured). This tutorial walks through
# it with the smallest case, a two-layer linear network, calling `theory`'s functions
# and checking them against computations by hand and against hebbref's own layers.
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

from theory.flow import error_map, integrate, population_loss, weight_velocities
from theory.identities import (
    energy_rate_two_layer,
    energy_rate_two_layer_urfb,
    trajectory_identity_errors,
)
from theory.ensemble import SETTINGS, run_setting
from theory.instances import make_instance
from theory.sgd import linear_network, run_sgd, teacher_sample

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = Path(os.environ.get("HEBBREF_FIGURES", HERE / "figures"))
FIGURES.mkdir(parents=True, exist_ok=True)
FAST = os.environ.get("HEBBREF_FAST", "") not in ("", "0")  # fewer random instances

# %% [markdown]
# ## One problem instance
#
# `theory.instances.make_instance(seed, widths, rank, scale, rho)` draws a teacher T of
# the given rank and the starting weights: $W_l(0) = s\cdot$Glorot, $R_l(0) = \rho\cdot$Glorot
# (independent draws). Widths $[d, n_1, m]$: 8 inputs, 6 hidden units, 4 outputs. The
# layers are listed input first, so `W0s = [W_0, W]` in the notation above.

# %%
instance = make_instance(seed=3, widths=[8, 6, 4], rank=4, scale=0.3, rho=1.0)
T = instance.T  # (m=4, d=8)
W0, W = instance.W0s  # (6, 8), (4, 6)
R0_first, R = instance.R0s  # R is the top layer's feedback matrix, (4, 6)
print(instance.describe())

E = T - W @ W0  # (4, 8)
np.testing.assert_allclose(error_map(T, [W0, W]), E, rtol=1e-14)
np.testing.assert_allclose(population_loss(T, [W0, W]), 0.5 * np.sum(E**2), rtol=1e-14)

# %% [markdown]
# ## Gradient flow under the three rules
#
# SGD with a small step η on the population is, in time $t = \eta\cdot$steps, the flow
#
# $$\frac{dW}{dt} = E\,W_0^\top, \qquad \frac{dW_0}{dt} = B^\top E, \qquad
# B = W\ (\texttt{bp}),\quad B = R\ (\texttt{frfb},\ dR/dt = 0),\quad B = R\ (\texttt{urfb},\ dR/dt = dW/dt)$$
#
# `theory.flow.weight_velocities(T, Ws, Bs)` computes it for any depth:

# %%
velocity_W0, velocity_W = weight_velocities(T, [W0, W], [R0_first, R])  # feedback through R
np.testing.assert_allclose(velocity_W, E @ W0.T, rtol=1e-13)
np.testing.assert_allclose(velocity_W0, R.T @ E, rtol=1e-13)

# %% [markdown]
# ### The same velocity from hebbref's own layers
#
# The linear network is `"dense6 out"` in hebbref's grammar (no ramp);
# `theory.sgd.linear_network(instance, rule)` builds it and loads the instance's W and R.
# Feed it a batch whose inputs are *exactly* whitened ($X^\top X / B = I$), with targets
# $y = T x$ and the output error $e_L = (o - y)/B$ of the mean squared loss. Then every
# increment the library computes is exactly minus the flow's velocity: $G = -dW/dt$.

# %%
B_size, d = 32, 8
X = np.sqrt(B_size) * np.linalg.qr(np.random.default_rng(0).normal(size=(B_size, d)))[0]  # (B, d)
np.testing.assert_allclose(X.T @ X / B_size, np.eye(d), atol=1e-12)

net = linear_network(instance, "frfb")
print(net)
first, top = net.parameters()
np.testing.assert_array_equal(top.W, W)
np.testing.assert_array_equal(top.R, R)
o = net.forward(X, train=True)  # (B, 4)
net.backward((o - X @ T.T) / B_size)  # e_L of ½ mean ‖o - y‖²
np.testing.assert_allclose(-top.G, velocity_W, rtol=1e-10, atol=1e-12)
np.testing.assert_allclose(-first.G, velocity_W0, rtol=1e-10, atol=1e-12)
print("hebbref's increments on a whitened batch are minus the flow's velocities")

# %% [markdown]
# ## The dissipation of the error
#
# Along the flow, $dV/dt = -\langle E,\ \dot W W_0 + W \dot W_0 \rangle$, which gives
#
# $$\frac{dV}{dt} = -\|E W_0^\top\|^2 - \mathrm{tr}(E^\top W B^\top E)$$
#
# By hand, against `theory.identities.energy_rate_two_layer`, and against a central
# finite difference of V along the velocity:

# %%
def dV_dt_by_hand(B_top):
    return -np.sum((E @ W0.T) ** 2) - np.trace(E.T @ W @ B_top.T @ E)


step = 1e-6
finite_difference = (population_loss(T, [W0 + step * velocity_W0, W + step * velocity_W])
                     - population_loss(T, [W0 - step * velocity_W0, W - step * velocity_W])) / (2 * step)
np.testing.assert_allclose(energy_rate_two_layer(T, W0, W, R), dV_dt_by_hand(R), rtol=1e-12)
np.testing.assert_allclose(finite_difference, dV_dt_by_hand(R), rtol=1e-7)
print(f"dV/dt with feedback R: {dV_dt_by_hand(R):.4f};  with B = W (bp): {dV_dt_by_hand(W):.4f}")

# %% [markdown]
# With back-prop ($B = W$) the second term is $\|W^\top E\|^2 \ge 0$: V always decreases.
# With a random B it can have either sign.
#
# Under `urfb` R receives W's increments, so $R = W + D$ with $D = R(0) - W(0)$ fixed
# (tutorial 3). Put that in:
#
# $$\frac{dV}{dt}\Big|_{\texttt{urfb}} = -\|E W_0^\top\|^2 - \|W^\top E\|^2 - \mathrm{tr}(E^\top W D^\top E)$$
#
# Compared with *fixed* feedback D at the same state, `urfb` dissipates the extra,
# never-negative term $\|W^\top E\|^2$: back-prop's own term. This is proved (theory/README.md).

# %%
D = R - W  # pretend the network got here by urfb from R(0) - W(0) = D
urfb_rate = energy_rate_two_layer_urfb(T, W0, W, D)
fixed_rate = dV_dt_by_hand(D)  # fixed feedback D
extra = np.sum((W.T @ E) ** 2)  # ‖Wᵀ E‖²
np.testing.assert_allclose(urfb_rate, dV_dt_by_hand(W + D), rtol=1e-12)
np.testing.assert_allclose(fixed_rate - urfb_rate, extra, rtol=1e-10)
print(f"fixed D: dV/dt = {fixed_rate:.4f};  urfb: {urfb_rate:.4f};  extra dissipation ‖WᵀE‖² = {extra:.4f}")

# %% [markdown]
# The extra term is small while W is small and grows with W: from $W(0) \approx 0$ the two
# rules start alike and `urfb` pulls ahead as W grows. That the extra term makes
# `urfb` reach a given error *sooner* is not proved (the third term can differ between the
# two trajectories); it is measured below.
#
# ## One instance, integrated
#
# `theory.flow.integrate(T, W0s, R0s, rule, eps, t_max)` integrates the flow with
# `scipy.integrate.solve_ivp` and records $t_\varepsilon$, the first time $V \le \varepsilon V(0)$.
# All three rules start from the same W(0) (and frfb, urfb from the same R(0)).

# %%
small_start = make_instance(seed=3, widths=[8, 6, 4], rank=4, scale=0.1, rho=1.0)
t_grid = np.linspace(0.0, 8.0, 161)
runs = {rule: integrate(small_start.T, small_start.W0s, small_start.R0s, rule, eps=0.01, t_max=8.0,
                        stop_at_eps=False, t_eval=t_grid) for rule in ("bp", "frfb", "urfb")}
for rule, run in runs.items():
    print(f"{rule:5s} t_0.01 = {run.t_eps:.2f}  ({run.status})")
print(f"measured speed-up, t_eps(frfb) / t_eps(urfb) = {runs['frfb'].t_eps / runs['urfb'].t_eps:.2f}")

# %% [markdown]
# Along the integrated `urfb` trajectory, `theory.identities.trajectory_identity_errors`
# checks the identities: the closed form of dV/dt against a complex-step derivative,
# SPEC's two-layer formulas, and the conservation of R − W, all to solver/rounding precision.

# %%
errors = trajectory_identity_errors(runs["urfb"])
print({name: f"{value:.1e}" for name, value in errors.items()})
assert max(errors.values()) < 1e-6

# %%
def rates_along(run):
    """V, the total dissipation -dV/dt and the extra term ‖WᵀE‖², at each stored time."""
    values = []
    for z in run.z.T:
        (W0_t, W_t), Rs = run.flow.unpack(z)
        E_t = run.flow.T - W_t @ W0_t  # (m, d)
        B_t = Rs[1] if run.rule != "bp" else W_t
        values.append((0.5 * np.sum(E_t**2), -energy_rate_two_layer(run.flow.T, W0_t, W_t, B_t),
                       np.sum((W_t.T @ E_t) ** 2)))
    return np.array(values)  # (times, 3)


fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
for rule, run in runs.items():
    V_t = rates_along(run)[:, 0]
    left.semilogy(run.t, V_t / V_t[0], label=f"{rule}, $t_{{0.01}}$ = {run.t_eps:.2f}")
left.axhline(0.01, color="grey", ls=":", lw=0.8)
left.set_xlabel("time t = η · steps")
left.set_ylabel("V(t) / V(0)")
left.set_title("gradient flow, one instance")
left.legend()
urfb_rates = rates_along(runs["urfb"])
right.plot(runs["urfb"].t, urfb_rates[:, 1], label="urfb: total dissipation $-dV/dt$")
right.plot(runs["urfb"].t, urfb_rates[:, 2], label="of which $\\|W^T E\\|^2$ (the extra term)")
right.set_xlabel("time t")
right.set_title("where urfb's extra speed comes from")
right.legend(fontsize=8)
fig.tight_layout()
fig.savefig(FIGURES / "07_one_instance.png", dpi=100)
print("saved", FIGURES / "07_one_instance.png")

# %% [markdown]
# ## Discrete SGD with hebbref, on finite samples
#
# The flow is the limit of small steps on the population. `theory.sgd.run_sgd` trains
# the library's linear network the way hebbref trains (`net.forward`, $e_L = (o-y)/B$,
# `net.backward`, `net.update(η)`) on a finite sample $x \sim \mathcal N(0, I)$, $y = T x$
# (`theory.sgd.teacher_sample`), with mini-batches of 20 and step η = 0.02. Below, the
# population loss after each step (dots, at time $t = \eta\cdot$steps) over the flow (lines).

# %%
ETA_SGD, T_END = 0.02, 8.0
X_sample, Y_sample = teacher_sample(small_start, n_samples=2000, seed=0)
sgd_t_eps = {}
fig, ax = plt.subplots(figsize=(6, 3.6))
for color, (rule, run) in zip(("C0", "C1", "C2"), runs.items()):
    sgd = run_sgd(small_start, rule, X_sample, Y_sample, eta=ETA_SGD, batch=20,
                  max_steps=int(T_END / ETA_SGD), eps=1e-9, record_every=2)
    times, losses = ETA_SGD * sgd.steps, sgd.population_loss
    sgd_t_eps[rule] = times[np.argmax(losses <= 0.01 * losses[0])]  # first time V <= 0.01 V(0)
    V_flow = np.array([run.flow.loss(z) for z in run.z.T])
    ax.semilogy(run.t, V_flow / V_flow[0], color=color, label=f"{rule}, flow")
    ax.semilogy(times[::5], losses[::5] / losses[0], ".", color=color, ms=4, label=f"{rule}, hebbref SGD")
    print(f"{rule:5s} SGD: t_0.01 = {sgd_t_eps[rule]:.2f} (flow: {run.t_eps:.2f}); "
          f"V/V(0) = {losses[-1] / losses[0]:.1e} at t = {times[-1]:.0f}")
ax.set_xlabel("time t = η · steps")
ax.set_ylabel("V / V(0)")
ax.set_ylim(1e-6, 2)
ax.legend(fontsize=7, ncol=2)
fig.tight_layout()
fig.savefig(FIGURES / "07_sgd_vs_flow.png", dpi=100)
print("saved", FIGURES / "07_sgd_vs_flow.png")
assert sgd_t_eps["urfb"] < sgd_t_eps["frfb"]  # the same order as the flow

# %% [markdown]
# ## Many instances: the measured speed-up, and where it shrinks
#
# One instance proves nothing about the rate. `theory.ensemble.run_setting` draws random
# instances (depth 2 to 4, widths, teacher rank, initial scale s from 0 to Glorot),
# integrates the three rules from the same start, and summarises the times $t_{0.01}$.
# Besides the main setting, `theory` measures settings chosen to find where the
# advantage shrinks or fails: a large initial W, and feedback much larger or much
# smaller than W. (`HEBBREF_FAST` runs 20 instances of the main setting and 6 of each
# other; without it, `theory`'s full ensembles.)

# %%
ensembles = {}
for setting in SETTINGS:
    if FAST:
        setting = dataclasses.replace(setting, n_quick=20 if setting.name == "main" else 6)
    results, summary = run_setting(setting, quick=FAST)
    ensembles[setting.name] = results
    print(f"{setting.name:15s} {summary['n_instances']:4d} instances: urfb faster in "
          f"{summary['frac_urfb_faster']:.0%}, median t(frfb)/t(urfb) = "
          f"{summary['median_time_ratio_frfb_over_urfb']:.2f};  {setting.description}")


def time_ratios(results):
    """t_0.01(frfb) / t_0.01(urfb) where both reached 1%."""
    pairs = np.array([(r.t_eps["frfb"], r.t_eps["urfb"]) for r in results])
    reached = np.isfinite(pairs).all(axis=1)
    return pairs[reached, 0] / pairs[reached, 1]


main_ratios = time_ratios(ensembles["main"])
print(f"main: t(frfb)/t(urfb) from {main_ratios.min():.2f} to {main_ratios.max():.2f}")
assert np.mean(main_ratios > 1) > 0.5  # the measured direction, over many instances

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
for name, results in ensembles.items():
    ratios = time_ratios(results)
    left.hist(np.clip(np.log2(ratios), -3, 4), bins=np.linspace(-3, 4, 29), alpha=0.5,
              label=f"{name} ({len(ratios)})")  # ratios beyond 2^±3..4 drawn at the edges
left.axvline(0, color="k", lw=0.8)
left.set_xlabel("log2 of t(frfb) / t(urfb)   (> 0: urfb faster)")
left.set_ylabel("instances")
left.set_title("time to 1% of the initial error")
left.legend(fontsize=8)
fractions = np.linspace(0, 1, len(ensembles["main"][0].grid_t))
for rule, color in (("frfb", "C1"), ("urfb", "C2")):
    curves = np.array([r.weight_alignment[rule] for r in ensembles["main"]])
    right.plot(fractions, np.nanmedian(curves, axis=0), color=color, label=f"{rule}, median")
    right.fill_between(fractions, *np.nanpercentile(curves, [25, 75], axis=0), color=color, alpha=0.2)
right.set_xlabel("t / t(urfb)")
right.set_ylabel("cos(W, R), mean over layers")
right.set_title("main setting: W-R alignment over time")
right.legend()
fig.tight_layout()
fig.savefig(FIGURES / "07_speedup.png", dpi=100)
print("saved", FIGURES / "07_speedup.png")

# %% [markdown]
# The extra dissipation $\|W^\top E\|^2$ is exact; the speed-up it buys is measured. In
# the main setting `urfb` reaches the target sooner on most instances; the other
# settings show how the advantage changes when W starts large or when the feedback's
# scale does not match W's. `python -m theory` (or `hebbref theory`) runs the full
# study and writes the report with all the numbers.
