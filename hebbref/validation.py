"""Checks of what a user hands to the Python API, before any work or allocation.

Each check raises a ``HebbrefError`` subclass whose message names the argument, what
was expected and what was given; ``hebbref.network`` calls them in one line at the top
of ``build_network``, ``Network.__init__``, ``train_step``, ``loss``, ``forward``,
``predict`` and ``accuracy``.

- numbers: ``lr`` a finite number > 0; ``mu`` (the hinge loss's off-class factor μ of
  SPEC §4, weighting the C-1 wrong classes; μ < 0 would make the loss negative) a finite
  number ≥ 0; ``slope`` a finite number > 0. Strings, None and booleans are refused,
  never converted.
- flags: ``untied`` and ``dropout`` True or False (``"no"`` is refused, not read as true).
- whole numbers: ``n_classes`` ≥ 2, ``seed`` ≥ 0 (or None: fresh entropy), each size of
  ``input_shape`` ≥ 1, ``batch_size`` ≥ 1. ``10.7`` is refused, not truncated to 10.
- batches: ``x`` of real numbers (complex values are refused, not cut to their real
  part), at least one example for a training step or a loss; ``y`` whole-number labels
  (strings, booleans, objects refused).
- memory: the weights a network would allocate (W, R and the increment G of every
  weighted layer, counted from the layer sizes and the input shape) must fit in the
  memory available, or a ConfigError names the largest layer, before anything is drawn.
"""
import math
import numbers
import operator
import os

import numpy as np

from .errors import ConfigError, InputError

# --- numbers ------------------------------------------------------------------------------


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_number(name, value, minimum=0.0, strict=True, example="0.1"):
    """A finite real number above ``minimum`` (or at least it, ``strict=False``); returns it as float."""
    if not _is_real(value) or not math.isfinite(value) or (value <= minimum if strict else value < minimum):
        what = "a positive number" if strict and minimum == 0 else (
            f"a number above {minimum:g}" if strict else f"a number, {minimum:g} or more")
        raise ConfigError(f"{name} must be {what} (finite, such as {example}), "
                          f"got {value!r} ({type(value).__name__})")
    return float(value)


def check_whole(name, value, minimum, allow_none=False):
    """A whole number (int or NumPy integer, not a float or bool) ≥ ``minimum``; returns it as int."""
    if value is None and allow_none:
        return None
    try:
        if isinstance(value, (bool, np.bool_)):
            raise TypeError
        whole = operator.index(value)
    except TypeError:
        raise ConfigError(f"{name} must be a whole number, at least {minimum}, got {value!r} "
                          f"({type(value).__name__})") from None
    if whole < minimum:
        raise ConfigError(f"{name} must be a whole number, at least {minimum}, got {whole}")
    return whole


def check_flag(name, value):
    """True or False (a NumPy bool too); "no", 0 or None are refused, not read as truth values."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")


def check_network_args(input_shape, n_classes, seed=0, slope=None, **flags):
    """The arguments of ``build_network`` and ``Network`` that are plain numbers (and the flags given)."""
    for name, value in flags.items():
        check_flag(name, value)
    check_whole("n_classes", n_classes, 2)
    check_whole("seed", seed, 0, allow_none=True)
    if isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__len__") or not len(input_shape):
        raise ConfigError(f"input_shape must be a tuple of sizes such as (1, 28, 28), got {input_shape!r}")
    for i, size in enumerate(input_shape):
        check_whole(f"input_shape[{i}]", size, 1)
    if slope is not None:
        check_number("slope", slope, example="1.0")


# --- batches -------------------------------------------------------------------------------


def check_x(x, allow_empty=True):
    """Refuse complex inputs and (``allow_empty=False``) an empty batch; the shape is checked by the network."""
    if not isinstance(x, np.ndarray):
        return  # the network says what it expects
    if x.dtype.kind == "c":
        raise InputError(f"x must hold real numbers, got complex values (dtype {x.dtype})")
    if not allow_empty and x.ndim >= 1 and len(x) == 0:
        raise InputError(f"x is an empty batch (shape {x.shape}); a step or a loss needs at least one example")


def check_y(y):
    """Labels must be whole numbers: integer arrays, or floats the network checks are integral."""
    kind = np.asarray(y).dtype.kind
    if kind not in "iuf":
        what = {"U": "strings", "S": "bytes", "b": "booleans", "c": "complex numbers", "O": "Python objects"}
        raise InputError(f"y must be integer class labels, got {what.get(kind, 'values')} "
                         f"(dtype {np.asarray(y).dtype})")


def check_step(x, y, lr, mu):
    """``train_step``'s arguments: lr, mu, a non-empty real batch, whole-number labels."""
    check_number("lr", lr)
    check_number("mu", mu, strict=False, example="1.0")
    check_x(x, allow_empty=False)
    check_y(y)


def check_loss_args(x, y, mu):
    """``loss``'s arguments: mu, a non-empty real batch, whole-number labels."""
    check_number("mu", mu, strict=False, example="1.0")
    check_x(x, allow_empty=False)
    check_y(y)


def check_predict(x, batch_size):
    check_x(x)
    check_whole("batch_size", batch_size, 1)


# --- memory --------------------------------------------------------------------------------


def available_memory():
    """Bytes of memory this process may still use (MemAvailable, lowered by a cgroup limit); None if unknown."""
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        try:
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            available = None
    try:  # cgroup v2: a container's limit less what it uses
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        if limit != "max":
            used = int(open("/sys/fs/cgroup/memory.current").read())
            left = int(limit) - used
            available = left if available is None else min(available, left)
    except (OSError, ValueError):
        pass
    return available


def layer_weights(layer, shape):
    """(weights of ``layer``, its output shape) for an input of ``shape``; (0, None) when unknown.

    Counts from the sizes only, allocating nothing; refuses sizes below 1.
    """
    from .modules import Conv2D, Dense, LocallyConnected2D, MaxPool, SumBlock

    if isinstance(layer, Dense):
        check_whole(f"units of {layer.describe()}", layer.units, 1)
        return layer.units * math.prod(shape), (layer.units,)
    if isinstance(layer, Conv2D):  # and LocallyConnected2D
        check_whole(f"kernel of {layer.describe()}", layer.kernel, 1)
        check_whole(f"channels of {layer.describe()}", layer.channels, 1)
        if len(shape) != 3:
            return 0, None
        c, h, w = shape
        per_location = layer.channels * c * layer.kernel ** 2
        locations = h * w if isinstance(layer, LocallyConnected2D) else 1
        return per_location * locations, (layer.channels, h, w)
    if isinstance(layer, MaxPool):
        check_whole(f"window of {layer.describe()}", layer.window, 1)
        check_whole(f"stride of {layer.describe()}", layer.stride, 1)
        if len(shape) != 3:
            return 0, None
        c, h, w = shape
        return 0, (c, math.ceil(h / layer.stride), math.ceil(w / layer.stride))
    if isinstance(layer, SumBlock):
        a, shape_a = layer_weights(layer.conv_a, shape)
        if shape_a is None:
            return a, None
        b, shape_b = layer_weights(layer.conv_b, shape_a)
        return a + b, shape_b
    return 0, shape  # ramp, dropout, flatten: no weights, same number of values


def check_memory(layers, input_shape, dtype):
    """Refuse, before anything is allocated, a network whose weights would not fit in memory."""
    try:
        itemsize, dtype_name = np.dtype(dtype).itemsize, np.dtype(dtype).name
    except TypeError:
        itemsize, dtype_name = 8, str(dtype)  # an unknown dtype: the network refuses it by name
    shape, total, largest = tuple(int(d) for d in input_shape), 0, (0, None)
    for layer in layers:
        if not hasattr(layer, "describe"):
            return  # not a layer: the network says so
        count, shape = layer_weights(layer, shape)
        total += count
        largest = max(largest, (count, layer.describe()), key=lambda pair: pair[0])
        if shape is None:
            break
    # W, R and G of every layer, plus a float64 draw of the largest while it is initialised
    needed = 3 * itemsize * total + 8 * largest[0]
    available = available_memory()
    if available is not None and needed > available:
        raise ConfigError(
            f"the network's weights would not fit in memory: {total:,} weights need about "
            f"{needed / 2**30:,.1f} GiB as {dtype_name} "
            f"(W, R and the increment G), but {available / 2**30:,.1f} GiB is available; the largest "
            f"layer, {largest[1]}, has {largest[0]:,} weights")


def check_network(layers, input_shape, n_classes, seed, dtype, slope=None):
    """``Network.__init__``'s arguments, and that its weights fit in memory."""
    check_network_args(input_shape, n_classes, seed, slope)
    if isinstance(layers, (list, tuple)):
        check_memory(layers, input_shape, dtype)
