"""The three rules of the paper are the same, bit for bit, as before rules became objects.

``tests/data/rule_trajectories.npz`` was written by this file's ``record()`` with the
code as it was before ``hebbref.rules`` held rule objects (commit cdf7044, string
rules with ``feedback_is_forward`` and ``feedback_rate_factor``): every W and R, and
every loss, after a few SGD steps of bp, frfb and urfb on a dense net, a
``simple``-like conv net, its untied twin and a net of sum blocks, on the NumPy
backend in float64 and the Numba backend in float32 (run on one thread: with more,
a parallel sum may change order). Any change to the rules' code must leave these
arrays exactly equal.

Bit-for-bit equality is only meaningful on a machine whose arithmetic sums in the
order of the one that wrote the file (another CPU may make OpenBLAS pick another
kernel). The file therefore also holds a fingerprint: a few of the layers' products
on fixed data. Where the fingerprint matches, equality is exact; where it does not,
the test says so and holds the trajectory to 1e-12 (float64) and 1e-5 (float32)
relative instead, which still catches any change of rule.

To rewrite the file (only when the arithmetic is meant to change):

    PYTHONPATH=. python tests/test_rules_trajectory.py
"""
from pathlib import Path

import numpy as np
import pytest

import hebbref

from comparisons import assert_close

PATH = Path(__file__).parent / "data" / "rule_trajectories.npz"
NETS = {
    "dense": ("dense8 ramp dense6 ramp out", False),
    "simple": ("conv5:3 ramp pool3s2 drop0.5 dense10 ramp drop0.3 out", False),
    "untied": ("conv3:2 ramp pool3s2 drop0.5 dense6 ramp drop0.3 out", True),
    "sum": ("sum[conv3:2,conv3:2] pool2 drop0.5 sum[conv2:3,conv2:3] pool2 dense8 ramp out", False),
}
RULES = ("bp", "frfb", "urfb")
BACKENDS = (("numpy", "float64"), ("numba", "float32"))
SHAPE, CLASSES, STEPS = (1, 6, 6), 4, 4


def fingerprint():
    """The products the trajectories are made of, on fixed data, in both backends' arithmetic."""
    rng = np.random.default_rng(0)
    out = {}
    for backend, dtype in BACKENDS:
        ops = hebbref.get_backend(backend)
        x = rng.random((2, 2, 6, 6)).astype(dtype)
        W = rng.normal(size=(3, 2, 3, 3)).astype(dtype)
        Wl = rng.normal(size=(6, 6, 3, 2, 3, 3)).astype(dtype)
        delta = rng.normal(size=(2, 3, 6, 6)).astype(dtype)
        with one_thread():
            h, cache = ops.conv_forward(x, W)
            hl, cache_l = ops.locally_connected_forward(x, Wl)
            out[backend] = np.concatenate([
                h.ravel(), ops.conv_input_error(delta, cache, W).ravel(),
                ops.conv_weight_increment(delta, cache).ravel(), hl.ravel(),
                ops.locally_connected_input_error(delta, cache_l, Wl).ravel(),
                ops.locally_connected_weight_increment(delta, cache_l).ravel(),
                (x.reshape(2, -1) @ rng.random((72, 10)).astype(dtype)).ravel(),
            ])
    return out


class one_thread:
    """Numba's parallel loops on one thread for the duration (their sums then have one order)."""

    def __enter__(self):
        import numba

        self.numba, self.before = numba, numba.get_num_threads()
        numba.set_num_threads(1)

    def __exit__(self, *exc):
        self.numba.set_num_threads(self.before)


def trajectory(net_key, rule, backend, dtype):
    """{array name: array} after STEPS steps: every W and R and the losses."""
    with one_thread():
        return _trajectory(net_key, rule, backend, dtype)


def _trajectory(net_key, rule, backend, dtype):
    text, untied = NETS[net_key]
    net = hebbref.build_network(text, SHAPE, CLASSES, rule=rule, untied=untied, seed=3, dtype=dtype,
                                backend=backend)
    rng = np.random.default_rng(11)
    losses = []
    for _ in range(STEPS):
        x = rng.random((5,) + SHAPE).astype(dtype)
        y = rng.integers(0, CLASSES, size=5)
        losses.append(net.train_step(x, y, lr=0.3, loss="hinge"))
    arrays = {"loss": np.array(losses)}
    for p in net.parameters():
        arrays[f"{p.name}.W"], arrays[f"{p.name}.R"] = p.W, p.R
    return arrays


def cases():
    return [(n, r, b, d) for n in NETS for r in RULES for b, d in BACKENDS]


def record():
    out = {}
    for net_key, rule, backend, dtype in cases():
        for name, value in trajectory(net_key, rule, backend, dtype).items():
            out[f"{net_key}/{rule}/{backend}/{name}"] = value
    for backend, value in fingerprint().items():
        out[f"fingerprint/{backend}"] = value
    np.savez_compressed(PATH, **out)


@pytest.mark.parametrize("net_key,rule,backend,dtype", cases())
def test_paper_rules_follow_the_saved_trajectory_bit_for_bit(net_key, rule, backend, dtype):
    saved = np.load(PATH)
    now = trajectory(net_key, rule, backend, dtype)
    prefix = f"{net_key}/{rule}/{backend}/"
    assert sorted(now) == sorted(k[len(prefix):] for k in saved.files if k.startswith(prefix))
    exact = np.array_equal(fingerprint()[backend], saved[f"fingerprint/{backend}"])
    for name, value in now.items():
        if exact:
            np.testing.assert_array_equal(value, saved[prefix + name],
                                          err_msg=f"{prefix}{name} differs from the saved trajectory")
        else:  # this machine's arithmetic differs from the recording machine's: see the docstring
            assert_close(value, saved[prefix + name], 1e-12 if dtype == "float64" else 1e-5,
                         f"{prefix}{name} (this machine sums in another order; compared to a tolerance)")


if __name__ == "__main__":
    record()
