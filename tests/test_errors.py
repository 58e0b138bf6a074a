"""Bad input gives a HebbrefError (a ValueError) that names what was expected and what came."""
import numpy as np
import pytest

import hebbref
from hebbref.errors import ConfigError, HebbrefError, InputError


@pytest.fixture(scope="module")
def net():
    return hebbref.build_network("simple", (1, 8, 8), 3, backend="numpy")


def good_batch():
    return np.zeros((2, 1, 8, 8)), np.array([0, 2])


def test_every_error_is_a_value_error():
    assert issubclass(HebbrefError, ValueError)
    assert issubclass(ConfigError, HebbrefError) and issubclass(InputError, HebbrefError)


@pytest.mark.parametrize("kwargs,words", [
    (dict(net="resnet"), ["unknown network", "'simple'", "'deep'"]),
    (dict(rule="sgd"), ["unknown rule 'sgd'", "'bp'", "'frfb'", "'urfb'"]),
    (dict(init="zeros"), ["unknown init 'zeros'", "'random'", "'symmetric'"]),
    (dict(dtype="int8"), ["unknown dtype 'int8'", "'float64'"]),
    (dict(backend="tpu"), ["unknown backend 'tpu'", "'numpy'"]),
    (dict(untied_init="mirror"), ["unknown untied_init 'mirror'", "'tied'"]),
    (dict(net="conv3:4 ramp blur2 out"), ["cannot read layer 'blur2'", "conv<k>:<c>"]),
    (dict(net="conv3:4 ramp"), ["ending in 'out'"]),
    (dict(net="sum[conv3:4,conv3:5] out"), ["one shape"]),
    (dict(n_classes=1), ["at least 2"]),
    (dict(input_shape=(1, 0, 8)), ["input_shape"]),
    (dict(net="dense4 out", input_shape=(1, 4, 4), n_classes=2, dropout=True), None),
])
def test_bad_configuration(kwargs, words):
    args = dict(net="simple", input_shape=(1, 8, 8), n_classes=3, backend="numpy") | kwargs
    if words is None:  # a flatten is inserted by itself: this one is fine
        hebbref.build_network(**args)
        return
    with pytest.raises(ConfigError) as info:
        hebbref.build_network(**args)
    for word in words:
        assert word in str(info.value)


def test_wrong_input_shape(net):
    with pytest.raises(InputError, match=r"shape \(N, 1, 8, 8\), got \(2, 8, 8\)"):
        net.forward(np.zeros((2, 8, 8)))
    with pytest.raises(InputError, match=r"got \(2, 3, 8, 8\)"):
        net.forward(np.zeros((2, 3, 8, 8)))
    with pytest.raises(InputError, match="numpy array"):
        net.forward([[0.0]])


def test_non_finite_inputs(net):
    x, y = good_batch()
    x[1, 0, 3, 3] = np.nan
    with pytest.raises(InputError, match="NaN or infinite"):
        net.train_step(x, y)


@pytest.mark.parametrize("y,words", [
    (np.array([0, 3]), r"\[0, 3\), got values from 0 to 3"),
    (np.array([-1, 0]), r"\[0, 3\), got values from -1 to 0"),
    (np.array([0]), r"2 integer labels .* got shape \(1,\)"),
    (np.array([0.5, 1.0]), "integer labels"),
])
def test_bad_labels(net, y, words):
    with pytest.raises(InputError, match=words):
        net.train_step(good_batch()[0], y)


def test_unknown_loss_and_bad_step(net):
    x, y = good_batch()
    with pytest.raises(ConfigError, match="unknown loss 'mse'.*'hinge'"):
        net.train_step(x, y, loss="mse")
    with pytest.raises(ConfigError, match="lr must be a positive number"):
        net.train_step(x, y, lr=-1.0)
    with pytest.raises(ConfigError, match="unknown rule"):
        net.rule = "hebb"
