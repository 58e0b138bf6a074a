"""The property that pins each rule of the family (SPEC §9), on dense, conv, locally
connected and sum-block layers (``small_architectures`` mixes them all).

- bp:   B = W, R never touched;
- frfb: B = R, R never touched (more in test_rules.py);
- urfb: R gets W's increment (test_rules.py: R - W conserved, symmetric init = bp);
- kp:   R - W = (1 - ηλ)ᵗ (R(0) - W(0)); with λ = 0 it is urfb bit for bit;
- usf:  the increments equal those of a network whose feedback is s·sign(W) computed by hand;
- frsf: sign(B) = sign(W), |B| = |R|, R fixed;  brsf: sign(B) = sign(W), B fresh each batch;
- dfa:  a hidden layer's δ is (F e_L) ⊙ σ'(h): the weights above reach it only through e_L;
- wm:   the mirror step turns R toward a positive multiple of W (the angle falls).
"""
import numpy as np
import pytest
from hypothesis import given, settings

import hebbref
from hebbref.experiments.probes import angle_degrees
from hebbref.rules import RULES, Rule, make_rule, sign_scale

from comparisons import assert_close
from strategies import LOSS_NAMES, SEEDS, random_batch, small_architectures

STEPS = 4


def batches_for(arch, seed, n=STEPS):
    _, shape, n_classes = arch
    rng = np.random.default_rng(seed)
    return [random_batch(rng, shape, n_classes, batch=3) for _ in range(n)]


def build(arch, rule, seed, **kwargs):
    text, shape, n_classes = arch
    return hebbref.build_network(text, shape, n_classes, rule=rule, seed=seed, backend="numpy", **kwargs)


@settings(max_examples=20, deadline=None)
@given(small_architectures(), SEEDS, LOSS_NAMES)
def test_bp_sends_through_W_and_never_touches_R(arch, seed, loss):
    net = build(arch, "bp", seed)
    R0 = [p.R.copy() for p in net.parameters()]
    for x, y in batches_for(arch, seed):
        net.train_step(x, y, lr=0.2, loss=loss, weight_decay=0.1)
        for p in net.parameters()[1:]:
            assert p.feedback is p.W
    for p, R in zip(net.parameters(), R0):
        np.testing.assert_array_equal(p.R, R)


@settings(max_examples=20, deadline=None)
@given(small_architectures(), SEEDS, LOSS_NAMES)
def test_kp_shrinks_R_minus_W_geometrically(arch, seed, loss):
    eta, lam = 0.2, 0.3
    net = build(arch, "kp", seed)
    D0 = [p.R - p.W for p in net.parameters()]
    for x, y in batches_for(arch, seed):
        net.train_step(x, y, lr=eta, loss=loss, weight_decay=lam)
    for p, D in zip(net.parameters(), D0):
        assert_close(p.R - p.W, (1 - eta * lam) ** STEPS * D, 1e-10, f"{arch[0]}: R - W of {p.name} under kp")


@settings(max_examples=20, deadline=None)
@given(small_architectures(), SEEDS, LOSS_NAMES)
def test_kp_without_decay_is_urfb_bit_for_bit(arch, seed, loss):
    kp, urfb = build(arch, "kp", seed), build(arch, "urfb", seed)
    for x, y in batches_for(arch, seed):
        assert kp.train_step(x, y, lr=0.2, loss=loss) == urfb.train_step(x, y, lr=0.2, loss=loss)
    for p, q in zip(kp.parameters(), urfb.parameters()):
        np.testing.assert_array_equal(p.W, q.W)
        np.testing.assert_array_equal(p.R, q.R)


@settings(max_examples=20, deadline=None)
@given(small_architectures(), SEEDS)
def test_weight_decay_decays_W_under_every_rule_and_R_only_under_kp(arch, seed):
    """With a zero increment (G = 0) one step is pure decay: W ← (1 - ηλ) W; R likewise under kp only."""
    eta, lam = 0.5, 0.2
    for name in RULES:
        net = build(arch, name, seed)
        W0, R0 = [p.W.copy() for p in net.parameters()], [p.R.copy() for p in net.parameters()]
        for p in net.parameters():
            p.G = np.zeros_like(p.W)
        if name == "wm":
            net.rule.mirror_rate = 0.0  # the mirror step is tested on its own below
        net.update(eta, weight_decay=lam)
        for p, W, R in zip(net.parameters(), W0, R0):
            assert_close(p.W, (1 - eta * lam) * W, 1e-12, f"{name}: W of {p.name}")
            assert_close(p.R, (1 - eta * lam) * R if name == "kp" else R, 1e-12, f"{name}: R of {p.name}")


class HandFeedback(Rule):
    """A rule written in the test: B = s·sign(W), s = ‖W‖/√(nonzeros), computed from scratch."""

    name = "hand"

    def feedback(self, W, R):
        s = np.sqrt((W.astype(np.float64) ** 2).sum() / max(np.count_nonzero(W), 1))
        return (s * np.sign(W)).astype(W.dtype)


@settings(max_examples=20, deadline=None)
@given(small_architectures(), SEEDS, LOSS_NAMES)
def test_usf_sends_the_error_through_s_sign_W(arch, seed, loss):
    usf, hand = build(arch, "usf", seed), build(arch, HandFeedback(), seed)
    for x, y in batches_for(arch, seed):
        usf.train_step(x, y, lr=0.2, loss=loss)
        hand.train_step(x, y, lr=0.2, loss=loss)
        for p, q in zip(usf.parameters(), hand.parameters()):
            assert_close(p.W, q.W, 1e-10, f"{arch[0]}: W of {p.name}, usf vs s·sign(W) by hand")
    for p in usf.parameters():
        B = usf.rule.feedback(p.W, p.R)
        assert_close(np.linalg.norm(B), np.linalg.norm(p.W), 1e-12, f"usf: ‖B‖ = ‖W‖ in {p.name}")
        assert sign_scale(p.W) > 0


@settings(max_examples=20, deadline=None)
@given(small_architectures(), SEEDS, LOSS_NAMES)
def test_frsf_and_brsf_feedback_has_the_signs_of_W(arch, seed, loss):
    for name in ("frsf", "brsf"):
        net = build(arch, name, seed)
        R0 = [p.R.copy() for p in net.parameters()]
        previous = None
        for x, y in batches_for(arch, seed):
            net.train_step(x, y, lr=0.2, loss=loss)
            senders = net.parameters()[1:]
            for p in senders:
                # the feedback was taken before the update: compare with the W of that moment
                W_then = p.W + 0.2 * p.G
                np.testing.assert_array_equal(np.sign(p.feedback), np.sign(W_then),
                                              err_msg=f"{name}: signs of B in {p.name}")
                if name == "frsf":
                    np.testing.assert_array_equal(np.abs(p.feedback), np.abs(p.R) * (W_then != 0))
            now = [np.abs(p.feedback) for p in senders]
            if name == "brsf" and previous is not None and senders:
                assert any(not np.array_equal(a, b) for a, b in zip(now, previous)), "brsf: B not fresh"
            previous = now
        for p, R in zip(net.parameters(), R0):
            np.testing.assert_array_equal(p.R, R, err_msg=f"{name}: R changed")


@settings(max_examples=20, deadline=None)
@given(small_architectures(), SEEDS, LOSS_NAMES)
def test_dfa_hidden_errors_depend_on_the_weights_above_only_through_e_L(arch, seed, loss):
    text, shape, n_classes = arch
    x, y = batches_for(arch, seed, n=1)[0]
    deltas = []
    for perturb in (False, True):
        net = build(arch, "dfa", seed)
        o = net.forward(x, train=True)
        _, e_L = hebbref.get_loss(loss)(o, y)
        if perturb:  # after the forward pass: every W and R changes, e_L does not
            for p in net.parameters():
                p.W += 1.0
                p.R -= 1.0
        net.backward(e_L)
        deltas.append([p.delta.copy() for p in net.parameters()])
        *hidden, output = net.parameters()
        np.testing.assert_array_equal(output.delta, e_L)  # the output layer: δ_L = e_L
        for p in hidden:  # δ_l = (F_l e_L) ⊙ σ'(h_l), by hand
            e = (e_L @ net.rule.F[p.name].T).reshape(p.delta.shape)
            ramp = net._activations[p.name]
            expected = e if ramp is None else e * (np.abs(ramp.slope * ramp.h) <= 1) * ramp.slope
            assert_close(p.delta, expected, 1e-12, f"dfa: δ of {p.name}")
    for a, b in zip(*deltas):
        np.testing.assert_array_equal(a, b)


def test_dfa_feedback_matrices_have_the_documented_shapes():
    net = hebbref.build_network("conv3:4 ramp pool2 lc2:3 ramp dense7 ramp out", (1, 6, 6), 5, rule="dfa",
                                backend="numpy")
    shapes = {name: F.shape for name, F in net.rule.F.items()}
    assert shapes == {"conv1": (4 * 6 * 6, 5), "lc1": (3 * 3 * 3, 5), "dense1": (7, 5)}


@pytest.mark.parametrize("text,shape", [
    ("dense6 out", (5,)),
    ("conv3:3 ramp out", (2, 4, 4)),
    ("conv2:3 ramp out", (2, 4, 4)),
    ("lc3:2 ramp out", (1, 4, 4)),
    ("sum[conv3:2,lc2:2] out", (1, 3, 3)),
])
def test_the_weight_mirror_turns_R_toward_a_positive_multiple_of_W(text, shape):
    """On the taps a layer uses: an untied filter at the border has taps that only ever
    meet the zero padding; they act neither forward nor backward, and the mirror only
    decays them."""
    net = hebbref.build_network(text, shape, 3, rule="wm", seed=4, backend="numpy")
    for p in net.parameters():
        if p.kind == "dense":
            used = np.ones(p.W.shape, bool)
        else:  # the taps whose increment is ever nonzero: δ = 1 everywhere, x = 1 everywhere
            x = np.ones((1, p.W.shape[-3]) + p.output_shape[1:])
            used = p._weight_increment(np.ones((1,) + p.output_shape), p._forward(x, p.W)[1]) != 0
        start = angle_degrees(p.R[used], p.W[used])
        angles = []
        for _ in range(60):
            net.rule.mirror(p)
            angles.append(angle_degrees(p.R[used], p.W[used]))
        assert 40 < start < 140, f"{p.name}: R and W start unrelated ({start:.1f}°)"
        assert angles[-1] < 25 and angles[-1] < angles[9] < start, f"{p.name}: angles {angles[::10]}"
        # R ≈ c W with c > 0: the best multiple is positive (σ²/λ_m = 1 here)
        c = float((p.R[used] * p.W[used]).sum() / (p.W[used] ** 2).sum())
        assert c > 0.5, f"{p.name}: R ≈ {c:.2f} W"


def test_wm_runs_its_mirror_after_every_SGD_step_and_only_then():
    net = hebbref.build_network("dense6 ramp out", (5,), 3, rule="wm", seed=0, backend="numpy")
    x, y = random_batch(np.random.default_rng(0), (5,), 3, batch=4)
    R0 = [p.R.copy() for p in net.parameters()]
    o = net.forward(x, train=True)
    net.backward(hebbref.get_loss("squared")(o, y)[1])
    for p, R in zip(net.parameters(), R0):
        np.testing.assert_array_equal(p.R, R)  # the backward pass leaves R alone
    net.update(0.1)
    assert all(not np.array_equal(p.R, R) for p, R in zip(net.parameters(), R0))


def test_every_rule_has_a_name_a_summary_and_its_lineage():
    assert list(RULES) == ["bp", "frfb", "urfb", "kp", "usf", "frsf", "brsf", "dfa", "wm"]
    for name, cls in RULES.items():
        assert cls.name == name and cls.summary and "\n" not in cls.summary
        assert "Lineage" in cls.__doc__, f"{name}: say where the rule comes from"
        assert make_rule(name).name == name


def test_a_rule_object_or_class_is_accepted_and_a_bad_name_is_a_config_error():
    net = hebbref.build_network("dense3 out", (4,), 2, rule=RULES["kp"], backend="numpy")
    assert net.rule.name == "kp"
    rule = RULES["usf"]()
    assert hebbref.build_network("dense3 out", (4,), 2, rule=rule, backend="numpy").rule is rule
    with pytest.raises(hebbref.ConfigError, match="unknown rule 'fa'"):
        hebbref.build_network("dense3 out", (4,), 2, rule="fa", backend="numpy")
    with pytest.raises(hebbref.ConfigError, match="weight_decay"):
        net.train_step(np.zeros((1, 4)), [0], weight_decay=-1)


@pytest.mark.parametrize("rule", ["brsf", "wm"])
def test_a_rule_with_a_random_stream_resumes_bit_for_bit_from_state(rule):
    """brsf and wm draw during training: their stream is part of the network's state."""
    kwargs = dict(input_shape=(5,), n_classes=3, rule=rule, seed=2, backend="numpy")
    rng = np.random.default_rng(1)
    batches = [random_batch(rng, (5,), 3, batch=4) for _ in range(4)]
    whole = hebbref.build_network("dense6 ramp dense4 ramp out", **kwargs)
    for x, y in batches:
        whole.train_step(x, y)
    first = hebbref.build_network("dense6 ramp dense4 ramp out", **kwargs)
    for x, y in batches[:2]:
        first.train_step(x, y)
    second = hebbref.build_network("dense6 ramp dense4 ramp out", **kwargs)
    second.load_state(first.state())
    for x, y in batches[2:]:
        second.train_step(x, y)
    for p, q in zip(whole.parameters(), second.parameters()):
        np.testing.assert_array_equal(p.W, q.W)
        np.testing.assert_array_equal(p.R, q.R)


@pytest.mark.parametrize("text,shape", [
    ("dense6 out", (5,)),
    ("conv3:3 ramp out", (2, 4, 4)),
    ("conv2:3 ramp out", (2, 4, 4)),
    ("lc3:2 ramp out", (1, 4, 4)),
])
def test_the_mirror_product_estimates_sigma_squared_W_on_every_used_tap(text, shape):
    """E⟨y ξᵀ⟩ = σ² W: with η_m = λ_m = 1 one mirror step sets R to the estimate itself."""
    rule = RULES["wm"](mirror_rate=1.0, mirror_decay=1.0, noise=0.5, mirror_batch=40000)
    net = hebbref.build_network(text, shape, 3, rule=rule, seed=1, backend="numpy")
    p = net.parameters()[0]
    rule.mirror(p)
    if p.kind == "lc":  # interior location: every tap meets the input
        R, W = p.R[1, 1], p.W[1, 1]
    else:
        R, W = p.R, p.W
    assert_close(R, 0.25 * W, 0.06, f"{text}: the mirror's estimate of σ² W", atol=0.03 * 0.25 * np.abs(W).max())


def test_one_rule_object_given_to_two_networks_is_copied_for_the_second():
    rule = RULES["dfa"]()
    a = hebbref.build_network("dense4 ramp out", (3,), 2, rule=rule, seed=0, backend="numpy")
    F = a.rule.F["dense1"].copy()
    b = hebbref.build_network("dense4 ramp out", (3,), 2, rule=rule, seed=5, backend="numpy")
    assert a.rule is rule and b.rule is not rule and b.rule.network is b
    np.testing.assert_array_equal(a.rule.F["dense1"], F)
    assert not np.array_equal(b.rule.F["dense1"], F)


def test_probing_a_brsf_network_does_not_move_its_random_stream():
    from hebbref.experiments.probes import probe

    kwargs = dict(input_shape=(5,), n_classes=3, rule="brsf", seed=2, backend="numpy")
    rng = np.random.default_rng(1)
    batches = [random_batch(rng, (5,), 3, batch=4) for _ in range(3)]
    plain, probed = (hebbref.build_network("dense6 ramp dense4 ramp out", **kwargs) for _ in range(2))
    for x, y in batches:
        plain.train_step(x, y)
        probed.train_step(x, y)
        probe(probed, x, y)
    for p, q in zip(plain.parameters(), probed.parameters()):
        np.testing.assert_array_equal(p.W, q.W)
