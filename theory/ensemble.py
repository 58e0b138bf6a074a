"""Many random instances: how much sooner does urfb reach a given error than frfb?  # SPEC §8

Everything here is MEASURED (theory/README.md §4), not proved. For each instance the
three rules start from the same W(0) (and frfb, urfb from the same R(0)); each flow is
integrated until V(t) ≤ ε V(0) or t_max, giving t_ε(rule). Then every rule is
integrated again on a common grid 0 ≤ t ≤ t_ε(urfb) to record, over time:

    V(t) / V(0)                                   the learning curve
    cos(W_l, R_l) = ⟨W_l, R_l⟩ / (‖W_l‖ ‖R_l‖)     weight alignment, mean over layers
    cos(Q_1, A_1ᵀ)                                 the whole feedback path to the bottom
                                                   layer against back-prop's path
    ‖M_rule(t) - M_bp(t)‖ / ‖T‖                    how far the network map is from bp's
                                                   (rule = urfb and, for comparison, frfb)

and, since rules that learn at different speeds drift apart in time even along one
path, the distance at equal loss: ‖M_rule(t_rule(q)) - M_bp(t_bp(q))‖ / ‖T‖ where
t_rule(q) is the first time V ≤ q V(0), for q in LEVELS.
"""
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import brentq

from .flow import feedback_matrices, feedback_products, forward_products, integrate, products_above
from .instances import random_instance

RULE_NAMES = ("bp", "frfb", "urfb")
GRID = np.linspace(0.0, 1.0, 21)  # fractions of t_ε(urfb)
LEVELS = (0.5, 0.1)  # loss fractions q at which maps are compared at equal loss


@dataclass
class Setting:
    """A family of random instances: which initial scales s, which feedback scale ρ."""

    name: str
    description: str
    scales: tuple = (0.0, 0.1, 0.3, 1.0)
    rho: float = 1.0
    depths: tuple = (2, 3, 4)
    n_full: int = 240
    n_quick: int = 40
    first_seed: int = 0
    eps: float = 0.01
    t_max: float = 500.0
    breakdowns: tuple = ("depth", "scale")

    def instances(self, quick):
        n = self.n_quick if quick else self.n_full
        return [random_instance(self.first_seed + k, depths=self.depths, scales=self.scales, rho=self.rho)
                for k in range(n)]


SETTINGS = [
    Setting("main", "depths 2-4, widths 2-16, teacher rank 1-6, W(0) = s·Glorot with "
            "s in {0, 0.1, 0.3, 1}, R(0) = Glorot", first_seed=0),
    Setting("large_init", "as main but W(0) = 3·Glorot: large initial forward weights",
            scales=(3.0,), n_full=60, n_quick=12, first_seed=10_000, breakdowns=("depth",)),
    Setting("feedback_large", "as main but R(0) = 10·Glorot: feedback much larger than W(0)",
            rho=10.0, n_full=60, n_quick=12, first_seed=20_000),
    Setting("feedback_small", "as main but R(0) = 0.1·Glorot: feedback much smaller than W(0)",
            rho=0.1, n_full=60, n_quick=12, first_seed=30_000),
]


def _cos(a, b):
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(np.sum(a * b) / (na * nb)) if na > 0 and nb > 0 else np.nan


@dataclass
class InstanceResult:
    description: str
    depth: int
    scale: float
    rank: int
    t_eps: dict  # rule -> time (inf when not reached)
    status: dict  # rule -> "reached" / "t_max" / "diverged" / "failed"
    grid_t: np.ndarray  # (len(GRID),) the times of the curves
    loss: dict = field(default_factory=dict)  # rule -> V(t)/V(0) on the grid
    weight_alignment: dict = field(default_factory=dict)  # rule -> mean_l cos(W_l, R_l)
    path_alignment: dict = field(default_factory=dict)  # rule -> cos(Q_1, A_1ᵀ)
    distance_to_bp: dict = field(default_factory=dict)  # rule -> ‖M_rule - M_bp‖ / ‖T‖ on the grid
    distance_at_equal_loss: dict = field(default_factory=dict)  # rule -> (len(LEVELS),), NaN if not reached


def _curves(inst, rule, grid_t, eps):
    """V/V0, weight and path alignment, and M on the grid (NaN after a divergence)."""
    result = integrate(inst.T, inst.W0s, inst.R0s, rule, eps=eps, t_max=grid_t[-1], stop_at_eps=False,
                       t_eval=grid_t)
    n = len(grid_t)
    loss, weight, path = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    maps = np.full((n,) + inst.T.shape, np.nan)
    for i in range(result.z.shape[1]):
        Ws, Rs = result.flow.unpack(result.z[:, i])
        P = forward_products(Ws)
        maps[i] = P[-1]
        E = inst.T - P[-1]
        loss[i] = 0.5 * np.sum(E * E) / result.V0
        weight[i] = np.mean([_cos(W, R) for W, R in zip(Ws, Rs)])
        Q1 = feedback_products(feedback_matrices(Ws, Rs, rule))[0]
        path[i] = _cos(Q1, products_above(Ws)[0].T)
    return loss, weight, path, maps


def _maps_at_levels(run, n_scan=400):
    """M at the first time V ≤ q V(0), for q in LEVELS ((len(LEVELS), m, d); NaN where never)."""
    flow, sol = run.flow, run.sol
    m, d = flow.T.shape
    out = np.full((len(LEVELS), m, d), np.nan)
    if sol is None:
        return out
    ts = np.linspace(0.0, run.t[-1], n_scan)
    ratio = np.array([flow.loss(sol(t)) for t in ts]) / run.V0
    for k, q in enumerate(LEVELS):
        below = np.nonzero(ratio <= q)[0]
        if below.size == 0:
            continue
        i = below[0]
        t_q = ts[0] if i == 0 else brentq(lambda t: flow.loss(sol(t)) / run.V0 - q, ts[i - 1], ts[i], xtol=1e-10)
        out[k] = forward_products(flow.unpack(sol(t_q))[0])[-1]
    return out


def run_instance(inst, eps=0.01, t_max=500.0):
    """Times to ε for the three rules, then the curves on 0 ≤ t ≤ t_ε(urfb)."""
    runs = {rule: integrate(inst.T, inst.W0s, inst.R0s, rule, eps=eps, t_max=t_max, dense_output=True)
            for rule in RULE_NAMES}
    t_ref = runs["urfb"].t_eps if np.isfinite(runs["urfb"].t_eps) else t_max
    out = InstanceResult(inst.describe(), inst.depth, inst.scale, inst.rank,
                         {r: runs[r].t_eps for r in RULE_NAMES}, {r: runs[r].status for r in RULE_NAMES},
                         GRID * t_ref)
    maps = {}
    for rule in RULE_NAMES:
        loss, weight, path, maps[rule] = _curves(inst, rule, out.grid_t, eps)
        out.loss[rule], out.weight_alignment[rule], out.path_alignment[rule] = loss, weight, path
    level_maps = {rule: _maps_at_levels(runs[rule]) for rule in RULE_NAMES}
    for rule in ("frfb", "urfb"):
        out.distance_to_bp[rule] = np.linalg.norm(maps[rule] - maps["bp"], axis=(1, 2)) / np.linalg.norm(inst.T)
        out.distance_at_equal_loss[rule] = (np.linalg.norm(level_maps[rule] - level_maps["bp"], axis=(1, 2))
                                            / np.linalg.norm(inst.T))
    return out


def _quantiles(values, qs=(10, 25, 50, 75, 90)):
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return {f"p{q}": None for q in qs}
    return {f"p{q}": float(np.percentile(values, q)) for q in qs}


def _median(values):
    """Median of the finite values; None when there are none (e.g. cos(W, R) at W = 0)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else None


def _finite_or_none(x):
    return float(x) if x is not None and np.isfinite(x) else None


def summarise(name, description, results, eps):
    """One summary.json entry for a list of InstanceResults (the fields are named for what they measure)."""
    t = {r: np.array([res.t_eps[r] for res in results]) for r in RULE_NAMES}
    # ratio frfb/urfb: inf when only urfb gets there, 0 when only frfb, undefined when neither
    both_fail = ~np.isfinite(t["frfb"]) & ~np.isfinite(t["urfb"])
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = t["frfb"] / t["urfb"]
    ratio_defined = ratio[~both_fail]
    finite_ur_bp = np.isfinite(t["urfb"]) & np.isfinite(t["bp"])
    end = {rule: np.array([res.weight_alignment[rule][-1] for res in results]) for rule in ("frfb", "urfb")}
    start = {rule: np.array([res.weight_alignment[rule][0] for res in results]) for rule in ("frfb", "urfb")}
    middle = len(GRID) // 2
    # closeness to bp only where bp itself learns (from W(0) = 0 bp never moves: V̇ = 0)
    bp_learns = [res for res in results if np.isfinite(res.t_eps["bp"])]
    distance_max = {rule: [np.nanmax(res.distance_to_bp[rule]) for res in bp_learns] for rule in ("frfb", "urfb")}
    return {
        "name": name,
        "description": description,
        "n_instances": len(results),
        "eps": eps,
        "frac_urfb_faster": float(np.mean(t["urfb"] < t["frfb"])),
        # None when undefined; the note says when it is None because the median is infinite
        "median_time_ratio_frfb_over_urfb": _finite_or_none(np.median(ratio_defined)) if ratio_defined.size else None,
        "median_time_ratio_note": ("infinite: frfb does not reach eps in most instances"
                                   if ratio_defined.size and np.isposinf(np.median(ratio_defined)) else ""),
        "time_ratio_frfb_over_urfb_quantiles": _quantiles(ratio_defined[np.isfinite(ratio_defined)]),
        "frac_reached": {rule: float(np.mean(np.isfinite(t[rule]))) for rule in RULE_NAMES},
        "median_time_ratio_urfb_over_bp": (float(np.median(t["urfb"][finite_ur_bp] / t["bp"][finite_ur_bp]))
                                           if finite_ur_bp.any() else None),
        "frac_urfb_faster_than_bp": float(np.mean(t["urfb"] < t["bp"])),
        "median_max_distance_to_bp_where_bp_learns": {
            rule: _median(distance_max[rule]) for rule in ("frfb", "urfb")
        },
        "median_distance_to_bp_at_equal_loss_where_bp_learns": {
            rule: {f"V=V0*{q:g}": _median([res.distance_at_equal_loss[rule][k] for res in bp_learns])
                   for k, q in enumerate(LEVELS)}
            for rule in ("frfb", "urfb")
        },
        "median_weight_alignment": {
            rule: {"t=0": _median(start[rule]),
                   "t=t_urfb/2": _median([res.weight_alignment[rule][middle] for res in results]),
                   "t=t_urfb": _median(end[rule])}
            for rule in ("frfb", "urfb")
        },
        "not_reached": {  # instance, and how the run ended, for each rule (at most 10 listed)
            rule: [f"{res.description}: {res.status[rule]}" for res in results if not np.isfinite(res.t_eps[rule])][:10]
            for rule in ("frfb", "urfb")
        },
        "median_path_alignment_bottom_layer_at_t_urfb": {
            rule: _median([res.path_alignment[rule][-1] for res in results]) for rule in ("frfb", "urfb")
        },
    }


def breakdown(results, key):
    """{value: [results]} grouped by an instance property ('depth' or 'scale')."""
    groups = {}
    for res in results:
        groups.setdefault(getattr(res, key), []).append(res)
    return dict(sorted(groups.items()))


def run_setting(setting, quick=False, progress=None):
    """All instances of one setting: (results, summary entry with its breakdowns)."""
    results = []
    for inst in setting.instances(quick):
        results.append(run_instance(inst, eps=setting.eps, t_max=setting.t_max))
        if progress:
            progress(setting.name, len(results))
    entry = summarise(setting.name, setting.description, results, setting.eps)
    entry["breakdowns"] = {
        key: {str(value): summarise(f"{setting.name}[{key}={value}]", "", group, setting.eps)
              for value, group in breakdown(results, key).items()}
        for key in setting.breakdowns
    }
    for by in entry["breakdowns"].values():
        for sub in by.values():
            del sub["description"]
    return results, entry
