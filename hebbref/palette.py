"""One palette for the learning rules, used by every figure hebbref draws.

The tutorials, the theory report, ``hebbref compare`` and ``hebbref demo`` all take a
rule's colour from here, so that a reader who has learned "urfb is green" in one figure
reads every other figure the same way. The colours are the Okabe–Ito set, which stays
distinguishable under the common forms of colour blindness; the three rules of the
paper get the three most distinct of them.
"""

#: Colour of each rule, by the name that ``build_network(rule=...)`` takes.
RULE_COLOURS = {
    "bp": "#0072B2",     # blue: back-propagation, the reference
    "frfb": "#D55E00",   # vermillion: fixed random feedback
    "urfb": "#009E73",   # bluish green: updated random feedback, the paper's method
    "kp": "#CC79A7",     # reddish purple
    "usf": "#E69F00",    # orange
    "frsf": "#56B4E9",   # sky blue
    "brsf": "#8C564B",   # brown
    "dfa": "#7F7F7F",    # grey
    "wm": "#000000",     # black
}

#: Line style of each rule, a second cue for figures printed in grey.
RULE_LINESTYLES = {"bp": "-", "frfb": "--", "urfb": "-", "kp": "-.", "usf": ":",
                   "frsf": ":", "brsf": "-.", "dfa": "--", "wm": (0, (5, 1))}

#: The order in which rules appear in legends and tables.
RULE_ORDER = tuple(RULE_COLOURS)


def rule_colour(rule):
    """The colour of ``rule``; a rule without one of its own is drawn in dark grey."""
    return RULE_COLOURS.get(rule, "#333333")


def rule_linestyle(rule):
    """The line style of ``rule`` (solid for a rule without one of its own)."""
    return RULE_LINESTYLES.get(rule, "-")


def rule_sort_key(rule):
    """Sort key that puts rules in :data:`RULE_ORDER`, unknown ones last by name."""
    return (RULE_ORDER.index(rule), "") if rule in RULE_ORDER else (len(RULE_ORDER), rule)
