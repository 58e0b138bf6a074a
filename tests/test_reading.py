"""hebbref.reading: the functions one training step runs, as a reader would open them.

The list comes from a traced step with Numba's compiler off, so the readable tier's
bodies are seen: each is called once per element of its output, which pins the trace to
the step that ran (a body counted per layer rather than per element, or a first layer
that sent an error below it, would change the counts).
"""
import sys

import pytest

from hebbref import cli, reading
from hebbref.errors import ConfigError

SMALL = "conv3:2 ramp pool2 dense5 ramp out"  # a conv layer and two dense ones, on 1×8×8: a fast traced step


@pytest.fixture(scope="module")
def simple_urfb():
    return reading.reading_list("simple", "urfb", "readable", batch=2)


def names(rows):
    return [(path, name) for path, name, _ in rows]


def calls(rows, path, name):
    return {(p, n): count for p, n, count in rows}.get((path, name), 0)


def test_a_step_of_simple_starts_at_train_step_and_reaches_every_body_once_per_output_element(simple_urfb):
    assert simple_urfb[0] == ("hebbref/network.py", "Network.train_step", 1)
    # the conv layer's forward body: one call per element of h, 2 images × 32 channels × 28 × 28
    assert calls(simple_urfb, "hebbref/kernels/readable.py", "conv_forward_at") == 2 * 32 * 28 * 28
    # its increment's body: one call per element of G, 32 × 1 × 5 × 5; the first layer sends no error below it
    assert calls(simple_urfb, "hebbref/kernels/readable.py", "conv_weight_increment_at") == 32 * 1 * 5 * 5
    # the pool's winner and value bodies: one call per pooled element, 2 × 32 × 14 × 14 (pool3s2 of 28, padded)
    assert calls(simple_urfb, "hebbref/kernels/readable.py", "maxpool_value_at") == 2 * 32 * 14 * 14
    assert ("hebbref/rules.py", "UpdatedRandomFeedback.feedback_update") in names(simple_urfb)
    assert not [name for _, name, _ in simple_urfb if name.split(".")[-1].startswith("<")]  # no <listcomp>, <lambda>
    paths = list(reading.by_file(simple_urfb))
    assert len(paths) == len(set(paths)) and paths[0] == "hebbref/network.py"


def test_the_rule_decides_which_updates_are_read():
    """R's Hebbian update is on urfb's path and on neither bp's nor frfb's; all three send an error through B."""
    found = {rule: names(reading.reading_list(SMALL, rule, "readable", input_shape=(1, 8, 8)))
             for rule in ("bp", "frfb", "urfb")}
    update = ("hebbref/rules.py", "UpdatedRandomFeedback.feedback_update")
    assert update in found["urfb"] and update not in found["bp"] and update not in found["frfb"]
    assert ("hebbref/rules.py", "BackPropagation.feedback") in found["bp"]
    assert ("hebbref/rules.py", "FixedRandomFeedback.feedback") in found["frfb"]


def test_the_numpy_backend_reads_the_reference_and_not_the_readable_tier():
    rows = names(reading.reading_list(SMALL, "urfb", "numpy", input_shape=(1, 8, 8)))
    assert ("hebbref/layers/conv.py", "conv_forward") in rows
    assert not [path for path, _ in rows if path.startswith("hebbref/kernels/")]


def test_what_cannot_be_listed_is_one_clear_error():
    with pytest.raises(ConfigError, match="tuned tier"):
        reading.reading_list("simple", "urfb", "numba")
    with pytest.raises(ConfigError, match="nosuchrule"):
        reading.reading_list(SMALL, "nosuchrule", "readable", input_shape=(1, 8, 8))
    with pytest.raises(ConfigError, match="batch"):
        reading.reading_list(SMALL, "urfb", "readable", batch=0)
    with pytest.raises(ConfigError, match="input-shape"):
        reading.parse_shape("3,x,32")
    assert reading.parse_shape("3,32,32") == (3, 32, 32)


def test_the_command_prints_the_counts_then_each_file_and_its_functions(capsys):
    assert cli.main(["reading-list", "--net", SMALL, "--rule", "bp", "--input-shape", "1,8,8"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("One bp training step of ") and " functions of hebbref in " in out[0]
    assert out[2] == "hebbref/network.py" and out[3].strip().startswith("Network.train_step  [1]")
    assert cli.main(["reading-list", "--input-shape", "0,8"]) == 2
    assert "error: --input-shape takes positive whole numbers" in capsys.readouterr().err


class _Base:
    def method(self):
        return sys._getframe()

    @property
    def value(self):
        return sys._getframe()

    @classmethod
    def maker(cls):
        return sys._getframe()


class _Child(_Base):
    pass


def _plain():
    return sys._getframe()


def test_before_python_3_11_a_method_is_named_after_the_class_that_defines_it():
    """Without ``co_qualname`` a method's name comes from the MRO of ``self`` or ``cls`` (the defining class, not the
    object's own), a nested function's from its name and first line (two closures may share a name)."""
    assert reading._qualname_from_class(_Child().method()) == "_Base.method"
    assert reading._qualname_from_class(_Child.maker()) == "_Base.maker"
    assert reading._qualname_from_class(_Child().value) == "_Base.value"
    assert reading._qualname_from_class(_plain()) == "_plain"

    def nested():
        return sys._getframe()
    assert reading._qualname_from_class(nested()) == f"nested (line {nested.__code__.co_firstlineno})"
