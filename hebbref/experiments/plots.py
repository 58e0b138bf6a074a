"""The figures of ``hebbref compare`` and ``hebbref demo``.

Every figure follows the same conventions, so that a reader who has understood one
reads the others the same way:

- a rule has one colour and one line style everywhere (``hebbref.palette``);
- a line is the mean over seeds, the band around it ± one sample standard deviation
  (no band with one seed, and the legend says how many seeds there are);
- epochs are whole numbers on the axis; SGD steps are counted from the start;
- legends sit outside the panels, never over the data;
- small multiples: one panel per setting, or per layer, never twenty lines in one;
- only series that mean something. Under ``bp`` the feedback matrix R is never used,
  so its probes are not drawn: the error back-propagation sends down is ``Wᵀδ``
  itself, 0° from back-propagation's by definition. The first weighted layer sends its
  error to the input, where nothing uses it, so its probe is not drawn either.

``plot_accuracy``, ``plot_alignment`` and ``plot_depth`` draw ``hebbref compare``'s
``accuracy.png``, ``alignment.png`` and ``depth.png``; ``plot_summary`` draws the
demo's one-page summary from the learning curves of ``hebbref.experiments.curve``.
"""
import warnings

import numpy as np

from ..palette import rule_colour, rule_linestyle, rule_sort_key
from . import compare

RULE_NAMES = {
    "bp": "bp: back-propagation (error sent down through Wᵀ)",
    "frfb": "frfb: fixed random feedback R",
    "urfb": "urfb: R gets W's update (the paper's)",
}
DPI = 110


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _integer_ticks(ax):
    """Whole numbers on the x axis (epochs, steps); a single point gets its own tick, not 0.95 ... 1.05."""
    from matplotlib.ticker import MaxNLocator
    if ax.dataLim.width == 0 and np.isfinite(ax.dataLim.x0):
        ax.set_xticks([ax.dataLim.x0])
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))


def rule_name(rule):
    """The legend text of a rule: its name and what it does."""
    return RULE_NAMES.get(rule, rule)


def sorted_rules(rules):
    return sorted(rules, key=rule_sort_key)


def used_layers(names):
    """The layers whose error is used: all but the first (``names`` from the bottom up)."""
    return list(names[1:])


def has_feedback(rule):
    """True for a rule whose error goes down through a matrix other than W (not ``bp``)."""
    return rule != "bp"


def settings(runs):
    """{(net, untied, init, loss): {rule: [history of each seed]}}, rules in palette order."""
    panels = compare._panels(compare.group_runs(runs))
    return {key: {rule: by_rule[rule] for rule in sorted_rules(by_rule) if by_rule[rule]}
            for key, by_rule in panels.items()}


def setting_title(key):
    """Two lines: the network, then tied or untied, the init and the loss."""
    return compare._panel_title(key)


def seed_band(matrix):
    """(mean, std) over the rows (seeds) of ``matrix``, NaN-aware; std 0 with one row."""
    matrix = np.asarray(matrix, dtype=float)
    with warnings.catch_warnings():  # a column that is NaN for every seed stays NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(matrix, axis=0)
        std = np.nanstd(matrix, axis=0, ddof=1) if len(matrix) > 1 else np.zeros(matrix.shape[1])
    return mean, std


def _line(ax, x, mean, std, rule, label=None, marker=None):
    colour = rule_colour(rule)
    ax.plot(x, mean, color=colour, linestyle=rule_linestyle(rule), marker=marker, markersize=3, label=label)
    if np.any(std > 0):
        ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)


def _rule_handles(rules, seeds, extra=()):
    """Legend entries: a line per rule (name and what it does), what the band is, and ``extra``."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    handles = [Line2D([], [], color=rule_colour(r), linestyle=rule_linestyle(r), label=rule_name(r)) for r in rules]
    band = f"band: ± 1 std over {seeds} seeds" if seeds > 1 else "one seed: no band"
    return handles + [Patch(color="0.6", alpha=0.4, label=band)] + list(extra)


def _seed_counts(panels):
    counts = {len(histories) for by_rule in panels.values() for histories in by_rule.values()}
    return min(counts) if counts else 0


def _save(fig, path):
    """Save with the legends and titles that sit outside the panels, free it; return it (for tests)."""
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.15)
    _pyplot().close(fig)
    return fig


def over_training(histories, record_value, point_value):
    """(x, mean, std, x label) over seeds: against SGD steps from the learning curves when every
    run has one (``evals_per_epoch`` > 0), else against epochs from the per-epoch records."""
    if all(curve_points(h) for h in histories):
        steps, mean, std = curve_band(histories, point_value)
        return steps, mean, std, "SGD steps"
    epochs, mean, std = compare._by_epoch(histories, record_value)
    return epochs, mean, std, "epoch"


# --- hebbref compare: accuracy.png -----------------------------------------------------------------
def plot_accuracy(path, runs):
    """Test accuracy per epoch: one panel per setting, one line per rule (mean ± std over seeds)."""
    plt = _pyplot()
    panels = settings(runs)
    columns = min(len(panels), 4)
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.9 * rows), squeeze=False, sharey=True,
                             layout="constrained")
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    rules = set()
    for ax, (key, by_rule) in zip(axes.flat, panels.items()):
        for rule, histories in by_rule.items():
            rules.add(rule)
            x, mean, std, x_label = over_training(histories, lambda r: r.get("test_accuracy") or np.nan,
                                                  lambda p: p["test_accuracy"])
            _line(ax, x, 100 * mean, 100 * std, rule, marker="o" if x_label == "epoch" else None)
        ax.set_title(setting_title(key), fontsize=8)
        ax.set_xlabel(x_label)
        _integer_ticks(ax)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy (%)")
    fig.legend(handles=_rule_handles(sorted_rules(rules), _seed_counts(panels)), loc="outside lower center",
               ncol=2, fontsize=8, frameon=False)
    return _save(fig, path)


# --- hebbref compare: alignment.png ----------------------------------------------------------------
def _layer_names(by_rule):
    for histories in by_rule.values():
        for history in histories:
            if history and "layers" in history[0]:
                return list(history[0]["layers"])
    return []


def _probe_value(record, layer, field):
    value = record.get("layers", {}).get(layer, {}).get(field)
    return np.nan if value is None else value


def plot_alignment(path, runs):
    """∠(Rᵀδ, Wᵀδ) per epoch: a row per setting, a panel per layer whose error is used, a line per rule.

    Returns the figure, or None (and writes nothing) when no run has a feedback rule and probes.
    """
    plt = _pyplot()
    rows = []
    for key, by_rule in settings(runs).items():
        feedback = {rule: histories for rule, histories in by_rule.items() if has_feedback(rule)}
        layers = used_layers(_layer_names(feedback))
        if feedback and layers:
            rows.append((key, feedback, layers))
    if not rows:
        return None
    columns = max(len(layers) for _, _, layers in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(2.6 * columns + 1.0, 2.4 * len(rows) + 0.8),
                             squeeze=False, sharey=True, layout="constrained")
    rules = set()
    for row, (key, feedback, layers) in enumerate(rows):
        names = _layer_names(feedback)
        for column in range(columns):
            ax = axes[row, column]
            if column >= len(layers):
                ax.axis("off")
                continue
            layer = layers[column]
            for rule, histories in feedback.items():
                rules.add(rule)
                x, mean, std, x_label = over_training(histories, lambda r: _probe_value(r, layer, "angle_RW"),
                                                      lambda p: _probe_value(p, layer, "angle_RW"))
                _line(ax, x, mean, std, rule, marker="o" if x_label == "epoch" else None)
            ax.axhline(90, color="0.5", linewidth=0.8, linestyle=":")
            below = names[names.index(layer) - 1]
            heading = setting_title(key).replace("\n", ", ") + "\n" if column == 0 else ""
            ax.set_title(f"{heading}{layer} → {below}", fontsize=8, loc="left")
            _integer_ticks(ax)
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
            if row == len(rows) - 1 or column >= len(rows[row + 1][2]):
                ax.set_xlabel(x_label)
        axes[row, 0].set_ylabel("angle (°)")
    from matplotlib.lines import Line2D
    note = Line2D([], [], color="0.5", linestyle=":", label="90°: nothing of back-propagation's error")
    fig.legend(handles=_rule_handles(sorted_rules(rules), _seed_counts({k: f for k, f, _ in rows}), [note]),
               loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle("Angle between the error a layer sends down through its feedback (Rᵀδ) and the one "
                 "back-propagation would send (Wᵀδ), panel 'a → b' for layer a sending to layer b.\n"
                 "Only the layers whose error is used (the first layer's goes to the input); "
                 "bp not drawn: it sends Wᵀδ, 0° by definition.", fontsize=8)
    return _save(fig, path)


# --- hebbref compare --study depth: depth.png -----------------------------------------------------
def plot_depth_values(path, accuracies):
    """Final test accuracy against depth from ``{rule: {hidden layers: [accuracy of each seed]}}``.

    Each seed is a dot, the line joins the means, the bars are ± one std.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.6), layout="constrained")
    depths = sorted({d for by_depth in accuracies.values() for d in by_depth})
    seeds = 0
    for i, rule in enumerate(sorted_rules(accuracies)):
        by_depth = accuracies[rule]
        offset = (i - (len(accuracies) - 1) / 2) * 0.08  # side by side, so the dots do not hide each other
        xs = [d for d in depths if by_depth.get(d)]
        stats = [compare.mean_std(by_depth[d]) for d in xs]
        mean, std = (np.array(stats, dtype=float).T if stats else (np.array([]), np.array([])))
        ax.errorbar(np.array(xs) + offset, 100 * mean, yerr=100 * np.nan_to_num(std), color=rule_colour(rule),
                    linestyle=rule_linestyle(rule), marker="_", markersize=14, capsize=3)
        for d in xs:
            ax.scatter([d + offset] * len(by_depth[d]), [100 * v for v in by_depth[d]], s=14,
                       color=rule_colour(rule), alpha=0.6, linewidths=0, zorder=3)
            seeds = max(seeds, len(by_depth[d]))
    ax.set_xticks(depths)
    ax.set_xlabel("hidden layers")
    ax.set_ylabel("test accuracy after the last epoch (%)")
    ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D
    dots = Line2D([], [], color="0.4", marker="o", linestyle="", markersize=3, alpha=0.6, label="one seed")
    handles = [Line2D([], [], color=rule_colour(r), linestyle=rule_linestyle(r), marker="_", label=rule_name(r))
               for r in sorted_rules(accuracies)]
    handles.append(Line2D([], [], color="0.4", marker="_", markersize=14, label=f"mean ± 1 std over {seeds} seeds"))
    handles.append(dots)
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    return _save(fig, path)


def plot_depth(path, runs, depths, nets):
    """``plot_depth_values`` from the runs of a depth study (``nets[i]`` has ``depths[i]`` hidden layers)."""
    groups = compare.group_runs(runs)
    accuracies = {}
    for (net, _, _, _, rule), histories in groups.items():
        if net in nets:
            values = [h[-1]["test_accuracy"] for h in histories if h and h[-1].get("test_accuracy") is not None]
            accuracies.setdefault(rule, {})[depths[nets.index(net)]] = values
    return plot_depth_values(path, accuracies)


# --- hebbref demo: the summary figure -------------------------------------------------------------
def curve_points(history):
    """The learning-curve points of a run (``"curve"`` of each epoch record), in step order."""
    return [point for record in history for point in record.get("curve", [])]


def curve_band(histories, value):
    """(steps, mean, std) of value(point) over seeds, on the steps every seed measured."""
    curves = [{p["step"]: value(p) for p in curve_points(h)} for h in histories]
    steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    mean, std = seed_band([[c[s] for s in steps] for c in curves]) if steps else (np.array([]), np.array([]))
    return np.array(steps), mean, std


def mean_used_angle(point):
    """The angle of a curve point, averaged over the layers whose error is used (NaN without probes)."""
    layers = point.get("layers")
    if not layers:
        return np.nan
    values = [layers[name]["angle_RW"] for name in used_layers(list(layers))]
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else np.nan


def plot_summary(path, networks, claims=(), title=""):
    """The demo's figure: per network, test accuracy and the feedback's angle against SGD steps.

    ``networks``: [(label, {rule: [history of each seed]})]. Left: accuracy on the
    held-out subset (mean ± std over seeds); middle: the angle between the error each
    rule sends down and back-propagation's, averaged over the layers whose error is
    used, with bp at 0°, which it is by definition; right: ``claims``, lines of text.
    """
    plt = _pyplot()
    rows = len(networks)
    fig = plt.figure(figsize=(14, 2.8 * rows + 0.8), layout="constrained")
    grid = fig.add_gridspec(rows, 3, width_ratios=(1, 1, 0.9))
    rules, seeds = set(), set()
    for row, (label, by_rule) in enumerate(networks):
        accuracy_ax, angle_ax = fig.add_subplot(grid[row, 0]), fig.add_subplot(grid[row, 1])
        used = []
        for rule in sorted_rules(by_rule):
            histories = [h for h in by_rule[rule] if curve_points(h)]
            if not histories:
                continue
            rules.add(rule)
            seeds.add(len(histories))
            steps, mean, std = curve_band(histories, lambda p: p["test_accuracy"])
            _line(accuracy_ax, steps, 100 * mean, 100 * std, rule)
            if has_feedback(rule):
                steps, mean, std = curve_band(histories, mean_used_angle)
                _line(angle_ax, steps, mean, std, rule)
                used = used or used_layers(list(curve_points(histories[0])[0].get("layers") or {}))
            else:
                angle_ax.plot(steps, np.zeros(len(steps)), color=rule_colour(rule), linestyle=rule_linestyle(rule))
        accuracy_ax.set_title(f"{label}\ntest accuracy", fontsize=9, loc="left")
        accuracy_ax.set_ylabel("accuracy (%)")
        over = f"mean of the {len(used)} layers whose error is used" if len(used) > 1 else "the layer whose error is used"
        angle_ax.set_title(f"{label}\nangle to back-prop's error, {over}", fontsize=9, loc="left")
        angle_ax.set_ylabel("angle (°)")
        angle_ax.set_ylim(-3, 100)
        angle_ax.axhline(90, color="0.5", linewidth=0.8, linestyle=":")
        for ax in (accuracy_ax, angle_ax):
            ax.set_xlabel("SGD steps")
            ax.grid(alpha=0.3)
            ax.set_xlim(left=0)
            _integer_ticks(ax)
    text_ax = fig.add_subplot(grid[:, 2])
    text_ax.axis("off")
    text_ax.text(0, 1, "\n".join(claims), va="top", ha="left", fontsize=8.5, transform=text_ax.transAxes)
    from matplotlib.lines import Line2D
    note = Line2D([], [], color="0.5", linestyle=":", label="90°: the feedback carries nothing of back-prop's error")
    fig.legend(handles=_rule_handles(sorted_rules(rules), min(seeds) if seeds else 0, [note]),
               loc="outside lower center", ncol=3, fontsize=8.5, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, path)
