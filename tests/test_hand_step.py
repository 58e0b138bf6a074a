"""One SGD step of a tiny network, worked out by hand (SPEC §3, §4), for urfb and bp.

Network "dense2 ramp out": x (2) -> h1 = W1 x -> x1 = σ(h1) = clip(0.5 h1, -1, 1) -> o = W2 x1.
Batch of one, x = [1, 2], label y = 0, C = 2 classes, hinge with μ = 1, η = 0.1.

    W1 = [[0.5, -0.25], [0.25, 0.5]]     R1 = [[1, 0], [0, 1]]
    W2 = [[1, -1], [0.5, 0.5]]           R2 = [[0.5, 0], [0, 0.5]]

Forward:
    h1 = W1 x = [0.5 - 0.5, 0.25 + 1] = [0, 1.25]
    x1 = clip(0.5 h1) = [0, 0.625]
    o  = W2 x1 = [0 - 0.625, 0 + 0.3125] = [-0.625, 0.3125]
Loss (off-class factor μ/(C-1) = 1):
    ℓ = max(0, 1 - o_0) + max(0, 1 + o_1) = 1.625 + 1.3125 = 2.9375
    e_L = [-1 (o_0 < 1), +1 (o_1 > -1)]                       (B = 1)
Top layer (σ' = 1, δ2 = e_L):
    G2 = δ2 x1ᵀ = [[-1·0, -1·0.625], [1·0, 1·0.625]] = [[0, -0.625], [0, 0.625]]
Error sent down (urfb: through R2):
    e1 = R2ᵀ δ2 = [0.5·(-1) + 0·1, 0·(-1) + 0.5·1] = [-0.5, 0.5]
    σ'(h1) = [0.5, 0.5]  (|0.5·0| <= 1 and |0.5·1.25| <= 1)
    δ1 = e1 ⊙ σ'(h1) = [-0.25, 0.25]
    G1 = δ1 xᵀ = [[-0.25, -0.5], [0.25, 0.5]]
Updates, η = 0.1 (urfb: R gets the same increment as W):
    W2 ← [[1, -1 + 0.0625], [0.5, 0.5 - 0.0625]] = [[1, -0.9375], [0.5, 0.4375]]
    R2 ← [[0.5, 0.0625], [0, 0.4375]]
    W1 ← [[0.5 + 0.025, -0.25 + 0.05], [0.25 - 0.025, 0.5 - 0.05]] = [[0.525, -0.2], [0.225, 0.45]]
    R1 ← [[1.025, 0.05], [-0.025, 0.95]]
Under bp the error goes down through W2 instead:
    e1 = W2ᵀ δ2 = [1·(-1) + 0.5·1, -1·(-1) + 0.5·1] = [-0.5, 1.5]
    δ1 = [-0.25, 0.75];  G1 = [[-0.25, -0.5], [0.75, 1.5]]
    W1 ← [[0.525, -0.2], [0.175, 0.35]];  R1 and R2 unchanged.
"""
import numpy as np
import pytest

import hebbref

X = np.array([[1.0, 2.0]])
Y = np.array([0])


def tiny_network(rule):
    net = hebbref.build_network("dense2 ramp out", (2,), 2, rule=rule, backend="numpy")
    layer1, layer2 = net.parameters()
    layer1.W[...] = [[0.5, -0.25], [0.25, 0.5]]
    layer1.R[...] = [[1.0, 0.0], [0.0, 1.0]]
    layer2.W[...] = [[1.0, -1.0], [0.5, 0.5]]
    layer2.R[...] = [[0.5, 0.0], [0.0, 0.5]]
    return net


def test_forward_by_hand():
    np.testing.assert_allclose(tiny_network("urfb").forward(X), [[-0.625, 0.3125]], rtol=0, atol=1e-15)


def test_urfb_step_by_hand():
    net = tiny_network("urfb")
    assert net.train_step(X, Y, lr=0.1, loss="hinge") == pytest.approx(2.9375, abs=1e-15)
    layer1, layer2 = net.parameters()
    np.testing.assert_allclose(layer2.G, [[0.0, -0.625], [0.0, 0.625]], atol=1e-15)
    np.testing.assert_allclose(layer1.delta, [[-0.25, 0.25]], atol=1e-15)
    np.testing.assert_allclose(layer1.G, [[-0.25, -0.5], [0.25, 0.5]], atol=1e-15)
    np.testing.assert_allclose(layer2.W, [[1.0, -0.9375], [0.5, 0.4375]], atol=1e-15)
    np.testing.assert_allclose(layer2.R, [[0.5, 0.0625], [0.0, 0.4375]], atol=1e-15)
    np.testing.assert_allclose(layer1.W, [[0.525, -0.2], [0.225, 0.45]], atol=1e-15)
    np.testing.assert_allclose(layer1.R, [[1.025, 0.05], [-0.025, 0.95]], atol=1e-15)


def test_bp_step_by_hand():
    net = tiny_network("bp")
    net.train_step(X, Y, lr=0.1, loss="hinge")
    layer1, layer2 = net.parameters()
    np.testing.assert_allclose(layer1.delta, [[-0.25, 0.75]], atol=1e-15)
    np.testing.assert_allclose(layer1.W, [[0.525, -0.2], [0.175, 0.35]], atol=1e-15)
    np.testing.assert_allclose(layer2.W, [[1.0, -0.9375], [0.5, 0.4375]], atol=1e-15)
    np.testing.assert_array_equal(layer1.R, [[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_array_equal(layer2.R, [[0.5, 0.0], [0.0, 0.5]])
