"""Weight initialisation (SPEC §3): Glorot uniform, W and R drawn independently.

    W, R ~ U(-a, a),   a = sqrt(6 / (fan_in + fan_out))

For a conv filter (C_out, C_in, k, k): fan_in = k·k·C_in, fan_out = k·k·C_out.
The ``symmetric`` initialisation copies W into R (Zipser and Rumelhart 1990), after
which ``urfb`` is exactly back-propagation.
"""
import numpy as np

from .errors import choose

INITS = ("random", "symmetric")


def glorot_limit(fan_in, fan_out):
    """a = sqrt(6 / (fan_in + fan_out))."""
    return np.sqrt(6.0 / (fan_in + fan_out))


def glorot_uniform(rng, shape, fan_in, fan_out, dtype):
    """One Glorot-uniform draw of the given shape."""
    a = glorot_limit(fan_in, fan_out)
    return rng.uniform(-a, a, size=shape).astype(dtype)


def check_init(init):
    """Raise a ConfigError unless ``init`` is 'random' or 'symmetric'."""
    return choose("init", init, {k: k for k in INITS})
