"""The readable tier equals the NumPy reference, body by body, compiled serial and parallel.  # SPEC §2, §3, §5

Every function of ``hebbref.kernels.readable`` gets the inputs its reference in
``hebbref.layers`` / ``hebbref.activations`` gets, on hypothesis-drawn shapes (batch,
channels, sizes, odd and even kernels) in float32 and float64, run as ``njit`` loops
and as ``njit(parallel=True)`` loops, and must return the same shape, the same dtype
and the same numbers up to a dtype-aware tolerance. The CUDA compilation of the same
bodies is checked on a GPU or under the simulator in ``tests/test_cuda.py``.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hebbref import layers
from hebbref.kernels import readable

from comparisons import tolerance
from kernel_checks import (
    Readable, check, check_conv_module, check_locally_connected_module, check_maxpool_module, check_ramp_module,
    pool_cases,
)
from strategies import SEEDS, conv_shapes

DTYPES = st.sampled_from([np.float32, np.float64])
HOW = ["serial", "parallel"]


def rtol(dtype):
    """Sums of a few hundred products, in another order than the reference's: 10 × one operation's."""
    return 10 * tolerance(dtype)


@pytest.mark.parametrize("how", HOW)
@settings(max_examples=20, deadline=None)
@given(shape=conv_shapes(max_batch=3, max_channels=4, max_size=7, max_kernel=5), dtype=DTYPES, seed=SEEDS)
def test_readable_conv_equals_the_reference(how, shape, dtype, seed):
    check_conv_module(Readable(how), shape, dtype, seed, rtol(np.dtype(dtype)), f"readable {how} ")


@pytest.mark.parametrize("how", HOW)
@settings(max_examples=20, deadline=None)
@given(shape=conv_shapes(max_batch=3, max_channels=4, max_size=6, max_kernel=4), dtype=DTYPES, seed=SEEDS)
def test_readable_locally_connected_equals_the_reference(how, shape, dtype, seed):
    check_locally_connected_module(Readable(how), shape, dtype, seed, rtol(np.dtype(dtype)), f"readable {how} ")


@pytest.mark.parametrize("k", [2, 3, 4, 5])
@pytest.mark.parametrize("how", HOW)
def test_readable_conv_on_odd_and_even_kernels(how, k):
    """Each kernel width once, fixed shapes (even k pads 0 or 1 more after than before)."""
    check_conv_module(Readable(how), (2, 3, 4, 6, 5, k), np.float64, k, rtol(np.dtype(np.float64)), f"k={k} ")
    check_locally_connected_module(Readable(how), (2, 2, 3, 5, 6, k), np.float64, k, rtol(np.dtype(np.float64)),
                                   f"k={k} ")


@pytest.mark.parametrize("how", HOW)
@settings(max_examples=30, deadline=None)
@given(case=pool_cases(), dtype=DTYPES, seed=SEEDS, ties=st.booleans())
def test_readable_maxpool_equals_the_reference(how, case, dtype, seed, ties):
    check_maxpool_module(Readable(how), case, dtype, seed, ties, f"readable {how} ")


@pytest.mark.parametrize("how", HOW)
@settings(max_examples=10, deadline=None)
@given(dtype=DTYPES, seed=SEEDS, slope=st.sampled_from([0.5, 1.0, 0.25]))
def test_readable_ramp_equals_the_reference_bit_for_bit(how, dtype, seed, slope):
    check_ramp_module(Readable(how), dtype, seed, slope, f"readable {how} ")


def test_the_serial_and_parallel_loops_differ_only_in_prange():
    """One body, compiled twice: the parallel driver is the serial one with its outer loop a prange."""
    import inspect

    source = inspect.getsource(readable.compiled_three_ways.__init__)
    serial = source[source.index("def serial"):source.index("@njit(parallel=True)")]
    parallel = source[source.index("def parallel"):source.index("self.serial")]
    strip = lambda text: [line.split("#")[0].rstrip() for line in text.splitlines()[1:] if line.strip()]  # noqa: E731
    assert [line.replace("prange", "range") for line in strip(parallel)] == strip(serial)


def test_readable_functions_accept_views_that_are_not_contiguous():
    """A transposed view gives the same answer as its contiguous copy."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 5, 2, 3)).transpose(2, 3, 0, 1)  # (2, 3, 5, 5), not contiguous
    W = rng.normal(size=(4, 3, 3, 3))
    check(readable.conv_forward(x, W)[0], layers.conv_forward(x, W)[0], "conv_forward on a view")
    W_untied = rng.normal(size=(5, 5, 4, 3, 3, 3))
    check(readable.locally_connected_forward(x, W_untied)[0], layers.locally_connected_forward(x, W_untied)[0],
          "locally_connected_forward on a view")
    check(readable.maxpool_forward(x, 3, 2)[0], layers.maxpool_forward(x, 3, 2)[0], "maxpool on a view")


@pytest.mark.parametrize("view", ["flipped 1x1", "reversed", "transposed", "plain"])
def test_every_operand_reaches_a_kernel_with_plain_row_major_strides(view):
    """A 1×1 filter flipped in space keeps a negative stride that NumPy still calls contiguous;
    numba.cuda could not copy it to a GPU (found on an H200: the conv input error for k = 1 failed)."""
    A = np.arange(24.0).reshape(2, 3, 4)
    A = {"flipped 1x1": np.ones((1, 3, 1, 1))[:, :, ::-1, ::-1].transpose(1, 0, 2, 3), "reversed": A[:, ::-1],
         "transposed": A.transpose(2, 0, 1), "plain": A}[view]
    ours = readable.row_major(A)
    assert ours.strides == np.empty(A.shape, A.dtype).strides
    assert np.array_equal(ours, A)
    if view == "plain":
        assert ours is A  # no copy where none is needed


def test_an_unknown_way_to_run_is_refused():
    with pytest.raises(ValueError, match="how"):
        readable.conv_forward(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 1, 1)), how="fortran")
