"""Draw the front page's picture: the forward pathway W and the feedback pathway R.

    python docs/pathways.py OUT.png

Two weighted layers of a network, drawn as in SPEC §2-§3: activities go up through W,
the error comes down through R (through W itself under bp), and both matrices change by
the same Hebbian product G = Σ δ xᵀ of the activities at the two ends of a synapse.
The rule colours come from hebbref.palette, as in every other figure.
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from hebbref.palette import rule_colour  # noqa: E402

FORWARD = "#333333"
FEEDBACK = rule_colour("urfb")
HEBBIAN = rule_colour("frfb")


def box(ax, x, y, text, colour, width=1.9, height=0.62):
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                                boxstyle="round,pad=0.03,rounding_size=0.12",
                                facecolor="white", edgecolor=colour, linewidth=1.6))
    ax.text(x, y, text, ha="center", va="center", fontsize=12, color=colour)


def arrow(ax, start, end, colour, label, side, style="-|>", linestyle="-"):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=16, color=colour,
                                 linewidth=1.8, linestyle=linestyle, shrinkA=18, shrinkB=18))
    x = (start[0] + end[0]) / 2 + (0.18 if side == "right" else -0.18)
    y = (start[1] + end[1]) / 2
    ax.text(x, y, label, ha="left" if side == "right" else "right", va="center",
            fontsize=12, color=colour)


def draw(path):
    fig, ax = plt.subplots(figsize=(8.6, 4.8))
    ax.set_xlim(-0.6, 10.4)
    ax.set_ylim(-0.7, 4.9)
    ax.axis("off")
    forward_x, feedback_x = 1.6, 5.0
    levels = [0.0, 2.0, 4.0]
    names_up = [r"$x_0$  (input)", r"$x_1 = \sigma(h_1)$", r"$o = h_2$"]
    names_down = [r"$e_0$", r"$\delta_1 = e_1 \odot \sigma'(h_1)$", r"$\delta_2 = e_2 = \partial\ell/\partial o$"]
    for y, up, down in zip(levels, names_up, names_down):
        box(ax, forward_x, y, up, FORWARD, width=2.3)
        box(ax, feedback_x, y, down, FEEDBACK, width=2.7)
    for layer, (low, high) in enumerate(zip(levels, levels[1:]), start=1):
        arrow(ax, (forward_x, low), (forward_x, high), FORWARD, rf"$W_{layer}$", "left")
        arrow(ax, (feedback_x, high), (feedback_x, low), FEEDBACK, rf"$R_{layer}^\top$", "right")
        # the Hebbian increment joins the two ends of the synapse: x below, δ above
        ax.add_patch(FancyArrowPatch((forward_x + 1.15, low + 0.2), (feedback_x - 1.35, high - 0.2),
                                     arrowstyle="-", color=HEBBIAN, linewidth=1.2, linestyle=(0, (3, 3))))
        ax.text((forward_x + feedback_x) / 2 - 0.1, (low + high) / 2, rf"$G_{layer} = \Sigma\, \delta_{layer} x_{layer - 1}^\top$",
                ha="center", va="center", fontsize=10.5, color=HEBBIAN,
                bbox=dict(facecolor="white", edgecolor="none", pad=1.5))
    ax.text(forward_x, 4.65, "forward pathway W", ha="center", fontsize=12, weight="bold", color=FORWARD)
    ax.text(feedback_x, 4.65, "feedback pathway R", ha="center", fontsize=12, weight="bold", color=FEEDBACK)
    rules = [
        ("bp", "error down through Wᵀ; R unused"),
        ("frfb", "error down through Rᵀ; R fixed"),
        ("urfb", "error down through Rᵀ; R ← R − η G"),
    ]
    ax.text(6.75, 3.55, "every rule: W ← W − η G", fontsize=11.5, color=FORWARD)
    for i, (rule, text) in enumerate(rules):
        y = 2.75 - 0.62 * i
        ax.text(6.75, y, rule, fontsize=11.5, weight="bold", color=rule_colour(rule))
        ax.text(7.55, y, text, fontsize=10, color=FORWARD, va="baseline")
    ax.text(6.75, 0.55, "under urfb, R − W never changes:\nR = W at the start is back-propagation",
            fontsize=10, color=FORWARD, va="top")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.split("\n\n")[1])
    draw(sys.argv[1])
