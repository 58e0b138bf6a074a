"""Backends: which code computes the conv and locally connected layers.

A backend is a table of six functions with the signatures of the NumPy reference in
``hebbref.layers`` (forward, input error, weight increment, for tied and untied
layers), and more that default to the reference (max pooling forward and backward,
the ramp, its derivative, and δ = e ⊙ σ'(h) in one pass), which a compiled backend
replaces when they dominate a training step. The cache that a backend's forward returns is only ever handed back to the
same backend. A network picks its backend when it is built
(``build_network(..., backend="numpy")``); the environment variable
``HEBBREF_BACKEND`` overrides the default.

    numpy   the reference, pure NumPy (hebbref.layers, hebbref.activations)
    numba   CPU kernels compiled by Numba, parallel over the cores (hebbref.kernels.numba_*)
    cuda    GPU kernels compiled by numba.cuda (hebbref.kernels.cuda_*); needs a CUDA GPU
            (or NUMBA_ENABLE_CUDASIM=1, the slow simulator used by the tests)

The default is the first of cuda, numba, numpy that loads, where cuda counts only
with a real GPU (never the simulator).
"""
import os
from dataclasses import dataclass
from typing import Callable

from . import activations, layers
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
    maxpool_forward: Callable = layers.maxpool_forward
    maxpool_backward: Callable = layers.maxpool_backward
    ramp: Callable = activations.ramp
    ramp_derivative: Callable = activations.ramp_derivative
    ramp_backward: Callable = activations.ramp_backward  # δ = e ⊙ σ'(h)


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


def _load_numba():
    try:
        from .kernels import (
            numba_activations,
            numba_conv,
            numba_locally_connected,
            numba_pooling,
        )
    except ImportError as error:  # numba missing or broken
        raise ConfigError(f"backend 'numba' cannot load: {error}") from error
    from ._threads import quiet_numba_threads
    from .kernels.allocator import keep_freed_memory

    keep_freed_memory()  # reuse a step's large arrays instead of page-faulting them in again
    quiet_numba_threads()  # idle Numba threads sleep instead of spinning against OpenBLAS's
    return Backend(
        "numba",
        numba_conv.conv_forward,
        numba_conv.conv_input_error,
        numba_conv.conv_weight_increment,
        numba_locally_connected.locally_connected_forward,
        numba_locally_connected.locally_connected_input_error,
        numba_locally_connected.locally_connected_weight_increment,
        numba_pooling.maxpool_forward,
        numba_pooling.maxpool_backward,
        numba_activations.ramp,
        numba_activations.ramp_derivative,
        numba_activations.ramp_backward,
    )


def _simulated_cuda():
    return os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def _load_cuda():
    simulated = _simulated_cuda()
    try:
        from numba import cuda
    except ImportError as error:
        raise ConfigError(f"backend 'cuda' needs numba.cuda (pip install 'hebbref[cuda]'): {error}") from error
    if not simulated and not cuda.is_available():
        raise ConfigError(
            "backend 'cuda' needs a CUDA GPU and driver, and numba finds none on this machine; "
            "use backend 'numba' (CPU) or set NUMBA_ENABLE_CUDASIM=1 to simulate one (slow)"
        )
    try:
        from .kernels import cuda_conv, cuda_locally_connected
    except ImportError as error:
        raise ConfigError(f"backend 'cuda' cannot load its kernels: {error}") from error

    numba_backend = _load_numba()  # pooling and the ramp stay on the CPU kernels
    return Backend(
        "cuda",
        cuda_conv.conv_forward,
        cuda_conv.conv_input_error,
        cuda_conv.conv_weight_increment,
        cuda_locally_connected.locally_connected_forward,
        cuda_locally_connected.locally_connected_input_error,
        cuda_locally_connected.locally_connected_weight_increment,
        numba_backend.maxpool_forward,
        numba_backend.maxpool_backward,
        numba_backend.ramp,
        numba_backend.ramp_derivative,
        numba_backend.ramp_backward,
    )


# name -> loader; a loader imports its kernels only when asked for, and raises
# ConfigError with the reason when the backend cannot run on this machine.
_LOADERS = {"numpy": _load_numpy, "numba": _load_numba, "cuda": _load_cuda}
# the order in which the default is chosen: the first one that loads
_PREFERENCE = ("cuda", "numba", "numpy")


def backend_names():
    """The names a user may ask for."""
    return tuple(_LOADERS)


def default_backend_name():
    """$HEBBREF_BACKEND if set, else the fastest backend that loads on this machine."""
    name = os.environ.get(ENVIRONMENT_VARIABLE)
    if name:
        return name
    for name in _PREFERENCE:
        if name == "cuda" and _simulated_cuda():
            continue  # the simulator is for tests, never the fastest
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
