"""The facts of SPEC §1 that follow exactly from the rules, on random small networks.

- urfb with symmetric init (R = W) follows the bp trajectory step by step;
- urfb conserves R - W in every layer, tied and untied;
- frfb never changes R, bit for bit.
Dropout is included: two networks with one seed draw the same masks.
"""
import numpy as np
from hypothesis import given, settings

import hebbref
from hebbref.rules import RULES, feedback_matrix, feedback_update, forward_update

from comparisons import assert_close
from strategies import LOSS_NAMES, SEEDS, random_batch, small_architectures

STEPS = 5


def train(net, batches, loss):
    for x, y in batches:
        net.train_step(x, y, lr=0.2, loss=loss)


def batches_for(arch, seed, n=STEPS):
    _, shape, n_classes = arch
    rng = np.random.default_rng(seed)
    return [random_batch(rng, shape, n_classes, batch=3) for _ in range(n)]


@settings(max_examples=25, deadline=None)
@given(small_architectures(), SEEDS, LOSS_NAMES)
def test_urfb_with_symmetric_init_is_backprop(arch, seed, loss):
    text, shape, n_classes = arch
    bp = hebbref.build_network(text, shape, n_classes, rule="bp", init="random", seed=seed, backend="numpy")
    urfb = hebbref.build_network(text, shape, n_classes, rule="urfb", init="symmetric", seed=seed,
                                 backend="numpy")
    for x, y in batches_for(arch, seed):
        loss_bp = bp.train_step(x, y, lr=0.2, loss=loss)
        loss_urfb = urfb.train_step(x, y, lr=0.2, loss=loss)
        assert abs(loss_bp - loss_urfb) <= 1e-10 * max(1.0, abs(loss_bp))
        for p, q in zip(bp.parameters(), urfb.parameters()):
            assert_close(q.W, p.W, 1e-10, f"{text}: W of {p.name} (urfb+symmetric vs bp)")
            assert_close(q.R, q.W, 1e-10, f"{text}: R of {p.name} stays equal to W")


@settings(max_examples=25, deadline=None)
@given(small_architectures(), SEEDS, LOSS_NAMES)
def test_urfb_conserves_R_minus_W(arch, seed, loss):
    text, shape, n_classes = arch
    net = hebbref.build_network(text, shape, n_classes, rule="urfb", seed=seed, backend="numpy")
    start = [p.R - p.W for p in net.parameters()]
    start_W = [p.W.copy() for p in net.parameters()]
    train(net, batches_for(arch, seed), loss)
    for p, D, W0 in zip(net.parameters(), start, start_W):
        assert_close(p.R - p.W, D, 1e-10, f"{text}: R - W of {p.name}")
    # and it was not conserved trivially: some weights moved
    assert any(not np.array_equal(p.W, W0) for p, W0 in zip(net.parameters(), start_W))


@settings(max_examples=25, deadline=None)
@given(small_architectures(), SEEDS, LOSS_NAMES)
def test_frfb_leaves_R_bit_for_bit_unchanged(arch, seed, loss):
    text, shape, n_classes = arch
    net = hebbref.build_network(text, shape, n_classes, rule="frfb", seed=seed, backend="numpy")
    start = [p.R.copy() for p in net.parameters()]
    train(net, batches_for(arch, seed), loss)
    for p, R0 in zip(net.parameters(), start):
        np.testing.assert_array_equal(p.R, R0, err_msg=f"{text}: R of {p.name} changed under frfb")


def test_untied_deep_network_conserves_R_minus_W():
    net = hebbref.build_network("deep", (1, 12, 12), 4, rule="urfb", untied=True, seed=0,
                                untied_init="independent", backend="numpy")
    start = [p.R - p.W for p in net.parameters()]
    rng = np.random.default_rng(0)
    for _ in range(3):
        net.train_step(*random_batch(rng, (1, 12, 12), 4, batch=4), lr=0.5)
    for p, D in zip(net.parameters(), start):
        assert p.W.ndim in (2, 6)
        assert_close(p.R - p.W, D, 1e-10, f"untied deep: R - W of {p.name}")


def test_the_three_rules_differ_only_in_feedback_and_its_rate():
    W, R, G = np.ones(3), np.full(3, 2.0), np.array([1.0, -1.0, 0.5])
    assert feedback_matrix(W, R, "bp") is W
    assert feedback_matrix(W, R, "frfb") is R and feedback_matrix(W, R, "urfb") is R
    for name, expected_R in [("bp", R), ("frfb", R), ("urfb", R - 0.1 * G)]:
        W1, R1 = W.copy(), R.copy()
        forward_update(W1, G, 0.1)
        feedback_update(R1, G, 0.1, name)
        np.testing.assert_allclose(W1, W - 0.1 * G, rtol=0, atol=1e-15)
        np.testing.assert_allclose(R1, expected_R, rtol=0, atol=1e-15)
    assert {"bp", "frfb", "urfb"} <= set(RULES)


def test_rule_decides_which_matrix_carries_the_error():
    """frfb and urfb send the error through R: changing R changes the first layer's step."""
    kwargs = dict(input_shape=(4,), n_classes=3, seed=0, backend="numpy")
    x, y = random_batch(np.random.default_rng(0), (4,), 3, batch=5)
    a = hebbref.build_network("dense6 ramp out", rule="frfb", **kwargs)
    b = hebbref.build_network("dense6 ramp out", rule="frfb", **kwargs)
    b.parameters()[1].R[...] *= -1.0
    a.train_step(x, y)
    b.train_step(x, y)
    assert not np.allclose(a.parameters()[0].W, b.parameters()[0].W)
    np.testing.assert_array_equal(a.parameters()[1].W, b.parameters()[1].W)


def test_the_three_rule_flags_still_describe_the_paper_rules():
    """feedback_is_forward and feedback_rate_factor, which code written for the three-rule table reads."""
    assert [RULES[n].feedback_is_forward for n in ("bp", "frfb", "urfb")] == [True, False, False]
    assert [RULES[n].feedback_rate_factor for n in ("bp", "frfb", "urfb", "kp")] == [0.0, 0.0, 1.0, 1.0]
