"""The loops that move runs of numbers compile to plain vector loads and stores: no gathers, scatters or masked moves.

A loop over a run of numbers vectorises with plain loads and stores only where LLVM can
prove the run contiguous. Numba wraps a negative signed index around, and the row of a
view has a stride known only when the kernel runs: either way LLVM moves the run with
gathers and scatters (a vector of addresses each), slower than the numbers they move.
``tuned_simd.copy_run`` and ``zero_run`` index by unsigned numbers, and the layouts of
Winograd's tiles and of the shifted path, the padded copies of the direct and row paths and
the marks of the untied block's register path are written with them (and ``add_rows``) on
flat arrays. Each kernel here is compiled afresh for this CPU (machine code loaded from
Numba's cache cannot be inspected) and its assembly searched. On a CPU without gathers
and scatters (no AVX2) there are none to find, and these tests hold trivially.

Not searched: the edges of ``tuned_simd.turn_over``, which read or write with a stride
by their nature.

The selects, which compiled for AVX2 alone become AVX masked loads and stores where a
number is read only for them, are searched in tests/test_kernels_built_for_avx2.py, in a
process that compiles for Haswell's features.
"""
import re

import numpy as np
import pytest
from numba import njit

from hebbref.kernels import tuned_conv_direct, tuned_conv_rows, tuned_conv_shifted, tuned_conv_winograd, tuned_simd

DTYPES = [np.float32, np.float64]


def gathers_and_scatters(function, *arguments):
    """The gather and scatter instructions in ``function`` compiled afresh for ``arguments``' types."""
    fresh = njit(function.py_func)
    fresh(*arguments)
    assembly = "\n".join(fresh.inspect_asm().values())
    return sorted(set(re.findall(r"\bv\w*(?:gather|scatter)\w*", assembly)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_run_is_copied_and_zeroed_by_plain_vector_moves(dtype):
    source, target = np.arange(100, dtype=dtype), np.full(100, -1, dtype)
    assert gathers_and_scatters(tuned_simd.copy_run, source, 7, target, 3, 50) == []
    np.testing.assert_array_equal(target[3:53], source[7:57])
    assert (target[:3] == -1).all() and (target[53:] == -1).all()
    assert gathers_and_scatters(tuned_simd.zero_run, target, 10, 20) == []
    assert (target[10:30] == 0).all() and (target[30:53] == source[34:57]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_winograd_s_transforms_move_runs_by_plain_vector_moves(dtype):
    """``to_tiles`` and ``from_tiles``, both made of ``add_rows``, on F(4×4, 3×3)'s matrices."""
    A, _, B_t = tuned_conv_winograd.winograd_matrices(4, 3)
    m, t, Th, Tw, C = 4, 6, 2, 3, 20
    Xc = np.random.default_rng(0).standard_normal((2, Th * m + 2, Tw * m + 2, C)).astype(dtype)
    V = np.empty((t * t, 2 * Th * Tw, C), dtype)
    assert gathers_and_scatters(tuned_conv_winograd.to_tiles, Xc, B_t.astype(dtype), m, Th, Tw, V) == []
    Yc = np.empty((2, Th * m, Tw * m, C), dtype)
    assert gathers_and_scatters(tuned_conv_winograd.from_tiles, V, A.T.copy().astype(dtype), m, Th, Tw, Yc) == []


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_shifted_path_s_layouts_move_runs_by_plain_vector_moves(dtype):
    """Images into columns from a block's first column on, and back, as ``shifted_products`` calls them."""
    N, C, H, W, k, before = 3, 5, 7, 9, 3, 1
    _, Ws, plane, tail = tuned_conv_shifted.geometry(H, W, k, before)
    x = np.random.default_rng(1).standard_normal((N, C, H, W)).astype(dtype)
    X = np.empty((C, 2 * (N * plane + tail)), dtype)
    first = N * plane + tail
    assert gathers_and_scatters(tuned_conv_shifted.images_to_columns, x, 0, N, before, Ws, plane, tail, X, first) == []
    out = np.ascontiguousarray(X[:, first:])  # a block's result, an array of its own as the kernels make it
    h = np.empty((N, C, H * W), dtype)
    assert gathers_and_scatters(tuned_conv_shifted.columns_to_images, out, 0, N, plane, Ws, H, W, before, h) == []
    np.testing.assert_array_equal(h.reshape(x.shape), x)


def test_a_run_of_float32_marks_goes_out_as_int32_by_plain_vector_moves():
    """The register path of the untied block keeps its winners' marks as float32 and writes them out as int32."""
    marks, out = np.arange(-20, 20, dtype=np.float32), np.zeros(40, np.int32)
    assert gathers_and_scatters(tuned_simd.copy_run, marks, 5, out, 1, 30) == []
    np.testing.assert_array_equal(out[1:31], np.arange(-15, 15))
    assert out[0] == 0 and (out[31:] == 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_padded_copies_move_rows_by_plain_vector_moves(dtype):
    """``pad_spatial`` (the direct and untied paths) and ``copy_padded`` (one image, the row and channel paths)."""
    x = np.random.default_rng(2).standard_normal((3, 4, 5, 6)).astype(dtype)
    assert gathers_and_scatters(tuned_conv_direct.pad_spatial, x, 1, 2) == []
    expected = np.pad(x, ((0, 0), (0, 0), (1, 2), (1, 2)))
    np.testing.assert_array_equal(tuned_conv_direct.pad_spatial(x, 1, 2), expected)
    np.testing.assert_array_equal(tuned_conv_direct.pad_spatial(x[:, ::-1], 1, 2), expected[:, ::-1])  # a view
    buffer = np.zeros(4 * 8 * 9 + 5, dtype)  # the border stays as it was: zero
    assert gathers_and_scatters(tuned_conv_rows.copy_padded, x, 2, 1, 8, 9, buffer) == []
    np.testing.assert_array_equal(buffer[: 4 * 8 * 9].reshape(4, 8, 9), expected[2])
    assert (buffer[4 * 8 * 9 :] == 0).all()

