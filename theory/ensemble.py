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

"Faster" is measured every way (theory/README.md §4): the time to ε V(0) for each ε in
EPS_LEVELS; all-time dominance V_urfb(t) ≤ V_frfb(t) on the window up to the earlier of
the two times to min(EPS_LEVELS) V(0); the rate −d ln V/dt at the first time V = min(EPS_LEVELS) V(0);
and, in the settings with ``norm_matched``, the control of theory.flow.LinearFlow.norm_matched_feedback
(frfb with urfb's feedback gain), which separates the gain of R from its alignment.
"""
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import brentq

from .flow import feedback_matrices, feedback_products, forward_products, integrate, products_above
from .identities import energy_rate
from .instances import aligned_instance, random_instance
from .theorems import numerical_rank

RULE_NAMES = ("bp", "frfb", "urfb")
GRID = np.linspace(0.0, 1.0, 21)  # fractions of t_ε(urfb)
LEVELS = (0.5, 0.1)  # loss fractions q at which maps are compared at equal loss
EPS_LEVELS = (0.1, 0.01, 0.001)  # "faster" to each of these fractions of V(0)
DOMINANCE_POINTS = 400  # grid points of the dominance window
DOMINANCE_RTOL = 1e-5  # V_urfb ≤ V_frfb (1 + this): the solver's rtol is 1e-7
NORM_MATCHED = "frfb_nm"  # the norm-matched control's name in the results


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
    kind: str = "random"  # "random" (theory.instances.random_instance) or "aligned" (T3's hypotheses)
    norm_matched: bool = False  # also run the norm-matched control
    must_dominate: bool = False  # a theorem says V_urfb ≤ V_frfb at every time here

    def instances(self, quick):
        n = self.n_quick if quick else self.n_full
        if self.kind == "aligned":
            return [aligned_instance(self.first_seed + k) for k in range(n)]
        return [random_instance(self.first_seed + k, depths=self.depths, scales=self.scales, rho=self.rho)
                for k in range(n)]


SETTINGS = [
    Setting("main", "depths 2-4, widths 2-16, teacher rank 1-6, W(0) = s·Glorot with "
            "s in {0, 0.1, 0.3, 1}, R(0) = Glorot", first_seed=0, norm_matched=True),
    Setting("theorem_aligned", "T3's hypotheses: L = 2, W(0) = 0, R(0) = sum_i rho_i u_i z_i^T with the "
            "teacher's left singular vectors; d 1-8, n 1-10, m 1-6", kind="aligned", depths=(2,), scales=(0.0,),
            n_full=100, n_quick=12, first_seed=60_000, breakdowns=(), must_dominate=True),
    Setting("conjecture_zero_forward", "C1's setting: L = 2, W(0) = 0, R(0) = Glorot (general, random)",
            depths=(2,), scales=(0.0,), n_full=200, n_quick=30, first_seed=70_000, breakdowns=(),
            norm_matched=True),
    Setting("large_init", "as main but W(0) = 3·Glorot: large initial forward weights",
            scales=(3.0,), n_full=60, n_quick=12, first_seed=10_000, breakdowns=("depth",), norm_matched=True),
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
    t_by_eps: dict = field(default_factory=dict)  # rule (and NORM_MATCHED) -> {ε: time, inf if never}
    dominance_margin: float = np.nan  # min over the window of (V_frfb − V_urfb) / V_frfb (< 0: urfb above)
    dominance_worst_time: float = np.nan  # where that minimum is
    dominance_window: float = np.nan  # the window's end
    rate: dict = field(default_factory=dict)  # rule -> −d ln V/dt at the first V = min(EPS_LEVELS) V(0) (or the end)
    stuck: dict = field(default_factory=dict)  # rule -> None, or how the run stalled (T4)


def _curves(inst, rule, grid_t, eps, run=None):
    """V/V0, weight and path alignment, and M on the grid (NaN after a divergence).

    Evaluated on ``run``'s dense output where that run covers the grid (solve_ivp's t_eval
    uses the same interpolant, so the values are those of a fresh integration); otherwise
    integrated again to the grid's end.
    """
    if run is not None and run.sol is not None and run.t[-1] >= grid_t[-1]:
        states, flow = run.sol(grid_t), run.flow
    else:
        result = integrate(inst.T, inst.W0s, inst.R0s, rule, eps=eps, t_max=grid_t[-1], stop_at_eps=False,
                           t_eval=grid_t)
        states, flow = result.z, result.flow
    n = len(grid_t)
    V0 = flow.loss(flow.pack(inst.W0s, inst.R0s))
    loss, weight, path = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    maps = np.full((n,) + inst.T.shape, np.nan)
    for i in range(states.shape[1]):
        Ws, Rs = flow.unpack(states[:, i])
        P = forward_products(Ws)
        maps[i] = P[-1]
        E = inst.T - P[-1]
        loss[i] = 0.5 * np.sum(E * E) / V0
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


def _losses(run, ts):
    """V(t) at times ts inside the run (dense output)."""
    return np.array([run.flow.loss(z) for z in run.sol(ts).T])


def dominance(runs, points=DOMINANCE_POINTS):
    """(min margin, its time, window end): margin = (V_frfb − V_urfb) / V_frfb on [0, window].

    window = the earlier of the two runs' ends (each stops at min(EPS_LEVELS) V(0), t_max or
    divergence): past it one of the two is not integrated. If frfb ends first (it reached the
    level first), the margin at the window's end is negative, so "urfb reaches every level
    sooner" and "dominates on the window" agree at the end.
    """
    window = min(runs["frfb"].t[-1], runs["urfb"].t[-1])
    ts = np.linspace(0.0, window, points)[1:]
    V_f, V_u = _losses(runs["frfb"], ts), _losses(runs["urfb"], ts)
    with np.errstate(invalid="ignore", divide="ignore"):
        margin = (V_f - V_u) / V_f
    margin = np.where(np.isfinite(margin), margin, -np.inf)
    i = int(np.argmin(margin))
    return float(margin[i]), float(ts[i]), float(window)


def log_rate(run):
    """−d ln V/dt = −(dV/dt) / V at the run's last state (the first V = min(EPS_LEVELS) V(0) if reached)."""
    Ws, Rs = run.flow.unpack(run.z[:, -1])
    V = run.flow.loss(run.z[:, -1])
    if run.flow.norm_matched:
        Rs = run.flow.norm_matched_feedback(Ws)
    return -energy_rate(run.flow.T, Ws, Rs, run.flow.rule) / V if V > 0 else np.inf


def stall(run, level):
    """How a run that stopped above ``level`` at t_max stalled (T4), or None.

    Stalled: V changed by less than 1 % over the second half of the run. Then report
    rank Q_1 at the end against at t = 0 (numerical, rtol 1e-4) and ‖Q_1 E‖ / (‖Q_1‖ ‖E‖).
    """
    if run.status != "t_max" or run.sol is None:
        return None
    V_half, V_end = run.flow.loss(run.sol(run.t[-1] / 2)), run.flow.loss(run.z[:, -1])
    if abs(V_half - V_end) > 0.01 * V_end or V_end <= level * run.V0:
        return None
    Ws, Rs = run.flow.unpack(run.z[:, -1])
    start_Ws, start_Rs = run.flow.unpack(run.z[:, 0])
    Bs = feedback_matrices(Ws, Rs, run.flow.rule)
    Q1, Q1_start = feedback_products(Bs)[0], feedback_products(feedback_matrices(start_Ws, start_Rs, run.flow.rule))[0]
    E = run.flow.T - forward_products(Ws)[-1]
    return {"V_end_over_V0": V_end / run.V0, "rank_Q1_end": numerical_rank(Q1, 1e-4),
            "rank_Q1_start": numerical_rank(Q1_start, 1e-4),
            "rel_Q1_E": float(np.linalg.norm(Q1 @ E) / (np.linalg.norm(Q1) * np.linalg.norm(E)))}


def run_instance(inst, eps=0.01, t_max=500.0, norm_matched=False):
    """Times to every ε in EPS_LEVELS for the three rules, dominance and rates; then the curves on 0 ≤ t ≤ t_ε(urfb)."""
    lowest = min(EPS_LEVELS)
    options = dict(eps=lowest, t_max=t_max, dense_output=True, levels=sorted(set(EPS_LEVELS) | {eps}))
    runs = {rule: integrate(inst.T, inst.W0s, inst.R0s, rule, **options) for rule in RULE_NAMES}
    if norm_matched:
        runs[NORM_MATCHED] = integrate(inst.T, inst.W0s, inst.R0s, "frfb", norm_matched=True, **options)
    t_eps = {r: runs[r].t_levels[eps] for r in RULE_NAMES}
    t_ref = t_eps["urfb"] if np.isfinite(t_eps["urfb"]) else t_max
    out = InstanceResult(inst.describe(), inst.depth, inst.scale, inst.rank,
                         t_eps, {r: runs[r].status for r in RULE_NAMES}, GRID * t_ref)
    out.t_by_eps = {r: {q: run.t_levels[q] for q in EPS_LEVELS} for r, run in runs.items()}
    out.dominance_margin, out.dominance_worst_time, out.dominance_window = dominance(runs)
    out.rate = {r: log_rate(run) for r, run in runs.items()}
    out.stuck = {r: stall(run, lowest) for r, run in runs.items() if r != "bp"}
    maps = {}
    for rule in RULE_NAMES:
        loss, weight, path, maps[rule] = _curves(inst, rule, out.grid_t, eps, runs[rule])
        out.loss[rule], out.weight_alignment[rule], out.path_alignment[rule] = loss, weight, path
    level_maps = {rule: _maps_at_levels(runs[rule]) for rule in RULE_NAMES}
    for rule in ("frfb", "urfb"):
        out.distance_to_bp[rule] = np.linalg.norm(maps[rule] - maps["bp"], axis=(1, 2)) / np.linalg.norm(inst.T)
        out.distance_at_equal_loss[rule] = (np.linalg.norm(level_maps[rule] - level_maps["bp"], axis=(1, 2))
                                            / np.linalg.norm(inst.T))
    return out


def _order_statistic(values, q):
    """The q-th percentile as an order statistic (no interpolation), so +∞ entries count as the
    largest values instead of being dropped; the median and the quantiles come from one set."""
    return float(np.quantile(np.asarray(values, dtype=float), q / 100.0, method="inverted_cdf"))


def _json_number(x):
    """A float for JSON: "inf" for +∞ (a run that never arrives), None for NaN."""
    if x is None or np.isnan(x):
        return None
    return "inf" if np.isposinf(x) else float(x)


def _quantiles(values, qs=(10, 25, 50, 75, 90)):
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return {f"p{q}": None for q in qs}
    return {f"p{q}": _json_number(_order_statistic(values, q)) for q in qs}


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
    median_ratio = _order_statistic(ratio_defined, 50) if ratio_defined.size else None
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
        # median and quantiles are order statistics of one set: the instances where at least one of
        # the two arrives (ratio +inf: only urfb arrives; 0: only frfb); "inf" in the quantiles
        "median_time_ratio_frfb_over_urfb": _finite_or_none(median_ratio),
        "median_time_ratio_note": ("infinite: frfb does not reach eps in most instances"
                                   if median_ratio is not None and np.isposinf(median_ratio) else ""),
        "time_ratio_frfb_over_urfb_quantiles": _quantiles(ratio_defined),
        "n_ratio_defined": int(ratio_defined.size),
        "n_never_reached": {rule: int(np.sum(~np.isfinite(t[rule]))) for rule in RULE_NAMES},
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
        **faster_every_way(results),
    }


def _fraction_faster(results, a, b, q):
    """Fraction of instances where rule a reaches q V(0) strictly before rule b (never = +∞)."""
    return float(np.mean([res.t_by_eps[a][q] < res.t_by_eps[b][q] for res in results]))


def faster_every_way(results):
    """The summary fields of "faster" (issue 11 item 5) and of stalled runs (item 6)."""
    lowest = min(EPS_LEVELS)
    margins = np.array([res.dominance_margin for res in results])
    worst = int(np.argmin(margins))
    out = {
        "eps_levels": list(EPS_LEVELS),
        "frac_urfb_faster_by_eps": {str(q): _fraction_faster(results, "urfb", "frfb", q) for q in EPS_LEVELS},
        "n_never_reached_by_eps": {str(q): {rule: int(sum(not np.isfinite(res.t_by_eps[rule][q]) for res in results))
                                            for rule in RULE_NAMES} for q in EPS_LEVELS},
        "frac_all_time_dominance": float(np.mean(margins >= -DOMINANCE_RTOL)),
        "dominance_definition": (f"V_urfb(t) <= V_frfb(t) (1 + {DOMINANCE_RTOL:g}) at {DOMINANCE_POINTS} times on "
                                 f"[0, earlier end of the two runs], each run stopping at V = {lowest:g} V(0) or t_max"),
        "min_dominance_margin": {"margin": float(margins[worst]), "instance": results[worst].description,
                                 "time": results[worst].dominance_worst_time,
                                 "window": results[worst].dominance_window},
        "dominance_failures": [f"{res.description}: margin {res.dominance_margin:.3g} at t = "
                               f"{res.dominance_worst_time:.4g} (window {res.dominance_window:.4g})"
                               for res in results if res.dominance_margin < -DOMINANCE_RTOL][:20],
        "frac_higher_asymptotic_rate": float(np.mean([res.rate["urfb"] > res.rate["frfb"] for res in results])),
        "asymptotic_rate_definition": f"-d ln V/dt at the first time V = {lowest:g} V(0) (at t_max if never)",
        "median_asymptotic_rate": {rule: _median([res.rate[rule] for res in results]) for rule in ("frfb", "urfb")},
    }
    stalled = {rule: [(res.description, res.stuck[rule]) for res in results if res.stuck.get(rule)]
               for rule in RULE_NAMES}
    out["stalled_runs"] = {
        rule: {"n": len(rows),
               "n_with_rank_loss_of_Q1": sum(s["rank_Q1_end"] < s["rank_Q1_start"] for _, s in rows),
               "instances": [dict(s, instance=d) for d, s in rows][:10]}
        for rule, rows in stalled.items() if rule != "bp"
    }
    if NORM_MATCHED in results[0].t_by_eps:
        gain_share = []
        for res in results:
            t_f, t_u, t_n = (res.t_by_eps[r][0.01] for r in ("frfb", "urfb", NORM_MATCHED))
            if np.all(np.isfinite([t_f, t_u, t_n])) and abs(np.log(t_f / t_u)) > 1e-3:
                gain_share.append(np.log(t_f / t_n) / np.log(t_f / t_u))
        out["norm_matched"] = {
            "definition": "frfb whose feedback R_l(0) is rescaled at every state to the norm urfb's law gives: "
                          "|R_{l+1}|^2 = |R_{l+1}(0)|^2 + |W_l|^2 - |W_l(0)|^2 (gain of urfb, direction of frfb)",
            "frac_faster_than_frfb_by_eps": {str(q): _fraction_faster(results, NORM_MATCHED, "frfb", q)
                                             for q in EPS_LEVELS},
            "frac_urfb_faster_than_control_by_eps": {str(q): _fraction_faster(results, "urfb", NORM_MATCHED, q)
                                                     for q in EPS_LEVELS},
            "frac_higher_asymptotic_rate_than_frfb": float(np.mean([res.rate[NORM_MATCHED] > res.rate["frfb"]
                                                                    for res in results])),
            "n_never_reached_by_eps": {str(q): int(sum(not np.isfinite(res.t_by_eps[NORM_MATCHED][q])
                                                       for res in results)) for q in EPS_LEVELS},
            "median_share_of_log_speedup_from_gain": _median(gain_share),
            "share_quantiles": _quantiles(gain_share, qs=(25, 75)),
            "n_share": len(gain_share),
            "share_definition": "ln(t_frfb / t_control) / ln(t_frfb / t_urfb) at eps = 0.01, where all three arrive",
        }
    return out


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
        results.append(run_instance(inst, eps=setting.eps, t_max=setting.t_max, norm_matched=setting.norm_matched))
        if progress:
            progress(setting.name, len(results))
    entry = summarise(setting.name, setting.description, results, setting.eps)
    entry["must_dominate"] = setting.must_dominate
    entry["breakdowns"] = {
        key: {str(value): summarise(f"{setting.name}[{key}={value}]", "", group, setting.eps)
              for value, group in breakdown(results, key).items()}
        for key in setting.breakdowns
    }
    for by in entry["breakdowns"].values():
        for sub in by.values():
            del sub["description"]
    return results, entry
