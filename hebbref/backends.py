"""Backends: which code computes the conv and locally connected layers.

A backend is a table of six functions with the signatures of the NumPy reference in
``hebbref.layers`` (forward, input error, weight increment, for tied and untied
layers). The cache that a backend's forward returns is only ever handed back to the
same backend. A network picks its backend when it is built
(``build_network(..., backend="numpy")``); the environment variable
``HEBBREF_BACKEND`` overrides the default.
"""
import os
from dataclasses import dataclass
from typing import Callable

from . import layers
from .errors import ConfigError

ENVIRONMENT_VARIABLE = "HEBBREF_BACKEND"


@dataclass(frozen=True)
class Backend:
    name: str
    conv_forward: Callable
    conv_input_error: Callable
    conv_weight_increment: Callable
    locally_connected_forward: Callable
    locally_connected_input_error: Callable
    locally_connected_weight_increment: Callable


NUMPY = Backend(
    "numpy",
    layers.conv_forward,
    layers.conv_input_error,
    layers.conv_weight_increment,
    layers.locally_connected_forward,
    layers.locally_connected_input_error,
    layers.locally_connected_weight_increment,
)


def _load_numpy():
    return NUMPY


# name -> loader; a loader imports its kernels only when asked for, and raises
# ConfigError with the reason when the backend cannot run on this machine.
_LOADERS = {"numpy": _load_numpy}
# the order in which the default is chosen: the first one that loads
_PREFERENCE = ("numpy",)


def backend_names():
    """The names a user may ask for."""
    return tuple(_LOADERS)


def default_backend_name():
    """$HEBBREF_BACKEND if set, else the fastest backend that loads on this machine."""
    name = os.environ.get(ENVIRONMENT_VARIABLE)
    if name:
        return name
    for name in _PREFERENCE:
        try:
            _LOADERS[name]()
            return name
        except ConfigError:
            continue
    return "numpy"


def get_backend(name=None):
    """The Backend called ``name`` (default: ``default_backend_name()``)."""
    if isinstance(name, Backend):
        return name
    name = name or default_backend_name()
    if name not in _LOADERS:
        raise ConfigError(
            f"unknown backend {name!r}; expected one of {', '.join(map(repr, _LOADERS))}"
        )
    return _LOADERS[name]()
