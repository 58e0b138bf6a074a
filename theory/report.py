"""Run every check and write report.md, PNG plots and summary.json.  # SPEC §8

    write_report(out_dir, quick, jobs=1)   ->  the summary dict (also written as summary.json)

``jobs`` > 1 runs the settings (each one seeded by itself) in that many worker processes;
the numbers, the report and the plots are the same as one after another.

summary.json: {"theorems": [{"name", "statement", "max_check_error", "n_checked", "check"}, ...],
"conjectures": [...], "settings": [{"name", "n_instances", "frac_urfb_faster",
"frac_urfb_faster_by_eps", "frac_all_time_dominance", "frac_higher_asymptotic_rate",
["norm_matched"], ...}, ...], "identities": {...}, ...}: one settings entry per setting
measured (theory.ensemble.SETTINGS, then theory.sgd.SGD_SETTINGS).
"""
import json
import os
import time

import numpy as np

from hebbref.errors import ConfigError
from hebbref.palette import rule_colour, rule_linestyle

from .ensemble import EPS_LEVELS, GRID, SETTINGS, run_setting
from .flow import integrate
from .identities import dissipation_terms, trajectory_identity_errors, urfb_decomposition
from .instances import aligned_instance, random_instance
from .sgd import SGD_SETTINGS, run_sgd_setting
from .theorems import scalar_closed_form, theorem_checks

IDENTITY_SEEDS_QUICK, IDENTITY_SEEDS_FULL = range(3), range(20)
CONJECTURE_SETTING = "conjecture_zero_forward"


# --- (1) identities along trajectories ---------------------------------------------------------------
def identity_checks(seeds):
    """Max relative error of each identity over whole trajectories, and the urfb extra dissipation.

    extra dissipation (measured for L ≥ 3): at each state of a urfb trajectory,
    Σ_{l<L} (bp_l + mixed_l) is how much more urfb dissipates than fixed feedback D would
    at the same state; for L = 2 it is ‖Wᵀ E‖² ≥ 0 (proved). We record its smallest value
    relative to Σ_l |term_l|: negative means some visited state has urfb dissipating less.
    """
    worst = {}
    rows, min_extra = [], {}
    for seed in seeds:
        inst = random_instance(seed, scales=(0.0, 0.1, 0.3, 1.0))
        for rule in ("bp", "frfb", "urfb"):
            result = integrate(inst.T, inst.W0s, inst.R0s, rule, eps=1e-3, t_max=300, rtol=1e-10, atol=1e-12)
            errors = trajectory_identity_errors(result, n_points=40)
            for name, value in errors.items():
                worst[name] = max(worst.get(name, 0.0), value)
            rows.append((inst.describe(), rule, result.t.size, errors))
            if rule == "urfb":
                W_start, R_start = result.flow.unpack(result.z[:, 0])
                Ds = [R - W for R, W in zip(R_start, W_start)]
                smallest = np.inf
                for i in range(1, result.z.shape[1]):
                    Ws, Rs = result.flow.unpack(result.z[:, i])
                    parts = urfb_decomposition(inst.T, Ws, Ds)
                    scale = sum(abs(x) for x in dissipation_terms(inst.T, Ws, Rs, "urfb"))
                    extra = sum(p["bp"] + p["mixed"] for p in parts[:-1])
                    if scale > 0:
                        smallest = min(smallest, extra / scale)
                min_extra.setdefault(inst.depth, []).append(smallest)
    return {
        "n_trajectories": len(rows),
        "max_relative_error": worst,
        "min_relative_extra_dissipation_urfb_by_depth": {
            str(depth): {"min": float(np.min(v)), "frac_trajectories_always_positive": float(np.mean(np.array(v) > 0)),
                         "n": len(v)}
            for depth, v in sorted(min_extra.items())
        },
    }, rows


# --- plots ----------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _median_band(curves):
    curves = np.array(curves, dtype=float)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return (np.nanmedian(curves, axis=0), np.nanpercentile(curves, 25, axis=0),
                    np.nanpercentile(curves, 75, axis=0))


def plot_ratio_histograms(all_results, path):
    plt = _plt()
    fig, axes = plt.subplots(1, len(all_results), figsize=(4 * len(all_results), 3.2), squeeze=False)
    for ax, (name, results) in zip(axes[0], all_results.items()):
        ratios = np.array([r.t_eps["frfb"] / r.t_eps["urfb"] for r in results])
        finite = ratios[np.isfinite(ratios) & (ratios > 0)]
        ax.hist(np.log2(finite), bins=25, color=rule_colour("urfb"), alpha=0.8)
        ax.axvline(0.0, color="black", lw=1)
        only_urfb = int(np.sum(np.isinf(ratios)))  # frfb never reached eps
        only_frfb = int(np.sum(ratios == 0))  # urfb never reached eps
        neither = int(np.sum(np.isnan(ratios)))
        ax.set_title(f"{name} (n={len(results)}; not shown: only urfb reached {only_urfb},\n"
                     f"only frfb {only_frfb}, neither {neither})", fontsize=8)
        ax.set_xlabel("log2 t_eps(frfb) / t_eps(urfb)")
    axes[0][0].set_ylabel("instances")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(results, path, title):
    """Median (and quartiles) over instances, against t / t_eps(urfb)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    for rule in ("bp", "frfb", "urfb"):
        mid, lo, hi = _median_band([r.loss[rule] for r in results])
        axes[0].plot(GRID, mid, color=rule_colour(rule), ls=rule_linestyle(rule), label=rule)
        axes[0].fill_between(GRID, lo, hi, color=rule_colour(rule), alpha=0.15)
    axes[0].set_yscale("log")
    axes[0].set_title("V(t) / V(0)")
    for rule in ("frfb", "urfb"):
        for ax, key in ((axes[1], "weight_alignment"), (axes[2], "path_alignment")):
            mid, lo, hi = _median_band([getattr(r, key)[rule] for r in results])
            ax.plot(GRID, mid, color=rule_colour(rule), ls=rule_linestyle(rule), label=rule)
            ax.fill_between(GRID, lo, hi, color=rule_colour(rule), alpha=0.15)
        learns = [r.distance_to_bp[rule] for r in results if np.isfinite(r.t_eps["bp"])]
        if not learns:  # from W(0) = 0 bp never moves (P6)
            continue
        mid, lo, hi = _median_band(learns)
        axes[3].plot(GRID, mid, color=rule_colour(rule), ls=rule_linestyle(rule), label=rule)
        axes[3].fill_between(GRID, lo, hi, color=rule_colour(rule), alpha=0.15)
    axes[1].set_title("W-R alignment: mean_l cos(W_l, R_l)")
    axes[2].set_title("feedback path: cos(Q_1, A_1^T)")
    axes[3].set_title("||M - M_bp|| / ||T|| (where bp learns)")
    for ax in axes:
        ax.set_xlabel("t / t_eps(urfb)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        else:  # from W(0) = 0 bp never moves (P6): no distance to its path to show
            ax.text(0.5, 0.5, "bp does not learn here (P6)", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sgd(rows, path, title, n_show=4):
    plt = _plt()
    fig, axes = plt.subplots(1, n_show, figsize=(4 * n_show, 3.2), squeeze=False)
    for ax, row in zip(axes[0], rows[:n_show]):
        for rule, run in row["runs"].items():
            res = run["result"]
            ax.plot(res.steps, res.train_loss / res.train_loss[0], color=rule_colour(rule), label=f"{rule} (train)")
            ax.plot(res.steps, res.population_loss / res.population_loss[0], color=rule_colour(rule), ls=":")
        ax.set_yscale("log")
        ax.set_xlabel("SGD step")
        ax.set_title(row["description"], fontsize=7)
    axes[0][0].set_ylabel("loss / initial  (dotted: population)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_theorem(path, seed=0):
    """T3 in one picture: the scalar chain's weights and error from the ODE solver (lines)
    against the closed forms in U(t) (dots), both rules; and V_urfb / V_frfb over time."""
    plt = _plt()
    inst = aligned_instance(seed, widths=[1, 1, 1])
    tau, r0 = inst.tau[0], inst.rho_modes[0]
    from .theorems import integrate_with_U

    t_end = 1.5 * integrate(inst.T, inst.W0s, inst.R0s, "frfb", eps=1e-3, t_max=500).t_eps
    grid = np.linspace(0.0, t_end, 121)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    V = {}
    for rule in ("frfb", "urfb"):
        _, states = integrate_with_U(inst.T, inst.W0s, inst.R0s, rule, grid)
        w0 = np.array([Ws[0][0, 0] for Ws, _, _ in states])
        w = np.array([Ws[1][0, 0] for Ws, _, _ in states])
        U = np.array([u[0, 0] for _, _, u in states])
        c0, c, _ = scalar_closed_form(rule, U, r0)
        colour = rule_colour(rule)
        axes[0].plot(grid, w0, color=colour, ls="-", label=f"{rule} w0 (ODE)")
        axes[0].plot(grid, w, color=colour, ls="--", label=f"{rule} w (ODE)")
        axes[0].plot(grid[::6], c0[::6], "o", color=colour, ms=3)
        axes[0].plot(grid[::6], c[::6], "s", color=colour, ms=3)
        V[rule] = 0.5 * (tau - w * w0) ** 2
        axes[1].semilogy(grid, V[rule] / V[rule][0], color=colour, ls=rule_linestyle(rule), label=rule)
        axes[1].semilogy(grid[::6], 0.5 * (tau - c[::6] * c0[::6]) ** 2 / V[rule][0], "o", color=colour, ms=3)
    axes[0].set_title(f"scalar chain tau={tau:.2f}, r0={r0:.2f}: lines ODE, dots closed forms", fontsize=9)
    axes[0].legend(fontsize=7)
    axes[1].set_title("V(t)/V(0): ODE (lines), closed forms (dots)", fontsize=9)
    axes[1].legend(fontsize=8)
    with np.errstate(invalid="ignore", divide="ignore"):
        axes[2].plot(grid[1:], V["urfb"][1:] / V["frfb"][1:], color=rule_colour("urfb"))
    axes[2].axhline(1.0, color="grey", lw=0.8)
    axes[2].set_title("V_urfb(t) / V_frfb(t) (T3: < 1 for t > 0)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("t")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_dominance(all_results, path):
    """Histogram per setting of min_t (V_frfb − V_urfb) / V_frfb on the dominance window (≥ 0: dominance)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(all_results), figsize=(3.2 * len(all_results), 3.0), squeeze=False)
    for ax, (name, results) in zip(axes[0], all_results.items()):
        margins = np.array([r.dominance_margin for r in results])
        shown = np.clip(margins, -1.0, 1.0)
        ax.hist(shown, bins=np.linspace(-1.0, 1.0, 41), color=rule_colour("urfb"), alpha=0.8)
        ax.axvline(0.0, color="black", lw=1)
        ax.set_title(f"{name}\n(n={len(results)}, below 0: {int(np.sum(margins < -1e-5))}; clipped to [-1, 1])",
                     fontsize=8)
        ax.set_xlabel("min_t (V_frfb - V_urfb) / V_frfb")
    axes[0][0].set_ylabel("instances")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- Markdown ------------------------------------------------------------------------------------------
def _fmt(x, digits=3):
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def _cell(text):
    """Text for a Markdown table cell (a norm's bars would end the cell)."""
    return text.replace("|", "\\|")


def _setting_row(entry):
    q = entry.get("time_ratio_frfb_over_urfb_quantiles", {})
    reached = entry["frac_reached"]
    return (f"| {entry['name']} | {entry['n_instances']} | {_fmt(entry['frac_urfb_faster'])} | "
            f"{'inf' if entry.get('median_time_ratio_note') else _fmt(entry['median_time_ratio_frfb_over_urfb'])} | "
            f"{_fmt(q.get('p10'))} - {_fmt(q.get('p90'))} | "
            f"{_fmt(entry.get('median_time_ratio_urfb_over_bp'))} | "
            f"{_fmt(reached['bp'])} / {_fmt(reached['frfb'])} / {_fmt(reached['urfb'])} |")


SETTING_HEADER = ("| setting | n | frac urfb faster | median t(frfb)/t(urfb) | p10 - p90 | "
                  "median t(urfb)/t(bp) | reached bp / frfb / urfb |\n|---|---|---|---|---|---|---|")


def markdown(summary, figures):
    lines = [
        "# hebbref theory report: the linear case (SPEC §8)",
        "",
        f"Command: `{summary['command']}`; {'quick' if summary['quick'] else 'full'} run, "
        f"{summary['elapsed_s']:.0f} s. What is proved and how is in theory/README.md; "
        "everything below is measured.",
        "",
        "## 0. Theorems: numerical checks (statements and proofs in theory/README.md §3)",
        "",
        "| theorem | statement | max check error | n checked | check |",
        "|---|---|---|---|---|",
        *[f"| {c['name']} | {_cell(c['statement'])} | {c['max_check_error']:.2e} | {c['n_checked']} | {_cell(c['check'])} |"
          for c in summary["theorems"]],
        "",
        "## 0'. Conjecture C1 (L = 2, W(0) = 0, general random R(0): V_urfb(t) <= V_frfb(t) for all t)",
        "",
        *[f"{c['n_instances']} instances ({c['setting']}): dominance in {c['n_dominated']}; counterexamples "
          f"{c['n_counterexamples']}" + ("".join(f"; {x}" for x in c["counterexamples"])) +
          f". Smallest margin min_t (V_frfb - V_urfb)/V_frfb: {c['min_margin']:.3g} ({c['min_margin_instance']})."
          for c in summary["conjectures"]],
        "",
        "## 1. Identities along whole trajectories (should be ~1e-15)",
        "",
        f"{summary['identities']['n_trajectories']} trajectories (rtol 1e-10), largest relative error:",
        "",
        "| identity | max relative error |",
        "|---|---|",
    ]
    for name, value in summary["identities"]["max_relative_error"].items():
        lines.append(f"| {name} | {value:.2e} |")
    lines += ["", "Extra dissipation of urfb over fixed feedback D at the same state, "
              "Σ_{l<L}(bp_l + mixed_l) / Σ|term_l|, smallest value along each urfb trajectory "
              "(L = 2: proved ≥ 0; L ≥ 3: measured):", "",
              "| depth | n | smallest | fraction of trajectories where it stays > 0 |", "|---|---|---|---|"]
    for depth, v in summary["identities"]["min_relative_extra_dissipation_urfb_by_depth"].items():
        lines.append(f"| {depth} | {v['n']} | {v['min']:.3g} | {v['frac_trajectories_always_positive']:.3g} |")
    lines += ["", "## 2-3. Ensembles of random instances (gradient flow)", "",
              "Time t_eps: first time V(t) <= eps V(0), eps = 0.01; t_max = 500 (not reached = inf).", "",
              SETTING_HEADER]
    flow_entries = [e for e in summary["settings"] if "breakdowns" in e]
    for entry in flow_entries:
        lines.append(_setting_row(entry))
    lines.append("")
    for entry in flow_entries:
        lines += [f"**{entry['name']}**: {entry['description']}.", ""]
        a = entry["median_weight_alignment"]
        lines.append("Median cos(W, R) (mean over layers) at t = 0, t_urfb/2, t_urfb: "
                     f"frfb {_fmt(a['frfb']['t=0'])}, {_fmt(a['frfb']['t=t_urfb/2'])}, {_fmt(a['frfb']['t=t_urfb'])}; "
                     f"urfb {_fmt(a['urfb']['t=0'])}, {_fmt(a['urfb']['t=t_urfb/2'])}, {_fmt(a['urfb']['t=t_urfb'])}. "
                     "Median over instances where bp learns of max_t ||M - M_bp|| / ||T||: "
                     f"frfb {_fmt(entry['median_max_distance_to_bp_where_bp_learns']['frfb'])}, "
                     f"urfb {_fmt(entry['median_max_distance_to_bp_where_bp_learns']['urfb'])}. "
                     "At equal loss (maps when each rule first reaches V = 0.5 V0 and 0.1 V0): frfb "
                     + ", ".join(_fmt(v) for v in entry['median_distance_to_bp_at_equal_loss_where_bp_learns']['frfb'].values())
                     + "; urfb "
                     + ", ".join(_fmt(v) for v in entry['median_distance_to_bp_at_equal_loss_where_bp_learns']['urfb'].values())
                     + ".")
        for rule in ("frfb", "urfb"):
            if entry["not_reached"][rule]:
                lines.append(f"{rule} did not reach eps in: " + "; ".join(entry["not_reached"][rule]) + ".")
        lines.append("")
        for key, by in entry["breakdowns"].items():
            lines += [SETTING_HEADER.replace("| setting |", f"| {key} |")]
            for value, sub in by.items():
                lines.append(_setting_row(dict(sub, name=f"{key} = {value}")))
            lines.append("")
    lines += ["## 2'. Faster, measured every way", "",
              "Fraction of instances where urfb reaches eps V(0) strictly first (a run that never arrives counts "
              "as +inf), at each eps; never arrived (frfb / urfb); all-time dominance; higher rate "
              "-d ln V/dt at V = 0.001 V(0). Definitions in summary.json.", "",
              "| setting | n | " + " | ".join(f"faster to {q:g}" for q in EPS_LEVELS)
              + " | never arrive at 0.001: frfb / urfb | all-time dominance | higher rate | min margin |",
              "|---|---|" + "---|" * len(EPS_LEVELS) + "---|---|---|---|"]
    for entry in summary["settings"]:
        if "frac_urfb_faster_by_eps" not in entry:
            continue
        never = entry["n_never_reached_by_eps"][str(min(EPS_LEVELS))]
        margin = entry.get("min_dominance_margin", {}).get("margin")
        lines.append(f"| {entry['name']} | {entry['n_instances']} | "
                     + " | ".join(_fmt(entry["frac_urfb_faster_by_eps"][str(q)]) for q in EPS_LEVELS)
                     + f" | {never['frfb']} / {never['urfb']} | {_fmt(entry['frac_all_time_dominance'])} | "
                     f"{_fmt(entry['frac_higher_asymptotic_rate'])} | {_fmt(margin)} |")
    lines += ["", "**Norm-matched control** (frfb with urfb's feedback gain, frfb's direction):", "",
              "| setting | control faster than frfb to " + " / ".join(f"{q:g}" for q in EPS_LEVELS)
              + " | urfb faster than control to " + " / ".join(f"{q:g}" for q in EPS_LEVELS)
              + " | median share of ln(t_frfb/t_urfb) from gain (p25 - p75, n) |", "|---|---|---|---|"]
    for entry in summary["settings"]:
        nm = entry.get("norm_matched")
        if not nm:
            continue
        q = nm["share_quantiles"]
        lines.append(f"| {entry['name']} | "
                     + " / ".join(_fmt(nm["frac_faster_than_frfb_by_eps"][str(e)]) for e in EPS_LEVELS) + " | "
                     + " / ".join(_fmt(nm["frac_urfb_faster_than_control_by_eps"][str(e)]) for e in EPS_LEVELS)
                     + f" | {_fmt(nm['median_share_of_log_speedup_from_gain'])} ({_fmt(q['p25'])} - "
                     f"{_fmt(q['p75'])}, {nm['n_share']}) |")
    lines += ["", "**Stalled runs** (ended at t_max above 0.001 V(0), V changed < 1 % over the second half; "
              "T4: rank of Q_1 at the end against at t = 0):", ""]
    for entry in summary["settings"]:
        for rule, st in entry.get("stalled_runs", {}).items():
            if st["n"]:
                lines.append(f"- {entry['name']}, {rule}: {st['n']} stalled, {st['n_with_rank_loss_of_Q1']} with "
                             "rank loss of Q_1: " + "; ".join(
                                 f"{x['instance']} (V = {x['V_end_over_V0']:.3g} V0, rank Q_1 {x['rank_Q1_start']} -> "
                                 f"{x['rank_Q1_end']}, |Q_1 E|/(|Q_1||E|) = {x['rel_Q1_E']:.1e})"
                                 for x in st["instances"]))
    lines += ["", "## 4. Discrete SGD through hebbref's Dense layers", "",
              "| setting | n | eta | frac urfb faster (ties) | median t(frfb)/t(urfb) | reached bp / frfb / urfb | "
              "diverged bp / frfb / urfb | median t_SGD / t_flow (bp, frfb, urfb) |",
              "|---|---|---|---|---|---|---|---|"]
    for entry in summary["settings"]:
        if "eta" not in entry:
            continue
        r, dv, ag = entry["frac_reached"], entry["frac_diverged"], entry["median_sgd_time_over_flow_time"]
        lines.append(f"| {entry['name']} | {entry['n_instances']} | {entry['eta']} | "
                     f"{_fmt(entry['frac_urfb_faster'])} ({_fmt(entry['frac_tie'])}) | "
                     f"{_fmt(entry['median_time_ratio_frfb_over_urfb'])} | {_fmt(r['bp'])} / {_fmt(r['frfb'])} / "
                     f"{_fmt(r['urfb'])} | {_fmt(dv['bp'])} / {_fmt(dv['frfb'])} / {_fmt(dv['urfb'])} | "
                     f"{_fmt(ag['bp'])}, {_fmt(ag['frfb'])}, {_fmt(ag['urfb'])} |")
    lines += ["", "urfb's conservation law under SGD (T1 is exact only in the flow; each step adds "
              "eta^2 (G_l G_l^T - G_{l+1}^T G_{l+1})): drift at the end of the urfb runs, median / max: "
              + "; ".join(f"{e['name']} {_fmt(e['urfb_conservation_drift']['median'])} / "
                          f"{_fmt(e['urfb_conservation_drift']['max'])}"
                          for e in summary["settings"] if "urfb_conservation_drift" in e) + "."]
    lines += ["", "## Figures", ""]
    lines += [f"![{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"


def conjectures(entries, all_results):
    """C1's evidence: the conjecture setting's instances, every counterexample in full."""
    out = []
    for entry in entries:
        if entry["name"] != CONJECTURE_SETTING:
            continue
        results = all_results[entry["name"]]
        from .ensemble import DOMINANCE_RTOL

        bad = [r for r in results if r.dominance_margin < -DOMINANCE_RTOL]
        worst = min(results, key=lambda r: r.dominance_margin)
        out.append({
            "name": "C1 dominance from zero forward weights",
            "statement": "L = 2, W0(0) = W(0) = 0, any teacher T and any R(0): V_urfb(t) <= V_frfb(t) for all t >= 0",
            "setting": entry["name"], "n_instances": len(results), "n_dominated": len(results) - len(bad),
            "n_counterexamples": len(bad),
            "counterexamples": [f"{r.description}: (V_frfb - V_urfb)/V_frfb = {r.dominance_margin:.4g} at "
                                f"t = {r.dominance_worst_time:.5g}, window {r.dominance_window:.5g}, t_0.01 frfb "
                                f"{r.t_eps['frfb']:.5g} urfb {r.t_eps['urfb']:.5g}" for r in bad],
            "min_margin": worst.dominance_margin, "min_margin_instance": worst.description,
            "tolerance": DOMINANCE_RTOL,
        })
    return out


def run_settings(quick=False, jobs=1):
    """Yield (label, setting, outcome, seconds) for every flow then SGD setting, in that order.

    ``outcome`` is what ``run_setting`` or ``run_sgd_setting`` returns. With ``jobs`` > 1
    the settings run in that many spawned processes (``hebbref.experiments.rundir.worker_pool``:
    each with its share of the cores' BLAS threads), and are yielded in the same order.
    """
    tasks = [("flow ensemble", setting, quick) for setting in SETTINGS]
    tasks += [("SGD", setting, quick) for setting in SGD_SETTINGS]
    if jobs <= 1:
        for task in tasks:
            yield task[:2] + _run_one(task)
        return
    from hebbref.experiments.rundir import worker_pool

    with worker_pool(jobs) as pool:
        for task, done in zip(tasks, pool.map(_run_one, tasks)):
            yield task[:2] + done


def _run_one(task):
    """(outcome, seconds) of one setting: a flow ensemble or an SGD setting."""
    label, setting, quick = task
    start = time.time()
    outcome = run_setting(setting, quick=quick) if label == "flow ensemble" else run_sgd_setting(setting, quick=quick)
    return outcome, time.time() - start


def write_report(out_dir, quick=False, command="python -m theory", progress=print, jobs=1):
    """Run identities, flow ensembles and SGD; write report.md, *.png, summary.json into out_dir.

    ``jobs``: settings run at once, in separate processes (``run_settings``).
    """
    if not isinstance(out_dir, str) or not out_dir:
        raise ConfigError(f"out_dir must be a folder path, got {out_dir!r}")
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ConfigError(f"jobs must be a whole number ≥ 1, got {jobs!r}")
    os.makedirs(out_dir, exist_ok=True)
    start = time.time()
    progress(f"theorem checks ({'quick' if quick else 'full'})")
    theorems = theorem_checks(quick)
    progress(f"identities along trajectories ({'quick' if quick else 'full'})")
    identities, _ = identity_checks(IDENTITY_SEEDS_QUICK if quick else IDENTITY_SEEDS_FULL)
    entries, all_results, figures, sgd_figures = [], {}, [], []
    for label, setting, (results, entry), seconds in run_settings(quick, jobs):
        progress(f"{label} {setting.name}: {seconds:.0f} s")
        entries.append(entry)
        if label == "flow ensemble":
            all_results[setting.name] = results
            name = f"curves_{setting.name}.png"
            plot_curves(results, os.path.join(out_dir, name), f"{setting.name}: {setting.description}")
            figures.append(name)
        else:
            name = f"sgd_{setting.name}.png"
            plot_sgd(results, os.path.join(out_dir, name), f"{setting.name}: {setting.description}")
            sgd_figures.append(name)
    plot_ratio_histograms(all_results, os.path.join(out_dir, "time_ratio_histograms.png"))
    plot_dominance(all_results, os.path.join(out_dir, "dominance_margins.png"))
    plot_theorem(os.path.join(out_dir, "theorem_scalar_chain.png"))
    figures = ["theorem_scalar_chain.png", "time_ratio_histograms.png", "dominance_margins.png"] + figures + sgd_figures
    summary = {"theorems": theorems, "conjectures": conjectures(entries, all_results), "settings": entries,
               "identities": identities, "quick": bool(quick), "command": command, "elapsed_s": time.time() - start}
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(markdown(summary, figures))
    progress(f"wrote {out_dir}/report.md, summary.json and {len(figures)} figures in {summary['elapsed_s']:.0f} s")
    return summary
