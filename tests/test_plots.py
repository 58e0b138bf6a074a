"""hebbref.experiments.plots on small made-up histories: which series are drawn, in which colours, where."""
import numpy as np
import pytest
from matplotlib.colors import to_hex

from hebbref.experiments import plots
from hebbref.experiments.train import TrainConfig
from hebbref.palette import rule_colour as palette_colour

PNG = b"\x89PNG\r\n\x1a\n"
LAYERS = ["dense1", "dense2", "dense3", "dense4"]  # from the bottom up: dense1's error goes to the input
ANGLE = {"bp": 91.0, "frfb": 70.0, "urfb": 30.0}  # bp's "angle" is that of its unused R: must never be drawn


def history(rule, seed, epochs=3, steps_per_epoch=10):
    """A made-up run: per-epoch records with probes, and a curve of 3 points per epoch (and step 0)."""
    rng = np.random.default_rng(seed)
    records = []
    for epoch in range(1, epochs + 1):
        steps = ([0] if epoch == 1 else []) + [(epoch - 1) * steps_per_epoch + k for k in (4, 7, 10)]
        layers = {name: {"corr_WR": 0.5, "angle_RW": ANGLE[rule] + rng.normal()} for name in LAYERS}
        records.append({
            "epoch": epoch, "train_loss": 1.0 / epoch, "test_accuracy": 0.5 + 0.1 * epoch + 0.01 * rng.normal(),
            "layers": layers,
            "curve": [{"step": s, "test_accuracy": 0.1 + 0.02 * s, "layers": layers} for s in steps],
        })
    return records


def runs(rules=("bp", "frfb", "urfb"), seeds=(0, 1, 2), net="dense8 ramp dense8 ramp dense8 ramp out"):
    return [(TrainConfig(net=net, rule=rule, seed=seed), history(rule, seed)) for rule in rules for seed in seeds]


def rule_colour(rule):
    return to_hex(palette_colour(rule))


def data_lines(ax):
    """The lines of a panel that carry data (not the dotted 90° reference)."""
    return [line for line in ax.get_lines() if line.get_linestyle() != ":"]


def colours(ax):
    return {to_hex(line.get_color()) for line in data_lines(ax)}


def test_accuracy_one_line_per_rule_in_the_palette_colours_integer_epochs_legend_outside(tmp_path):
    fig = plots.plot_accuracy(tmp_path / "a.png", runs())
    assert (tmp_path / "a.png").read_bytes()[:8] == PNG
    ax = fig.axes[0]
    assert colours(ax) == {rule_colour(r) for r in ("bp", "frfb", "urfb")}
    assert len(data_lines(ax)) == 3
    assert all(float(t).is_integer() for t in ax.get_xticks())
    assert all(a.get_legend() is None for a in fig.axes) and len(fig.legends) == 1
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "band: ± 1 std over 3 seeds" in labels


def test_compare_plots_use_the_curve_when_every_run_has_one_and_epochs_otherwise(tmp_path):
    with_curves = runs()
    without = [(c, [{k: v for k, v in r.items() if k != "curve"} for r in h]) for c, h in with_curves]
    for these, label, x in ((with_curves, "SGD steps", [0, 4, 7, 10, 14, 17, 20, 24, 27, 30]),
                            (without, "epoch", [1, 2, 3])):
        for fig in (plots.plot_accuracy(tmp_path / "a.png", these), plots.plot_alignment(tmp_path / "b.png", these)):
            ax = fig.axes[0]
            assert ax.get_xlabel() == label
            assert [list(line.get_xdata()) for line in data_lines(ax)] == [x] * len(data_lines(ax))


def test_alignment_draws_no_bp_and_no_first_layer(tmp_path):
    fig = plots.plot_alignment(tmp_path / "b.png", runs())
    panels = [ax for ax in fig.axes if ax.axison]
    titles = [ax.get_title(loc="left").splitlines()[-1] for ax in panels]
    assert titles == ["dense2 → dense1", "dense3 → dense2", "dense4 → dense3"]  # one per layer whose error is used
    for ax in panels:
        assert colours(ax) == {rule_colour("frfb"), rule_colour("urfb")}  # bp's unused R is not drawn
        means = sorted(np.mean(line.get_ydata()) for line in data_lines(ax))
        assert means == pytest.approx([ANGLE["urfb"], ANGLE["frfb"]], abs=2)
        assert all(float(t).is_integer() for t in ax.get_xticks())
    assert all(a.get_legend() is None for a in fig.axes) and len(fig.legends) == 1


def test_alignment_of_bp_alone_is_not_drawn(tmp_path):
    assert plots.plot_alignment(tmp_path / "c.png", runs(rules=("bp",))) is None
    assert not (tmp_path / "c.png").exists()


def test_summary_plots_steps_bp_at_zero_and_the_mean_angle_of_the_used_layers(tmp_path):
    by_rule = {rule: [h for c, h in runs() if c.rule == rule] for rule in ("bp", "frfb", "urfb")}
    fig = plots.plot_summary(tmp_path / "s.png", [("net", by_rule)], claims=["a claim"], title="t")
    accuracy_ax, angle_ax = fig.axes[0], fig.axes[1]
    steps = [0, 4, 7, 10, 14, 17, 20, 24, 27, 30]
    for line in data_lines(accuracy_ax):
        assert list(line.get_xdata()) == steps
    by_colour = {to_hex(line.get_color()): line.get_ydata() for line in data_lines(angle_ax)}
    assert set(by_colour) == {rule_colour(r) for r in ("bp", "frfb", "urfb")}
    np.testing.assert_array_equal(by_colour[rule_colour("bp")], 0)  # bp sends Wᵀδ: 0° by definition
    assert np.mean(by_colour[rule_colour("urfb")]) == pytest.approx(ANGLE["urfb"], abs=1)
    assert "a claim" in [t.get_text() for t in fig.axes[2].texts]


def test_mean_used_angle_leaves_out_the_first_layer():
    point = {"layers": {"conv1": {"angle_RW": 90.0}, "dense1": {"angle_RW": 10.0}, "dense2": {"angle_RW": 30.0}}}
    assert plots.mean_used_angle(point) == 20.0
    assert np.isnan(plots.mean_used_angle({"step": 0}))


def test_depth_plot_from_plain_numbers(tmp_path):
    fig = plots.plot_depth_values(tmp_path / "d.png", {"urfb": {2: [0.8, 0.82], 6: [0.7, 0.75]},
                                                      "frfb": {2: [0.8, 0.79], 6: [0.5, 0.55]}})
    ax = fig.axes[0]
    assert list(ax.get_xticks()) == [2, 6]
    dots = {to_hex(c.get_facecolor()[0]) for c in ax.collections if len(c.get_offsets()) == 2}
    assert dots == {rule_colour("frfb"), rule_colour("urfb")}
