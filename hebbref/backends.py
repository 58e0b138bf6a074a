"""Backends: which code computes the conv and locally connected layers.

A backend is a table of six functions with the signatures of the NumPy reference in
``hebbref.layers`` (forward, input error, weight increment, for tied and untied layers),
and more that default to the reference (max pooling forward and backward, the ramp, its
derivative, δ = e ⊙ σ'(h) in one pass, the same two with a sum block's addend, dropout's
training pass, which draws the mask, and its backward pass, the dense layer's three
products, and the SGD step W ← W - η (G + λ W) that every rule takes on W and R), which
a compiled backend replaces when they dominate a training step. Five more take two steps
as one: a ramp and the max pool right above it (``ramp pool``), forward
(``ramp_maxpool_forward``) and backward (``maxpool_ramp_backward``), a sum block's
output and the max pool right above it (``sum[...] pool``, forward:
``ramp_plus_maxpool_forward``; backward, at the block's first ramp, whose error adds the
pool's to the second conv's: ``maxpool_ramp_backward_of_sum``), and a conv layer's input
error and increment of one δ (``conv_backward``); four take three: a conv layer, its ramp and the pool above
(``conv ramp pool``), forward (``conv_ramp_maxpool_forward``) and backward to δ and the
increment (``maxpool_ramp_conv_backward``), and the same for an untied layer
(``lc ramp pool``: ``locally_connected_ramp_maxpool_forward``,
``maxpool_ramp_locally_connected_backward``); two take a dense layer and the dropout below it
(``drop dense``, a flattening between them or not): forward, the products of dropout's output
given its mask (``dropout_dense_forward``), and backward, the input error taken through the
mask with the increment (``dense_dropout_backward``), which the tuned tier may compute over
the kept inputs only. A backend that does not give them runs its own functions in a row.
The cache that a backend's forward returns is only ever handed back to the same backend.
A network picks its backend when it is built (``build_network(..., backend="numpy")``); the
environment variable ``HEBBREF_BACKEND`` overrides the default.

    numpy     the reference, pure NumPy (hebbref.layers, hebbref.activations)
    numba     the tuned tier: CPU kernels compiled by Numba (hebbref.kernels.tuned); which
              kernel and how many threads run each call is decided in ONE function,
              hebbref.kernels.plan.choose, by timing the candidates once per layer shape
              on this machine (cached on disk), or by a default from the shape when
              timing is off (HEBBREF_TUNE=0, tests). Its first use applies the process
              settings of hebbref.runtime (printed by `hebbref info`).
    readable  the readable tier: one plain loop body per equation (hebbref.kernels.readable),
              compiled with njit(parallel=True); slower, for reading and checking
    cuda      the readable tier's bodies compiled as numba.cuda device functions, one GPU
              thread per output element; needs a CUDA GPU (or NUMBA_ENABLE_CUDASIM=1, the
              slow simulator used by the tests). Pooling and the ramp stay on the CPU (numba),
              so each conv call copies its operands to the GPU and back.

The default is numba, else numpy where numba cannot load; cuda is used only when asked
for. On an NVIDIA H200 with 16 CPU cores the cuda backend was slower than numba on
those cores for tied layers (`simple` 114 vs 78 ms a step, `deep` 375 vs 158) and level
for untied ones (BENCHMARKS.md, ``benchmarks/bench_gpu.py``): its one-thread-per-output
kernels are written to be read, and every call crosses the PCIe bus.
"""
import os
from dataclasses import dataclass
from functools import partial
from typing import Callable

from . import activations, layers
from .errors import ConfigError
from .rules import forward_update

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
    ramp_plus: Callable = activations.ramp_plus  # σ(h) + a, a sum block's output
    ramp_backward_of_sum: Callable = activations.ramp_backward_of_sum  # (e1 + e2) ⊙ σ'(h)
    dropout_draw: Callable = layers.dropout_draw  # (rng, x, p) -> (x ⊙ m, m), m drawn from rng
    dropout_backward: Callable = layers.dropout_backward  # (e, m) -> e ⊙ m
    dense_forward: Callable = layers.dense_forward  # the dense layer's three products
    dense_input_error: Callable = layers.dense_input_error
    dense_weight_increment: Callable = layers.dense_weight_increment
    weight_update: Callable = forward_update  # (W, G, η, λ): W ← W - η (G + λ W) in place, the SGD step (rules)
    # (dy, pool cache, h, slope) -> (maxpool_backward of dy) ⊙ σ'(h): a pool's backward pass and
    # that of the ramp below it; by default this backend's own two functions in a row
    maxpool_ramp_backward: Callable = None
    # (h, k, t, slope) -> maxpool_forward(σ(h), k, t): a ramp and the pool above it; by default
    # this backend's ramp, then its maxpool_forward
    ramp_maxpool_forward: Callable = None
    # (h, a, k, t, slope) -> maxpool_forward(σ(h) + a, k, t): a sum block's output and the pool above
    # it; by default this backend's ramp_plus, then its maxpool_forward
    ramp_plus_maxpool_forward: Callable = None
    # (e1, dy, pool cache, h, slope) -> (e1 + maxpool_backward of dy) ⊙ σ'(h): a sum block's first ramp
    # when a pool sits above the block; by default this backend's maxpool_backward, then its
    # ramp_backward_of_sum
    maxpool_ramp_backward_of_sum: Callable = None
    # (δ, conv cache, B) -> (conv_input_error, conv_weight_increment) of one δ; by default this
    # backend's own two functions in a row
    conv_backward: Callable = None
    # (x, W, k, t, slope) -> (y, conv cache, h, cache): a conv layer, the ramp above it and the pool
    # above that (h may come as a function of no arguments that forms it); by default this
    # backend's conv_forward, then its ramp_maxpool_forward
    conv_ramp_maxpool_forward: Callable = None
    # (dy, cache, slope) -> (δ, G) of that block (δ may come as a function forming it); by default
    # this backend's maxpool_ramp_backward, then its conv_weight_increment
    maxpool_ramp_conv_backward: Callable = None
    # the same two for an untied layer (its cache, its increment)
    locally_connected_ramp_maxpool_forward: Callable = None
    maxpool_ramp_locally_connected_backward: Callable = None
    # (x, m, W, p) -> (h, dense cache, cache): a dense layer that reads dropout's output x (flattened) and
    # its mask m, both (N, D_in), drawn with dropping probability p; the dense cache is dense_forward's,
    # for the layer's own functions. By default this backend's dense_forward
    dropout_dense_forward: Callable = None
    # (δ, cache, B, m) -> (dropout_backward(dense_input_error of δ through B, m), dense_weight_increment of δ),
    # the first None when B is None (nothing below to send it to); by default those functions in a row
    dense_dropout_backward: Callable = None

    def __post_init__(self):
        defaults = {
            "conv_backward": partial(_error_then_increment, self),
            "maxpool_ramp_backward": partial(_pool_then_ramp, self),
            "ramp_maxpool_forward": partial(_ramp_then_pool, self),
            "ramp_plus_maxpool_forward": partial(ramp_plus_then_pool, self),
            "maxpool_ramp_backward_of_sum": partial(_pool_then_ramp_of_sum, self),
            "conv_ramp_maxpool_forward": partial(layer_then_pool, self, "conv_forward"),
            "maxpool_ramp_conv_backward": partial(pool_then_increment, self, "conv_weight_increment"),
            "locally_connected_ramp_maxpool_forward": partial(layer_then_pool, self, "locally_connected_forward"),
            "maxpool_ramp_locally_connected_backward": partial(pool_then_increment, self,
                                                               "locally_connected_weight_increment"),
            "dropout_dense_forward": partial(dense_of_dropped, self),
            "dense_dropout_backward": partial(dense_then_dropout_backward, self),
        }
        for name, default in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)


def _pool_then_ramp(backend, dy, cache, h, slope):
    """``backend``'s maxpool_backward, then its ramp_backward: the default maxpool_ramp_backward."""
    return backend.ramp_backward(backend.maxpool_backward(dy, cache), h, slope)


def _pool_then_ramp_of_sum(backend, e1, dy, cache, h, slope):
    """``backend``'s maxpool_backward, then its ramp_backward_of_sum: the default maxpool_ramp_backward_of_sum."""
    return backend.ramp_backward_of_sum(e1, backend.maxpool_backward(dy, cache), h, slope)


def _error_then_increment(backend, delta, cache, B):
    """``backend``'s conv_input_error and conv_weight_increment: the default conv_backward."""
    return backend.conv_input_error(delta, cache, B), backend.conv_weight_increment(delta, cache)


def _ramp_then_pool(backend, h, k, t, slope):
    """``backend``'s ramp, then its maxpool_forward: the default ramp_maxpool_forward."""
    return backend.maxpool_forward(backend.ramp(h, slope), k, t)


def ramp_plus_then_pool(backend, h, a, k, t, slope):
    """``backend``'s ramp_plus, then its maxpool_forward: the default ramp_plus_maxpool_forward."""
    return backend.maxpool_forward(backend.ramp_plus(h, a, slope), k, t)


def layer_then_pool(backend, forward, x, W, k, t, slope):
    """``backend``'s ``forward`` (its conv or untied forward pass), then its ramp_maxpool_forward: a block's default forward pass.

    Any object with the backend's functions as attributes serves as ``backend`` (the
    tuned tier's ``in-turn`` block paths hand it ``hebbref.kernels.tuned``).
    """
    h, layer_cache = getattr(backend, forward)(x, W)
    y, pool_cache = backend.ramp_maxpool_forward(h, k, t, slope)
    return y, layer_cache, h, (layer_cache, h, pool_cache)


def pool_then_increment(backend, increment, dy, cache, slope):
    """``backend``'s maxpool_ramp_backward, then its ``increment`` (conv or untied): a block's default backward pass."""
    layer_cache, h, pool_cache = cache
    delta = backend.maxpool_ramp_backward(dy, pool_cache, h, slope)
    return delta, getattr(backend, increment)(delta, layer_cache)


def dense_of_dropped(backend, x, mask, W, p):
    """``backend``'s dense_forward of dropout's output x (its mask and p not read): the default dropout_dense_forward."""
    h, cache = backend.dense_forward(x, W)
    return h, cache, cache


def dense_then_dropout_backward(backend, delta, cache, B, mask):
    """``backend``'s dense_input_error then its dropout_backward (unless B is None), and its dense_weight_increment:
    the default dense_dropout_backward."""
    e_below = None if B is None else backend.dropout_backward(backend.dense_input_error(delta, cache, B), mask)
    return e_below, backend.dense_weight_increment(delta, cache)


NUMPY = Backend(
    "numpy",
    layers.conv_forward,
    layers.conv_input_error,
    layers.conv_weight_increment,
    layers.locally_connected_forward,
    layers.locally_connected_input_error,
    layers.locally_connected_weight_increment,
    maxpool_ramp_backward=layers.maxpool_ramp_backward,
    ramp_maxpool_forward=layers.ramp_maxpool_forward,
    ramp_plus_maxpool_forward=layers.ramp_plus_maxpool_forward,
    maxpool_ramp_backward_of_sum=layers.maxpool_ramp_backward_of_sum,
    conv_backward=layers.conv_backward,
    conv_ramp_maxpool_forward=layers.conv_ramp_maxpool_forward,
    maxpool_ramp_conv_backward=layers.maxpool_ramp_conv_backward,
    locally_connected_ramp_maxpool_forward=layers.locally_connected_ramp_maxpool_forward,
    maxpool_ramp_locally_connected_backward=layers.maxpool_ramp_locally_connected_backward,
)


def _load_numpy():
    return NUMPY


def _load_numba():
    try:
        from .kernels import tuned
    except ImportError as error:  # numba missing or broken
        raise ConfigError(f"backend 'numba' cannot load: {error}") from error
    from . import runtime

    runtime.prepare()  # the tuned kernels' process settings, once (hebbref/runtime.py)
    return Backend(
        "numba",
        tuned.conv_forward,
        tuned.conv_input_error,
        tuned.conv_weight_increment,
        tuned.locally_connected_forward,
        tuned.locally_connected_input_error,
        tuned.locally_connected_weight_increment,
        **{name: getattr(tuned, name)
           for name in ("maxpool_forward", "maxpool_backward", "ramp", "ramp_derivative", "ramp_backward",
                        "ramp_plus", "ramp_backward_of_sum", "dropout_draw", "dropout_backward", "dense_forward",
                        "dense_input_error", "dense_weight_increment", "weight_update", "maxpool_ramp_backward",
                        "ramp_maxpool_forward", "ramp_plus_maxpool_forward", "maxpool_ramp_backward_of_sum",
                        "conv_backward",
                        "conv_ramp_maxpool_forward",
                        "maxpool_ramp_conv_backward", "locally_connected_ramp_maxpool_forward",
                        "maxpool_ramp_locally_connected_backward", "dropout_dense_forward",
                        "dense_dropout_backward")},
    )


def _readable_functions(how):
    """The readable tier's functions run ``how`` ("parallel" or "cuda"), in the Backend's order."""
    from .kernels import readable

    names = ("conv_forward", "conv_input_error", "conv_weight_increment", "locally_connected_forward",
             "locally_connected_input_error", "locally_connected_weight_increment")
    return [partial(getattr(readable, name), how=how) for name in names]


def _load_readable():
    try:
        from .kernels import readable
    except ImportError as error:
        raise ConfigError(f"backend 'readable' cannot load: {error}") from error

    extra = {name: partial(getattr(readable, name), how="parallel")
             for name in ("maxpool_forward", "maxpool_backward", "ramp", "ramp_derivative", "ramp_backward")}
    return Backend("readable", *_readable_functions("parallel"), **extra)


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
    numba_backend = _load_numba()  # pooling and the ramp stay on the CPU kernels
    return Backend(
        "cuda",
        *_readable_functions("cuda"),
        **{name: getattr(numba_backend, name)
           for name in ("maxpool_forward", "maxpool_backward", "ramp", "ramp_derivative", "ramp_backward")},
    )


# name -> loader; a loader imports its kernels only when asked for, and raises
# ConfigError with the reason when the backend cannot run on this machine.
_LOADERS = {"numpy": _load_numpy, "numba": _load_numba, "readable": _load_readable, "cuda": _load_cuda}
# the order in which the default is chosen: the first one that loads (cuda only on request: see above)
_PREFERENCE = ("numba", "numpy")


def backend_names():
    """The names a user may ask for."""
    return tuple(_LOADERS)


def default_backend_name():
    """$HEBBREF_BACKEND if set, else the first of numba, numpy that loads on this machine."""
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
