"""Run every check and write report.md, PNG plots and summary.json.  # SPEC §8

    write_report(out_dir, quick)   ->  the summary dict (also written as summary.json)

summary.json: {"settings": [{"name", "n_instances", "frac_urfb_faster",
"median_time_ratio_frfb_over_urfb", ...}, ...], "identities": {...}, ...}: one entry per
setting measured (theory.ensemble.SETTINGS, then theory.sgd.SGD_SETTINGS).
"""
import json
import os
import time

import numpy as np

from hebbref.errors import ConfigError

from .ensemble import GRID, SETTINGS, run_setting
from .flow import integrate
from .identities import dissipation_terms, trajectory_identity_errors, urfb_decomposition
from .instances import random_instance
from .sgd import SGD_SETTINGS, run_sgd_setting

IDENTITY_SEEDS_QUICK, IDENTITY_SEEDS_FULL = range(3), range(20)
COLORS = {"bp": "black", "frfb": "tab:red", "urfb": "tab:blue"}


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
        ax.hist(np.log2(finite), bins=25, color="tab:blue", alpha=0.8)
        ax.axvline(0.0, color="black", lw=1)
        only_urfb = int(np.sum(np.isinf(ratios)))  # frfb never reached eps
        only_frfb = int(np.sum(ratios == 0))  # urfb never reached eps
        neither = int(np.sum(np.isnan(ratios)))
        ax.set_title(f"{name} (n={len(results)}; not shown: only urfb reached {only_urfb}, "
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
        axes[0].plot(GRID, mid, color=COLORS[rule], label=rule)
        axes[0].fill_between(GRID, lo, hi, color=COLORS[rule], alpha=0.15)
    axes[0].set_yscale("log")
    axes[0].set_title("V(t) / V(0)")
    for rule in ("frfb", "urfb"):
        for ax, key in ((axes[1], "weight_alignment"), (axes[2], "path_alignment")):
            mid, lo, hi = _median_band([getattr(r, key)[rule] for r in results])
            ax.plot(GRID, mid, color=COLORS[rule], label=rule)
            ax.fill_between(GRID, lo, hi, color=COLORS[rule], alpha=0.15)
        mid, lo, hi = _median_band([r.distance_to_bp[rule] for r in results if np.isfinite(r.t_eps["bp"])])
        axes[3].plot(GRID, mid, color=COLORS[rule], label=rule)
        axes[3].fill_between(GRID, lo, hi, color=COLORS[rule], alpha=0.15)
    axes[1].set_title("W-R alignment: mean_l cos(W_l, R_l)")
    axes[2].set_title("feedback path: cos(Q_1, A_1^T)")
    axes[3].set_title("||M - M_bp|| / ||T|| (where bp learns)")
    for ax in axes:
        ax.set_xlabel("t / t_eps(urfb)")
        ax.legend(fontsize=8)
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
            ax.plot(res.steps, res.train_loss / res.train_loss[0], color=COLORS[rule], label=f"{rule} (train)")
            ax.plot(res.steps, res.population_loss / res.population_loss[0], color=COLORS[rule], ls=":")
        ax.set_yscale("log")
        ax.set_xlabel("SGD step")
        ax.set_title(row["description"], fontsize=7)
    axes[0][0].set_ylabel("loss / initial  (dotted: population)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
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
    lines += ["## 4. Discrete SGD through hebbref's Dense layers", "",
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
    lines += ["", "## Figures", ""]
    lines += [f"![{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"


def write_report(out_dir, quick=False, command="python -m theory", progress=print):
    """Run identities, flow ensembles and SGD; write report.md, *.png, summary.json into out_dir."""
    if not isinstance(out_dir, str) or not out_dir:
        raise ConfigError(f"out_dir must be a folder path, got {out_dir!r}")
    os.makedirs(out_dir, exist_ok=True)
    start = time.time()
    progress(f"identities along trajectories ({'quick' if quick else 'full'})")
    identities, _ = identity_checks(IDENTITY_SEEDS_QUICK if quick else IDENTITY_SEEDS_FULL)
    entries, all_results, figures = [], {}, []
    for setting in SETTINGS:
        progress(f"flow ensemble {setting.name}")
        results, entry = run_setting(setting, quick=quick)
        entries.append(entry)
        all_results[setting.name] = results
        name = f"curves_{setting.name}.png"
        plot_curves(results, os.path.join(out_dir, name), f"{setting.name}: {setting.description}")
        figures.append(name)
    plot_ratio_histograms(all_results, os.path.join(out_dir, "time_ratio_histograms.png"))
    figures.insert(0, "time_ratio_histograms.png")
    for setting in SGD_SETTINGS:
        progress(f"SGD {setting.name}")
        rows, entry = run_sgd_setting(setting, quick=quick)
        entries.append(entry)
        name = f"sgd_{setting.name}.png"
        plot_sgd(rows, os.path.join(out_dir, name), f"{setting.name}: {setting.description}")
        figures.append(name)
    summary = {"settings": entries, "identities": identities, "quick": bool(quick), "command": command,
               "elapsed_s": time.time() - start}
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(markdown(summary, figures))
    progress(f"wrote {out_dir}/report.md, summary.json and {len(figures)} figures in {summary['elapsed_s']:.0f} s")
    return summary
