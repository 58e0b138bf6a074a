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
    per_block = tuned_conv_shifted.images_per_block(500, 13 * 13)  # deep 2b: 11×11 padded to 13×13
    blocks = -(-500 // per_block)
    assert per_block * 169 <= 2048 + 169, "a block is about COLUMNS_PER_BLOCK columns"
    assert blocks % threads == 0 or blocks == 500
    assert tuned_conv_shifted.images_per_block(1, 13 * 13) == 1
