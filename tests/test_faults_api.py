"""Bad arguments to the Python API and bad sizes in network descriptions (FAULTS.md): each is
one HebbrefError naming the argument or the token, raised before any work or allocation."""
import numpy as np
import pytest

import hebbref
from hebbref import ConfigError, HebbrefError, InputError, build_network
from hebbref import validation
from hebbref.cli import main
from hebbref.modules import Dense, MaxPool


@pytest.fixture(scope="module")
def net():
    return build_network("dense4 ramp out", (1, 4, 4), 3, backend="numpy", seed=0)


def batch(n=5):
    rng = np.random.default_rng(1)
    return rng.random((n, 1, 4, 4)), np.arange(n) % 3


# --- descriptions ----------------------------------------------------------------------------------
@pytest.mark.parametrize("description,words", [
    ("conv3:4 pool0 dense8 out", ["pool0", "window"]),
    ("conv3:4 pool3s0 dense8 out", ["pool3s0", "stride"]),
    ("dense0 ramp out", ["dense0", "units"]),
    ("conv0:4 out", ["conv0:4", "kernel"]),
    ("conv3:0 out", ["conv3:0", "channels"]),
    ("lc3:0 out", ["lc3:0", "channels"]),
    ("sum[conv3:0,conv3:4] out", ["conv3:0", "channels"]),
])
def test_every_size_in_a_description_must_be_one_or_more(description, words):
    with pytest.raises(ConfigError) as caught:
        build_network(description, (1, 8, 8), 10, backend="numpy")
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize("layers,words", [
    ([MaxPool(0), Dense(10)], ["window", "pool0"]),
    ([MaxPool(3, 0), Dense(10)], ["stride", "pool3s0"]),
    ([Dense(0), Dense(10)], ["units", "dense0"]),
])
def test_layer_objects_with_sizes_below_one_are_refused(layers, words):
    with pytest.raises(ConfigError) as caught:
        build_network(layers, (1, 8, 8), 10, backend="numpy")
    for word in words:
        assert word in str(caught.value)


def test_a_network_too_large_for_memory_is_refused_before_allocating(monkeypatch):
    def no_drawing(*args, **kwargs):
        raise AssertionError("weights were drawn before the size was checked")

    monkeypatch.setattr("hebbref.modules.glorot_uniform", no_drawing)
    with pytest.raises(ConfigError, match=r"would not fit in memory.*dense400000000"):
        build_network("dense400000000 ramp out", (1, 28, 28), 10, backend="numpy")
    # the check counts from the sizes: a small network against a small memory is refused too
    monkeypatch.setattr(validation, "available_memory", lambda: 1_000_000)
    with pytest.raises(ConfigError, match=r"1,000 weights|would not fit") as caught:
        build_network("dense1000 ramp out", (1, 28, 28), 10, backend="numpy")
    assert "dense1000" in str(caught.value) and "784,000 weights" in str(caught.value)
    with pytest.raises(ConfigError, match="would not fit"):
        build_network("lc5:64 out", (3, 32, 32), 10, untied=True, backend="numpy")


def test_the_weight_count_matches_the_network_built():
    for description, shape, untied in (("simple", (1, 28, 28), False), ("simple", (3, 32, 32), True),
                                       ("deep", (3, 32, 32), False)):
        built = build_network(description, shape, 10, untied=untied, backend="numpy")
        layers = hebbref.architectures.describe_layers(description, 10, untied=untied)
        total, shape_now = 0, shape
        for layer in layers:
            count, shape_now = validation.layer_weights(layer, shape_now)
            total += count
        assert total == sum(p.W.size for p in built.parameters()), description


def test_a_bad_description_on_the_command_line_is_one_line(tmp_path, capsys):
    argv = ["train", "--net", "conv3:4 pool3s0 dense8 out", "--data", "fashion-mnist-mini", "--epochs", "1",
            "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pool3s0" in err and "Traceback" not in err


# --- arguments of the Python API -------------------------------------------------------------------
def step(**changes):
    x, y = batch()
    args = dict(x=x, y=y, lr=0.1, loss="hinge", mu=1.0) | changes
    return lambda net: net.train_step(**args)


BAD_CALLS = {
    "empty batch": (step(x=batch()[0][:0], y=batch()[1][:0]), InputError, "x is an empty batch"),
    "string labels": (step(y=np.array(["0", "1", "2", "0", "1"])), InputError, "y must be integer"),
    "labels as a list of strings": (step(y=["a"] * 5), InputError, "y must be integer"),
    "boolean labels": (step(y=np.ones(5, bool)), InputError, "y must be integer"),
    "lr as a string": (step(lr="0.1"), ConfigError, "lr must be a positive number"),
    "lr None": (step(lr=None), ConfigError, "lr must be a positive number"),
    "lr True": (step(lr=True), ConfigError, "lr must be a positive number"),
    "lr NaN": (step(lr=float("nan")), ConfigError, "lr must be a positive number"),
    "mu negative": (step(mu=-1.0), ConfigError, "mu must be a number, 0 or more"),
    "mu NaN": (step(mu=float("nan")), ConfigError, "mu must be"),
    "mu a string": (step(mu="1"), ConfigError, "mu must be"),
    "complex inputs": (step(x=batch()[0] + 1j), InputError, "x must hold real numbers"),
    "complex inputs to predict": (lambda net: net.predict(batch()[0] * 1j), InputError, "x must hold real"),
    "complex inputs to forward": (lambda net: net.forward(batch()[0] * 1j), InputError, "x must hold real"),
    "predict batch_size 0": (lambda net: net.predict(batch()[0], batch_size=0), ConfigError, "batch_size"),
    "predict batch_size 2.5": (lambda net: net.predict(batch()[0], batch_size=2.5), ConfigError, "batch_size"),
    "accuracy with string labels": (lambda net: net.accuracy(batch()[0], ["x"] * 5), InputError, "y must be"),
    "loss of an empty batch": (lambda net: net.loss(batch()[0][:0], []), InputError, "empty batch"),
    "loss with mu < 0": (lambda net: net.loss(*batch(), mu=-0.5), ConfigError, "mu must be"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_calls_raise_a_hebbref_error_naming_the_argument(net, case):
    call, error, words = BAD_CALLS[case]
    before = [p.W.copy() for p in net.parameters()]
    with pytest.raises(error, match=words):
        call(net)
    assert all(np.array_equal(b, p.W) for b, p in zip(before, net.parameters()))  # nothing was changed


BAD_BUILDS = {
    "seed -1": (dict(seed=-1), "seed must be a whole number, at least 0"),
    "seed 1.5": (dict(seed=1.5), "seed must be a whole number"),
    "seed a string": (dict(seed="0"), "seed must be a whole number"),
    "n_classes 10.7": (dict(n_classes=10.7), "n_classes must be a whole number"),
    "n_classes True": (dict(n_classes=True), "n_classes must be a whole number"),
    "input_shape with a fraction": (dict(input_shape=(1, 4.5, 4)), r"input_shape\[1\]"),
    "input_shape a string": (dict(input_shape="1,4,4"), "input_shape must be a tuple"),
    "input_shape with a zero": (dict(input_shape=(0, 4, 4)), r"input_shape\[0\]"),
    "slope 0": (dict(slope=0.0), "slope must be a positive number"),
    "untied 'yes'": (dict(untied="yes"), "untied must be True or False"),
    "dropout 'no'": (dict(dropout="no"), "dropout must be True or False"),
}


@pytest.mark.parametrize("case", list(BAD_BUILDS))
def test_bad_network_arguments_raise_a_hebbref_error_naming_them(case):
    changes, words = BAD_BUILDS[case]
    args = dict(net="dense4 ramp out", input_shape=(1, 4, 4), n_classes=3, backend="numpy") | changes
    with pytest.raises(HebbrefError, match=words):
        build_network(**args)
    if not {"untied", "dropout"} & set(changes):  # the constructor checks the others too
        layers = hebbref.architectures.describe_layers("dense4 ramp out", 3)
        with pytest.raises(HebbrefError, match=words):
            hebbref.Network(layers, args["input_shape"], args["n_classes"], seed=args.get("seed", 0),
                            slope=args.get("slope", 1.0), backend="numpy")


def test_good_arguments_of_every_kind_still_work(net):
    x, y = batch()
    assert np.isfinite(net.train_step(x.astype(np.float32), y.astype(np.int32), lr=np.float32(0.1), mu=0))
    assert np.isfinite(net.train_step(x, y.astype(float), lr=1, mu=np.float64(0.5)))  # whole-number floats
    assert net.predict(x[:0]).shape == (0,)  # predicting nothing is fine
    build_network("dense4 out", (np.int64(1), 4, 4), np.int32(3), seed=np.uint8(7), backend="numpy")
    build_network("dense4 out", (1, 4, 4), 3, seed=None, backend="numpy")  # fresh entropy
