"""One comparison of a kernel module's conv or untied functions with the NumPy reference,
shared by the readable-tier, tuned-tier and CUDA-simulator tests."""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import strategies as st

from hebbref import activations, layers
from hebbref.kernels import plan, readable

from comparisons import assert_close, tolerance


class Readable:
    """The readable tier's functions run one way ("serial", "parallel", "cuda"), under the reference's names."""

    def __init__(self, how):
        self.how = how

    def __getattr__(self, name):
        function = getattr(readable, name)
        return lambda *arguments: function(*arguments, how=self.how)


def check(ours, reference, what, rtol=None):
    """Same dtype as the reference, and the same numbers up to ``rtol`` (default 10 × one operation's)."""
    rtol = 10 * tolerance(reference.dtype) if rtol is None else rtol
    assert ours.dtype == reference.dtype, f"{what}: dtype {ours.dtype} vs reference {reference.dtype}"
    assert_close(ours, reference, rtol, what)


def conv_case(shape, dtype, seed):
    """x, W, R, δ for a tied conv layer of ``shape`` = (N, C_in, C_out, H, W, k)."""
    n, c_in, c_out, h, w, k = shape
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c_in, h, w)).astype(dtype)
    W, R = (rng.normal(size=(c_out, c_in, k, k)).astype(dtype) for _ in range(2))
    delta = rng.normal(size=(n, c_out, h, w)).astype(dtype)
    return x, W, R, delta


def check_conv_module(module, shape, dtype, seed, rtol, label, reference=layers):
    """forward, input error through W and through R, and weight increment of ``module`` vs ``reference``."""
    x, W, R, delta = conv_case(shape, dtype, seed)
    h_ours, cache = module.conv_forward(x, W)
    h_ref, cache_ref = reference.conv_forward(x, W)
    check(h_ours, h_ref, f"{label}conv_forward {shape}", rtol)
    for name, B in (("W", W), ("R", R)):
        check(module.conv_input_error(delta, cache, B), reference.conv_input_error(delta, cache_ref, B),
              f"{label}conv_input_error through {name} {shape}", rtol)
    check(module.conv_weight_increment(delta, cache), reference.conv_weight_increment(delta, cache_ref),
          f"{label}conv_weight_increment {shape}", rtol)
    if hasattr(module, "conv_backward"):  # the input error and the increment of one δ, asked for together
        e_below, G = module.conv_backward(delta, cache, R)
        check(e_below, reference.conv_input_error(delta, cache_ref, R), f"{label}conv_backward's input error {shape}",
              rtol)
        check(G, reference.conv_weight_increment(delta, cache_ref), f"{label}conv_backward's increment {shape}", rtol)


def check_locally_connected_module(module, shape, dtype, seed, rtol, label, reference=layers):
    """forward, input error through W and through R, and weight increment of ``module`` vs ``reference``."""
    n, c_in, c_out, h, w, k = shape
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c_in, h, w)).astype(dtype)
    W, R = (rng.normal(size=(h, w, c_out, c_in, k, k)).astype(dtype) for _ in range(2))
    delta = rng.normal(size=(n, c_out, h, w)).astype(dtype)
    h_ours, cache = module.locally_connected_forward(x, W)
    h_ref, cache_ref = reference.locally_connected_forward(x, W)
    check(h_ours, h_ref, f"{label}locally_connected_forward {shape}", rtol)
    for name, B in (("W", W), ("R", R)):
        check(module.locally_connected_input_error(delta, cache, B),
              reference.locally_connected_input_error(delta, cache_ref, B),
              f"{label}locally_connected_input_error through {name} {shape}", rtol)
    check(module.locally_connected_weight_increment(delta, cache),
          reference.locally_connected_weight_increment(delta, cache_ref),
          f"{label}locally_connected_weight_increment {shape}", rtol)


@st.composite
def pool_cases(draw):
    """(N, C, H, W, k, t): disjoint (k = t), overlapping (t < k) and gapped (t > k) windows."""
    k = draw(st.integers(1, 4))
    t = draw(st.integers(1, 4))
    return (draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 9)),
            draw(st.integers(1, 9)), k, t)


def check_maxpool_module(module, case, dtype, seed, ties, label):
    """Also with many ties (small integers): the first maximum in row-major order wins."""
    n, c, h, w, k, t = case
    rng = np.random.default_rng(seed)
    x = (rng.integers(-2, 3, size=(n, c, h, w)) if ties else rng.normal(size=(n, c, h, w))).astype(dtype)
    y_ours, cache = module.maxpool_forward(x, k, t)
    y_ref, cache_ref = layers.maxpool_forward(x, k, t)
    check(y_ours, y_ref, f"{label}maxpool_forward {case}")
    dy = rng.normal(size=y_ref.shape).astype(dtype)
    # a sum of at most k·k errors per cell, in another order: exact up to rounding
    check(module.maxpool_backward(dy, cache), layers.maxpool_backward(dy, cache_ref), f"{label}maxpool_backward {case}")


def check_ramp_module(module, dtype, seed, slope, label):
    """The same arithmetic, so the same bits, the two kinks |s·h| = 1 included."""
    rng = np.random.default_rng(seed)
    h = (rng.normal(size=(3, 2, 5, 4)) * 4).astype(dtype)
    h.flat[:4] = [1 / slope, -1 / slope, 0.0, 10.0]
    for name in ("ramp", "ramp_derivative"):
        got, want = getattr(module, name)(h, slope), getattr(activations, name)(h, slope)
        assert got.dtype == want.dtype and got.shape == want.shape, f"{label}{name}: {got.dtype}{got.shape} vs {want.dtype}{want.shape}"
        np.testing.assert_array_equal(got, want, err_msg=f"{label}{name}, slope {slope}, {np.dtype(dtype).name}")
    e = rng.normal(size=h.shape).astype(dtype)
    np.testing.assert_array_equal(module.ramp_backward(e, h, slope), activations.ramp_backward(e, h, slope),
                                  err_msg=f"{label}ramp_backward = e * ramp_derivative, slope {slope}")


def forcing_conv_path(path, block=None):
    """A ``plan.default_plan`` that takes ``path`` (at ``block``) for the conv equations wherever it applies.

    Timing is off in tests, so a test sets this in place of the default plan to run a whole
    network's conv layers on one path; every other equation keeps the real default.
    """
    real = plan.default_plan

    def default_plan(equation, arguments):
        chosen = real(equation, arguments)
        if equation in ("conv_forward", "conv_input_error") and plan.applies(equation, path, arguments):
            return plan.Plan(path, chosen.threads, block=block)
        return chosen
    return default_plan


# the features of an AVX2 CPU (Haswell's), for Numba to compile the kernels for one on a CPU with AVX-512
AVX2_FEATURES = ("+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+f16c,+fma,+fsgsbase,+lzcnt,+mmx,+movbe,+popcnt,"
                 "+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave")
# the features of an x86 CPU without AVX (Nehalem's: SSE4.2 at most, no fused multiply-add), for the same
SSE4_FEATURES = "+64bit,+cmov,+cx16,+mmx,+popcnt,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3"


def run_built_for(code, tmp_path, cpu, features, lanes, needs):
    """Run ``code`` in a Python process of its own whose Numba compiles for ``features`` scheduled for LLVM's CPU
    ``cpu`` (into an empty cache under ``tmp_path``), the ``lanes``-lane build of ``tuned_simd`` that such a CPU
    gets: -> what it printed. Skipped where this CPU builds ``lanes`` lanes already (the tests in process run that
    build) or cannot run the code (it lacks the feature ``needs``)."""
    import llvmlite.binding
    from hebbref.kernels import tuned_simd

    if tuned_simd.LANES == lanes:
        pytest.skip(f"the tests in this process run the {lanes}-lane build already")
    if not llvmlite.binding.get_host_cpu_features().get(needs, False):
        pytest.skip(f"this CPU cannot run code built for {cpu} (it has no {needs})")
    env = dict(os.environ, NUMBA_CPU_NAME=cpu, NUMBA_CPU_FEATURES=features, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def run_built_for_avx2(code, tmp_path):
    """``run_built_for`` Haswell's features: the 8-lane build, 16 vector registers, that a CPU without AVX-512 gets."""
    return run_built_for(code, tmp_path, "haswell", AVX2_FEATURES, 8, "avx2")


def run_built_for_sse4(code, tmp_path):
    """``run_built_for`` Nehalem's features: the 4-lane build, 16 vector registers and no fused multiply-add, that a
    CPU without AVX gets."""
    return run_built_for(code, tmp_path, "nehalem", SSE4_FEATURES, 4, "sse4.2")
