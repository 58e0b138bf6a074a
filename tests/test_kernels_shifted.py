"""The shifted-products conv kernels equal the NumPy reference, block by block.  # SPEC §2, §3, §5

``hebbref.kernels.tuned_conv_shifted`` against ``hebbref.layers.conv`` on small shapes
chosen to reach every branch: odd and even kernels (padding before ≠ after), fewer and
more input than output channels, both input-error paths (correlation and scatter), one
image, a 1×1 image, non-square images, and blocks of several images with an uneven
last block.
"""
import numpy as np
import pytest

from hebbref import layers
from hebbref.kernels import tuned_conv_shifted

from comparisons import assert_close

RTOL = {np.float32: 1e-4, np.float64: 1e-10}

# (N, C_in, C_out, H, W, k)
SHAPES = [
    (2, 3, 5, 7, 6, 3),  # C_in < C_out: where the scatter is the default input error
    (3, 5, 2, 5, 8, 4),  # C_in > C_out: where the correlation is; even k pads 1 before, 2 after
    (1, 4, 4, 6, 6, 2),  # one image, even k
    (2, 2, 3, 1, 1, 3),  # 1×1 images: every tap but the centre reads padding
    (4, 1, 1, 3, 5, 5),  # kernel wider than the image
    (5, 3, 2, 4, 3, 1),  # 1×1 kernel: no padding
    (9, 6, 7, 5, 4, 3),  # several blocks once COLUMNS_PER_BLOCK is small
    (7, 3, 4, 4, 4, 3),  # 100 columns per block: blocks of 2, 2, 2 and 1 images
]


def check(ours, reference, dtype, what):
    assert ours.dtype == reference.dtype, f"{what}: dtype {ours.dtype} vs reference {reference.dtype}"
    assert_close(ours, reference, RTOL[dtype], what)


@pytest.mark.parametrize("columns_per_block", [2048, 100, 40])  # one block, blocks of a few images, of one
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_shifted_conv_equals_the_reference(shape, dtype, columns_per_block, monkeypatch):
    monkeypatch.setattr(tuned_conv_shifted, "COLUMNS_PER_BLOCK", columns_per_block)
    n, c_in, c_out, h, w, k = shape
    rng = np.random.default_rng(sum(shape))
    x = rng.normal(size=(n, c_in, h, w)).astype(dtype)
    W, R = (rng.normal(size=(c_out, c_in, k, k)).astype(dtype) for _ in range(2))
    delta = rng.normal(size=(n, c_out, h, w)).astype(dtype)

    h_ours, cache = tuned_conv_shifted.forward(x, W)
    h_ref, cache_ref = layers.conv_forward(x, W)
    check(h_ours, h_ref, dtype, f"conv_forward {shape}")
    for name, B in (("W", W), ("R", R)):
        for path in ("correlation", "scatter"):
            ours = getattr(tuned_conv_shifted, f"input_error_{path}")(delta, B)
            check(ours, layers.conv_input_error(delta, cache_ref, B), dtype, f"input_error_{path} through {name} {shape}")
    check(tuned_conv_shifted.weight_increment(delta, cache), layers.conv_weight_increment(delta, cache_ref),
          dtype, f"conv_weight_increment {shape}")


def test_blocks_are_whole_images_shared_evenly_by_the_threads(monkeypatch):
    monkeypatch.setattr(tuned_conv_shifted, "COLUMNS_PER_BLOCK", 2048)
    threads = tuned_conv_shifted.numba.get_num_threads()
    _, _, plane, _ = tuned_conv_shifted.geometry(11, 11, 3, 1)  # deep 2b
    per_block = tuned_conv_shifted.images_per_block(500, plane)
    blocks = -(-500 // per_block)
    assert per_block * plane <= 2048 + plane, "a block is about COLUMNS_PER_BLOCK columns"
    assert blocks % threads == 0 or blocks == 500
    assert tuned_conv_shifted.images_per_block(1, plane) == 1


@pytest.mark.parametrize("k, before, gap", [(1, 0, 0), (2, 0, 1), (3, 1, 1), (4, 1, 2), (5, 2, 2)])
def test_images_share_their_zero_gaps(k, before, gap):
    """One gap of max(p, k-1-p) zeros after each row and image pads both sides: 11×11 takes 12×12 with k = 3."""
    got_gap, Ws, plane, tail = tuned_conv_shifted.geometry(11, 11, k, before)
    assert (got_gap, Ws, plane) == (gap, 11 + gap, (11 + gap) ** 2)
    # the last output position's taps end inside the block: plane + tail columns
    assert (11 - 1 + k - 1) * Ws + (11 - 1 + k - 1) < plane + tail


def test_image_layout_puts_pixels_after_the_padding_and_zeros_everywhere_else():
    x = np.arange(1, 2 * 1 * 2 * 3 + 1, dtype=np.float32).reshape(2, 1, 2, 3)  # two 2×3 images
    _, Ws, plane, tail = tuned_conv_shifted.geometry(2, 3, 3, 1)  # gap 1: rows of 4, planes of 3 rows
    X = np.full((1, 2 * plane + tail), np.nan, dtype=np.float32)
    tuned_conv_shifted.images_to_columns(x, 0, 2, 1, Ws, plane, tail, X)
    first = [0, 0, 0, 0,
             0, 1, 2, 3,
             0, 4, 5, 6]
    second = [0, 0, 0, 0,
              0, 7, 8, 9,
              0, 10, 11, 12]
    np.testing.assert_array_equal(X[0], first + second + [0] * tail)
