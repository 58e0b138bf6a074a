"""What the tests of the two blocks share (``conv ramp pool`` and ``lc ramp pool``, a layer, its
ramp and the pool above taken as one step each way): their cases and inputs, one run of a
block path forward and backward, and a batch for a network that takes them."""
import numpy as np
from hypothesis import strategies as st

from hebbref.kernels import plan


@st.composite
def block_cases(draw):
    """(N, C_in, C_out, H, W, k of the layer, k and t of the pool): odd and even kernels, odd channel counts."""
    return (draw(st.integers(1, 5)), draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 8)),
            draw(st.integers(1, 8)), draw(st.integers(1, 5)), draw(st.integers(1, 4)), draw(st.integers(1, 4)))


def block_input(case, dtype, seed, slope, untied):
    """x, W (one filter bank per location when ``untied``) and dy, with fields h large enough that σ
    saturates many cells (they tie at ±1 in σ(h))."""
    n, c_in, c_out, h, w, k, pool_k, pool_t = case
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c_in, h, w)).astype(dtype)
    W = (rng.normal(size=((h, w) if untied else ()) + (c_out, c_in, k, k)) * 2 / slope).astype(dtype)
    ho, wo = -(-h // pool_t), -(-w // pool_t)
    dy = (rng.normal(size=(n, c_out, ho, wo)) * 10.0 ** rng.integers(-3, 4, size=(n, c_out, ho, wo))).astype(dtype)
    return x, W, dy


def network_batch(input_shape, n=11, seed=0):
    """(x, labels) of ``n`` images of ``input_shape`` for a network with 4 classes."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n,) + input_shape) * 2, rng.integers(0, 4, size=n)


def formed(value):
    """An array a block path returned, or the array its function forms."""
    return value() if callable(value) else value


def bits(a):
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def run_path(equation, name, block, x, W, pool_k, pool_t, slope, dy):
    """Path ``name`` of the block ``equation`` forward, with its block size ``block`` (None: the default),
    then its backward pass: -> (y, the layer's cache, the block's cache, h, δ, G), h and δ formed."""
    function = plan.PATHS[equation][name]
    if block is not None:
        keyword = plan.BLOCKS[name][1]
        function = (lambda f: lambda *a: f(*a, **{keyword: block}))(function)
    y, layer_cache, h, cache = function(x, W, pool_k, pool_t, slope)
    delta, G = plan.BLOCK_BACKWARD[equation][name](dy, cache, slope)
    return y, layer_cache, cache, formed(h), formed(delta), G
