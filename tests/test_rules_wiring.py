"""Which matrix carries the error: perturbing a layer's R must change the increments below
it exactly when the rule says R carries the error (``Rule.feedback_uses_R``).  # SPEC §3, §9

This is the test that tells W from R on every layer kind. The symmetric-init identity
(urfb = bp) cannot: with R = W a layer that sent its error through W instead of R
would pass it. Here R and W differ, R is changed after the forward pass, and:
- the increments G of the perturbed layer and of every layer above it never change
  (nothing above depends on R, and a layer's own error arrives from above);
- the increment of the layer right below changes when the rule's B depends on R
  (frfb, urfb, kp, frsf, wm), and no increment below changes when it does not (bp,
  usf, brsf, dfa).
Layers: dense, tied conv, locally connected, sum blocks of either, odd and even kernels.
The numba backend is held to the same test; the CUDA kernels are, under the
simulator, in tests/test_cuda.py.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hebbref
from hebbref.rules import RULES

from strategies import ALL_RULES, LAYER_KINDS, SEEDS, layer_stacks, random_batch


def increments_after_perturbing(text, shape, n_classes, rule, seed, index, backend, dtype="float64"):
    """(G of every layer unperturbed, G of every layer with R of layer ``index`` perturbed)."""
    rng = np.random.default_rng(seed)
    x, y = random_batch(rng, shape, n_classes, batch=3)
    out = []
    for perturb in (False, True):
        net = hebbref.build_network(text, shape, n_classes, rule=rule, seed=seed, backend=backend, dtype=dtype)
        o = net.forward(x.astype(dtype), train=True)
        _, e = hebbref.get_loss("squared")(o, y)  # never all zero, unlike the hinge
        if perturb:
            R = net.parameters()[index].R
            R += np.random.default_rng(seed + 1).normal(size=R.shape).astype(dtype)  # changes signs and sizes
        net.backward(e.astype(dtype))
        out.append([p.G.copy() for p in net.parameters()])
    return out


def check_wiring(text, shape, n_classes, rule, seed, backend, dtype="float64"):
    uses_R = RULES[rule].feedback_uses_R
    n_weighted = len(hebbref.build_network(text, shape, n_classes, rule="bp", backend="numpy").parameters())
    for index in range(1, n_weighted):  # the first layer sends nothing down: nothing to see
        before, after = increments_after_perturbing(text, shape, n_classes, rule, seed, index, backend, dtype)
        for j in range(index, n_weighted):
            np.testing.assert_array_equal(after[j], before[j],
                                          err_msg=f"{rule} {text}: R of layer {index} changed G of layer {j} (at or above)")
        for j in range(index):
            changed = not np.array_equal(after[j], before[j])
            if not uses_R:
                assert not changed, f"{rule} {text}: B does not use R, yet R of layer {index} changed G of layer {j}"
            elif j == index - 1:
                assert changed, (f"{rule} {text}: the error goes down through R, yet changing R of layer "
                                 f"{index} left G of layer {j} (right below) unchanged")


@settings(max_examples=60, deadline=None)
@given(ALL_RULES, layer_stacks(), SEEDS)
def test_R_carries_the_error_exactly_when_the_rule_says(rule, arch, seed):
    check_wiring(*arch, rule, seed, backend="numpy")


@pytest.mark.parametrize("kind", LAYER_KINDS)
@pytest.mark.parametrize("rule", sorted(RULES))
@settings(max_examples=3, deadline=None)
@given(data=st.data())
def test_every_rule_on_every_layer_kind(rule, kind, data):
    """Every (rule, layer kind) pair at least a few times, whatever the draw above chose."""
    arch = data.draw(layer_stacks(kind))
    check_wiring(*arch, rule, data.draw(SEEDS), backend="numpy")


@settings(max_examples=15, deadline=None)
@given(ALL_RULES, layer_stacks(), SEEDS)
def test_the_numba_backend_is_wired_as_the_rule_says(rule, arch, seed):
    check_wiring(*arch, rule, seed, backend="numba")


def test_bp_ignores_R_and_frfb_uses_it_on_a_conv_stack():
    """A fixed case that reads like the property: flipping R of a conv layer."""
    text, shape = "conv3:2 ramp conv2:2 ramp out", (1, 5, 5)
    for rule, expect in (("bp", False), ("frfb", True)):
        before, after = increments_after_perturbing(text, shape, 3, rule, 0, 1, "numpy")
        assert (not np.array_equal(before[0], after[0])) == expect, rule
