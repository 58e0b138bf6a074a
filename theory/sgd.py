"""Discrete SGD on a finite sample, through hebbref's own Dense layers.  # SPEC §3, §8

The flow of theory/flow.py is the η → 0, infinite-sample limit. Here the same
instance (teacher T, W(0), R(0)) is trained the way the library trains: a network
``hebbref.build_network("dense<n_1> ... dense<n_{L-1}> out", ...)`` with no ``ramp``
token, i.e. identity activations, so ``o = W_L ⋯ W_1 x``; its W and R are set to the
instance's; each step is

    o = net.forward(x, train=True)           # (B, m)
    e = (o - y) / B                          # ∂/∂o of ½ mean ‖o - y‖², squared loss
    net.backward(e)                          # δ, G = Σ δ xᵀ and Bᵀδ in every Dense layer
    net.update(η)                            # W -= η G;  R -= η_R G  (hebbref.rules)

so the theory exercises the library's real update code. With whitened data
(Xᵀ X / B = I, full batch) one such step is exactly an Euler step of the flow with
dt = η (tests/test_theory.py checks this); time t in the flow is η · steps here.
"""
from dataclasses import dataclass

import numpy as np

import hebbref
from hebbref.errors import ConfigError

from .flow import integrate, population_loss
from .instances import random_instance
from .theorems import conservation_drift

RULE_NAMES = ("bp", "frfb", "urfb")


def linear_network(inst, rule):
    """A hebbref network with identity activations whose W and R are the instance's."""
    text = " ".join(f"dense{n}" for n in inst.widths[1:-1]) + " out"
    net = hebbref.build_network(text, input_shape=(inst.widths[0],), n_classes=inst.widths[-1], rule=rule,
                                init="random", backend="numpy", dtype="float64")
    layers = net.parameters()
    if len(layers) != inst.depth:
        raise ConfigError(f"expected {inst.depth} dense layers, the network has {len(layers)}")
    for layer, W0, R0 in zip(layers, inst.W0s, inst.R0s):
        layer.W[...] = W0  # (n_l, n_{l-1})
        layer.R[...] = R0
    return net


def sgd_step(net, x, y, eta):
    """One SGD step on ½ mean ‖o - y‖² through the network's own layers; returns the loss before it.

    x (B, d), y (B, m) real-valued targets (the teacher's outputs).
    """
    B = x.shape[0]
    o = net.forward(x, train=True)  # (B, m)
    e = (o - y) / B  # (B, m): e_L, the error at the linear output, carries 1/B
    net.backward(e)
    net.update(eta)
    return 0.5 * float(np.sum((o - y) ** 2)) / B


def network_weights(net):
    """[W_1, ..., W_L] of a network (copies)."""
    return [layer.W.copy() for layer in net.parameters()]


def teacher_sample(inst, n_samples, seed, noise=0.0):
    """X (N, d) standard normal, Y = X Tᵀ + noise (N, m): a finite training set."""
    rng = np.random.default_rng(np.random.SeedSequence([inst.seed, seed, 5]))
    X = rng.standard_normal((n_samples, inst.widths[0]))
    Y = X @ inst.T.T + noise * rng.standard_normal((n_samples, inst.widths[-1]))
    return X, Y


@dataclass
class SGDResult:
    rule: str
    steps_eps: float  # first recorded step with training loss <= eps · initial; inf if never
    status: str  # "reached", "max_steps" or "diverged"
    steps: np.ndarray  # the recorded steps
    train_loss: np.ndarray  # ½ mean ‖o - y‖² on the whole sample, at those steps
    population_loss: np.ndarray  # ½ ‖T - M‖², the whitened-population loss, at those steps
    conservation_drift: float = np.nan  # urfb: T1's C_l at the end against at step 0 (relative; 0 in the flow)

    def steps_to(self, q):
        """First recorded step with training loss <= q · initial (inf if never)."""
        below = np.nonzero(self.train_loss <= q * self.train_loss[0])[0]
        return float(self.steps[below[0]]) if below.size else np.inf


def run_sgd(inst, rule, X, Y, eta=0.02, batch=10, max_steps=10000, eps=0.01, record_every=1, seed=0,
            diverge_factor=1e4):
    """Minibatch SGD (batches drawn without replacement within each epoch) until eps or max_steps."""
    if not (np.isfinite(eta) and eta > 0):
        raise ConfigError(f"eta must be a positive number, got {eta}")
    if not 1 <= batch <= len(X):
        raise ConfigError(f"batch must lie in [1, {len(X)}], got {batch}")
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging run is reported, not warned about
        return _run_sgd(inst, rule, X, Y, eta, batch, max_steps, eps, record_every, seed, diverge_factor)


def _run_sgd(inst, rule, X, Y, eta, batch, max_steps, eps, record_every, seed, diverge_factor):
    net = linear_network(inst, rule)
    rng = np.random.default_rng(np.random.SeedSequence([inst.seed, seed, 6]))

    def train_loss():
        o = net.forward(X)
        return 0.5 * float(np.sum((o - Y) ** 2)) / len(X)

    steps, losses, population = [0], [train_loss()], [population_loss(inst.T, network_weights(net))]
    target, status, order, position = eps * losses[0], "max_steps", rng.permutation(len(X)), 0
    for step in range(1, max_steps + 1):
        if position + batch > len(X):
            order, position = rng.permutation(len(X)), 0
        idx = order[position : position + batch]
        position += batch
        sgd_step(net, X[idx], Y[idx], eta)
        if step % record_every == 0:
            steps.append(step)
            losses.append(train_loss())
            population.append(population_loss(inst.T, network_weights(net)))
            if not np.isfinite(losses[-1]) or losses[-1] > diverge_factor * losses[0]:
                status = "diverged"
                break
            if losses[-1] <= target:
                status = "reached"
                break
    steps_eps = float(steps[-1]) if status == "reached" else np.inf
    drift = np.nan
    if rule == "urfb" and status != "diverged":
        drift = conservation_drift(inst.W0s, inst.R0s, network_weights(net), [p.R for p in net.parameters()])
    return SGDResult(rule, steps_eps, status, np.array(steps), np.array(losses), np.array(population), drift)


@dataclass
class SGDSetting:
    """Discrete SGD on several instances: step size η, batch, sample size N = samples_per_input · d."""

    name: str
    description: str
    eta: float = 0.02
    batch: int = 10
    samples_per_input: int = 20
    max_steps: int = 10000
    n_full: int = 40
    n_quick: int = 10
    first_seed: int = 50_000
    eps: float = 0.01
    eps_levels: tuple = (0.1, 0.01, 0.001)  # each run goes on to the smallest
    scales: tuple = (0.0, 0.1, 0.3, 1.0)


SGD_SETTINGS = [
    SGDSetting("sgd", "minibatch SGD through hebbref Dense layers, eta = 0.02, batch 10, N = 20 d "
               "noiseless samples; instances drawn as in main"),
    SGDSetting("sgd_large_step", "as sgd but eta = 0.05: a step size at which the flow is no longer "
               "a good guide", eta=0.05, n_full=40, n_quick=10),
]


def run_sgd_setting(setting, quick=False):
    """(rows, summary entry): per instance and rule, steps to eps and the flow's time for comparison."""
    rows = []
    n = setting.n_quick if quick else setting.n_full
    for k in range(n):
        inst = random_instance(setting.first_seed + k, scales=setting.scales)
        X, Y = teacher_sample(inst, setting.samples_per_input * inst.widths[0], seed=k)
        row = {"description": inst.describe(), "depth": inst.depth, "scale": inst.scale, "runs": {}}
        for rule in RULE_NAMES:
            result = run_sgd(inst, rule, X, Y, eta=setting.eta, batch=setting.batch, max_steps=setting.max_steps,
                             eps=min(setting.eps_levels), seed=k)
            flow = integrate(inst.T, inst.W0s, inst.R0s, rule, eps=setting.eps,
                             t_max=setting.eta * setting.max_steps)
            row["runs"][rule] = {"result": result, "t_sgd": setting.eta * result.steps_to(setting.eps),
                                 "t_flow": flow.t_eps}
        rows.append(row)
    return rows, summarise_sgd(setting, rows)


def _sgd_dominates(urfb, frfb, rtol=1e-5):
    """urfb's population loss ≤ frfb's at every recorded step both runs share (same batches)."""
    n = min(len(urfb.population_loss), len(frfb.population_loss))
    return bool(np.all(urfb.population_loss[:n] <= frfb.population_loss[:n] * (1 + rtol)))


def _sgd_rate(result, setting):
    """ln 10 over the time from 10·ε_min to ε_min of the initial training loss (0 if never there)."""
    lowest = min(setting.eps_levels)
    start, end = result.steps_to(10 * lowest), result.steps_to(lowest)
    if not np.isfinite(end):
        return 0.0
    return np.log(10.0) / max(setting.eta * (end - start), setting.eta)


def summarise_sgd(setting, rows):
    t = {rule: np.array([row["runs"][rule]["t_sgd"] for row in rows]) for rule in RULE_NAMES}
    flow = {rule: np.array([row["runs"][rule]["t_flow"] for row in rows]) for rule in RULE_NAMES}
    status = {rule: [row["runs"][rule]["result"].status for row in rows] for rule in RULE_NAMES}
    both = np.isfinite(t["frfb"]) & np.isfinite(t["urfb"])
    ratio = t["frfb"][both] / t["urfb"][both]
    agree = {}
    for rule in RULE_NAMES:
        ok = np.isfinite(t[rule]) & np.isfinite(flow[rule])
        agree[rule] = float(np.median(t[rule][ok] / flow[rule][ok])) if ok.any() else None
    results = [{rule: row["runs"][rule]["result"] for rule in RULE_NAMES} for row in rows]
    lowest = min(setting.eps_levels)
    drifts = [r["urfb"].conservation_drift for r in results if np.isfinite(r["urfb"].conservation_drift)]
    return {
        "name": setting.name,
        "description": setting.description,
        "n_instances": len(rows),
        "eps": setting.eps,
        "eta": setting.eta,
        "frac_urfb_faster_by_eps": {str(q): float(np.mean([r["urfb"].steps_to(q) < r["frfb"].steps_to(q)
                                                           for r in results])) for q in setting.eps_levels},
        "n_never_reached_by_eps": {str(q): {rule: int(sum(not np.isfinite(r[rule].steps_to(q)) for r in results))
                                            for rule in RULE_NAMES} for q in setting.eps_levels},
        "frac_all_time_dominance": float(np.mean([_sgd_dominates(r["urfb"], r["frfb"]) for r in results])),
        "dominance_definition": ("population loss of urfb <= frfb's (1 + 1e-5) at every step up to the earlier "
                                 f"end of the two runs (each stops at training loss {lowest:g} x initial)"),
        "frac_higher_asymptotic_rate": float(np.mean([_sgd_rate(r["urfb"], setting) > _sgd_rate(r["frfb"], setting)
                                                      for r in results])),
        "asymptotic_rate_definition": (f"ln(10) / time from training loss {10 * lowest:g} to {lowest:g} x initial "
                                       "(0 if the run never gets there)"),
        "urfb_conservation_drift": {"median": float(np.median(drifts)) if drifts else None,
                                    "max": float(np.max(drifts)) if drifts else None, "n": len(drifts),
                                    "definition": "max_l max|C_l(end) - C_l(0)| / max(|W_l W_l^T|, |R_{l+1}^T R_{l+1}|), "
                                                  "C_l = W_l W_l^T - R_{l+1}^T R_{l+1}, at the end of each urfb run"},
        "frac_urfb_faster": float(np.mean(t["urfb"] < t["frfb"])),
        "frac_tie": float(np.mean(t["urfb"] == t["frfb"])),
        "median_time_ratio_frfb_over_urfb": float(np.median(ratio)) if ratio.size else None,
        "n_both_reached": int(both.sum()),
        "frac_reached": {rule: float(np.mean(np.isfinite(t[rule]))) for rule in RULE_NAMES},
        "frac_diverged": {rule: float(np.mean([s == "diverged" for s in status[rule]])) for rule in RULE_NAMES},
        "median_sgd_time_over_flow_time": agree,
    }
