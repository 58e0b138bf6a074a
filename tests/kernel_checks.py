"""One comparison of a kernel module's untied functions with the NumPy reference,
shared by the Numba tests and the CUDA-simulator tests."""
import numpy as np

from hebbref import layers

from comparisons import assert_close


def check(ours, reference, rtol, what):
    """Same dtype as the reference, and the same numbers up to ``rtol``."""
    assert ours.dtype == reference.dtype, f"{what}: dtype {ours.dtype} vs reference {reference.dtype}"
    assert_close(ours, reference, rtol, what)


def check_locally_connected_module(module, shape, dtype, seed, rtol, label):
    """forward, input error through W and through R, and weight increment of ``module`` vs the reference."""
    n, c_in, c_out, h, w, k = shape
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c_in, h, w)).astype(dtype)
    W, R = (rng.normal(size=(h, w, c_out, c_in, k, k)).astype(dtype) for _ in range(2))
    delta = rng.normal(size=(n, c_out, h, w)).astype(dtype)
    h_ours, cache = module.locally_connected_forward(x, W)
    h_ref, cache_ref = layers.locally_connected_forward(x, W)
    check(h_ours, h_ref, rtol, f"{label}locally_connected_forward {shape}")
    for name, B in (("W", W), ("R", R)):
        check(module.locally_connected_input_error(delta, cache, B),
              layers.locally_connected_input_error(delta, cache_ref, B), rtol,
              f"{label}locally_connected_input_error through {name} {shape}")
    check(module.locally_connected_weight_increment(delta, cache),
          layers.locally_connected_weight_increment(delta, cache_ref), rtol,
          f"{label}locally_connected_weight_increment {shape}")
