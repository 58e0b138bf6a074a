"""Networks described as text: the paper's presets and a compact grammar for your own.

A description is a sequence of tokens separated by spaces:

| token                    | layer                                                       |
|--------------------------|-------------------------------------------------------------|
| ``conv5:32``             | 5×5 convolution, 32 channels, stride 1, "same" padding      |
| ``lc5:32``               | the same connectivity, untied (locally connected)           |
| ``ramp``                 | the saturated ramp σ                                        |
| ``pool3s2``, ``pool2``   | max pooling, window 3 stride 2; window 2 stride 2           |
| ``drop0.8``              | dropout, probability 0.8 of dropping a unit                 |
| ``dense500``             | dense layer with 500 units                                  |
| ``sum[conv3:16,conv3:16]`` | sum block: a = σ(conv_a x), b = σ(conv_b a), out a + b     |
| ``out``                  | the linear output layer, one unit per class                 |

Every size (kernel, channels, window, stride, units) must be 1 or more; a network whose
weights would not fit in memory is refused before anything is allocated
(``hebbref.validation``). A flatten is put in front of the first dense layer by itself. The description must
end with ``out``. ``build_network(..., untied=True)`` turns every ``conv`` into ``lc``;
``dropout=False`` leaves out every ``drop``.

The paper's networks (SPEC §6), which adapt to any (C, H, W) input:
"""
import re

from .errors import ConfigError
from .modules import Conv2D, Dense, Dropout, LocallyConnected2D, MaxPool, Ramp, SumBlock

PRESETS = {
    "simple": "conv5:32 ramp pool3s2 drop0.8 dense500 ramp drop0.3 out",
    "deep": (
        "sum[conv3:16,conv3:16] pool3s3 drop0.5 "
        "sum[conv3:64,conv3:64] pool2s2 "
        "sum[conv2:64,conv2:64] pool2s2 drop0.5 "
        "dense500 ramp out"
    ),
}
__doc__ += "".join(f"\n    {name:8s} {text}" for name, text in PRESETS.items()) + "\n"

_CONV = re.compile(r"(conv|lc)(\d+):(\d+)$")
_TOKENS = [
    (_CONV, lambda m, untied: _conv(m, untied)),
    (re.compile(r"ramp$"), lambda m, untied: Ramp()),
    (re.compile(r"pool(\d+)(?:s(\d+))?$"),
     lambda m, untied: MaxPool(_size(m, 1, "window"), _size(m, 2, "stride") if m[2] else None)),
    (re.compile(r"drop(\d*\.?\d+)$"), lambda m, untied: Dropout(float(m[1]))),
    (re.compile(r"dense(\d+)$"), lambda m, untied: Dense(_size(m, 1, "units"))),
]


def _size(match, group, what):
    """The number in ``match[group]``, which must be 1 or more (pool0, pool3s0 and dense0 are errors)."""
    value = int(match[group])
    if value < 1:
        raise ConfigError(f"the {what} in {match[0]!r} must be 1 or more, got {value}")
    return value
GRAMMAR = "conv<k>:<c>, lc<k>:<c>, ramp, pool<k>[s<t>], drop<p>, dense<n>, sum[<conv>,<conv>], out"


def _conv(match, untied):
    kind, k, c = match[1], _size(match, 2, "kernel size"), _size(match, 3, "number of channels")
    return (LocallyConnected2D if (untied or kind == "lc") else Conv2D)(k, c)


def _layer(token, untied):
    if token.startswith("sum[") and token.endswith("]"):
        parts = token[4:-1].split(",")
        matches = [_CONV.match(p) for p in parts]
        if len(parts) != 2 or not all(matches):
            raise ConfigError(f"a sum block holds two conv layers, e.g. sum[conv3:16,conv3:16]; got {token!r}")
        return SumBlock(*(_conv(m, untied) for m in matches))
    for pattern, make in _TOKENS:
        match = pattern.match(token)
        if match:
            return make(match, untied)
    raise ConfigError(f"cannot read layer {token!r}; expected one of: {GRAMMAR}")


def describe_layers(text, n_classes, untied=False, dropout=True):
    """Turn a description (or a preset name) into a list of layer objects."""
    if not isinstance(text, str):
        raise ConfigError(f"a network description must be a string, got {type(text).__name__}")
    text = PRESETS.get(text, text)
    tokens = text.split()
    if not tokens or tokens[-1] != "out":
        presets = ", ".join(map(repr, PRESETS))
        raise ConfigError(
            f"unknown network {text!r}: expected a preset ({presets}) "
            f"or a description ending in 'out' made of: {GRAMMAR}"
        )
    layers = [_layer(token, untied) for token in tokens[:-1]] + [Dense(n_classes)]
    if not dropout:
        layers = [layer for layer in layers if not isinstance(layer, Dropout)]
    return layers
