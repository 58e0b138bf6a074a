"""Winograd's tiles compute the tied conv layer's three equations of the NumPy reference.  # SPEC §2, §3, §5

``hebbref.kernels.tuned_conv_winograd`` against ``hebbref.layers.conv``: the one-dimensional
identity behind it, then forward pass, input error and weight increment on odd and even
kernels, tiles that run past the image, images smaller than a tile, blocks of one image
to all of them with a short last block, one thread and all; the plan's two Winograd
paths through the ``numba`` backend in whole networks; and how far float32 rounding
goes (the "winograd" path as far as the direct sums, "winograd-4x4" further).
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hebbref
from hebbref import layers
from hebbref.kernels import plan, tuned_conv_shifted
from hebbref.kernels import tuned_conv_winograd as winograd

from comparisons import assert_close, tolerance
from kernel_checks import conv_case, forcing_conv_path
from strategies import SEEDS


@pytest.mark.parametrize("m, r", [(1, 3), (2, 1), (2, 2), (2, 3), (3, 2), (4, 3), (2, 5), (4, 4), (4, 5), (6, 3)])
def test_one_dimension_m_outputs_of_an_r_tap_correlation_from_t_products(m, r):
    """y_i = Σ_a g_a d_{i+a} (i < m) equals Aᵀ [(G g) ⊙ (Bᵀ d)]: t = m + r - 1 products."""
    A, G, B_t = winograd.winograd_matrices(m, r)
    t = m + r - 1
    assert A.shape == (t, m) and G.shape == (t, r) and B_t.shape == (t, t)
    rng = np.random.default_rng(m * 10 + r)
    for _ in range(5):
        g, d = rng.normal(size=r), rng.normal(size=t)
        direct = np.array([sum(g[a] * d[i + a] for a in range(r)) for i in range(m)])
        assert_close(A.T @ ((G @ g) * (B_t @ d)), direct, 1e-12, f"F({m}, {r})")


@pytest.mark.parametrize("m, k", [(2, 3), (3, 2), (4, 3), (2, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_kernel_transforms_and_their_derivative_are_g_w_gt_and_its_transpose(m, k, dtype):
    """U[a·t+b, o, c] = (G W[o,c] Gᵀ)[a,b], and ``sandwich_back`` is its transpose: <U(W), dU> = <W, sandwich_back(dU)>.

    W as the input error hands it over (flipped in space, channel axes swapped: a view, not contiguous), and
    with O ≠ C, so that a swapped channel axis or a G[a,j]·G[b,i] shows.
    """
    A, G, B_t = winograd.winograd_matrices(m, k)
    t = G.shape[0]
    rng = np.random.default_rng(m * 10 + k)
    W = rng.normal(size=(5, 3, k, k)).astype(dtype)
    view = W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (3, 5, k, k), as transposed_convolution leaves B
    for kernel in (W, view):
        U = winograd.sandwich(G, kernel)
        expected = np.einsum("ai,ocij,bj->aboc", G, kernel.astype(np.float64), G)
        assert U.shape == (t * t,) + kernel.shape[:2] and U.dtype == np.float64
        assert_close(U, expected.reshape(U.shape), 1e-12, f"U of F({m}, {k})")
        dU = rng.normal(size=U.shape).astype(dtype)
        dW = winograd.sandwich_back(G, dU)
        assert dW.shape == kernel.shape and dW.dtype == np.float64
        assert_close(np.sum(U * dU), np.sum(kernel * dW), 1e-10, f"<U(W), dU> = <W, dW> for F({m}, {k})")
        assert_close(dW, np.einsum("ai,aboc,bj->ocij", G, dU.reshape(t, t, *U.shape[1:]), G),
                     1e-12, f"dW of F({m}, {k})")


def test_too_many_points_asked_for_is_an_error():
    with pytest.raises(ValueError, match="finite points"):
        winograd.winograd_matrices(6, 5)


@pytest.mark.parametrize("k", [2, 3])
def test_the_exact_path_uses_transforms_of_zeros_ones_and_halves(k):
    """The "winograd" path's tile (plan): points 0, ±1, ∞ only, so its transforms round no more than a sum does."""
    m = 5 - k
    for matrix in winograd.winograd_matrices(m, k):
        assert set(np.unique(np.abs(matrix))) <= {0.0, 0.5, 1.0}, f"F({m}, {k}): {matrix}"


@pytest.mark.parametrize("weights", [[0.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 0.0, -3.0], [0.5, 2.0, -1.0, 4.0],
                                     [0.0, 0.0, 0.0, 0.0, 7.0]])
def test_rows_are_added_in_runs_two_weights_at_a_time(weights):
    """add_rows: target run r = Σ_b w_b · source[start + b·step + r·jump :][:length], every other cell untouched."""
    weights = np.array(weights)
    rng = np.random.default_rng(len(weights))
    source = rng.normal(size=200)
    target = np.full(60, np.nan)
    start, step, length, reps, source_jump, target_jump = 3, 11, 4, 3, 5, 9
    winograd.add_rows(weights, source, start, step, len(weights), target, 2, length, reps, source_jump, target_jump)
    for r in range(reps):
        expected = sum(w * source[start + b * step + r * source_jump :][:length] for b, w in enumerate(weights))
        np.testing.assert_allclose(target[2 + r * target_jump :][:length], expected, rtol=1e-14, atol=1e-14)
    written = np.zeros(60, dtype=bool)
    for r in range(reps):
        written[2 + r * target_jump :][:length] = True
    assert np.isnan(target[~written]).all()


# (N, C_in, C_out, H, W, k, m)
SHAPES = [
    (3, 2, 3, 7, 6, 3, 2),  # 7 rows: the last tile row runs past the image
    (2, 3, 2, 6, 6, 2, 3),  # even k pads 0 before, 1 after
    (2, 2, 3, 9, 5, 3, 4),  # F(4×4, 3×3), non-square
    (1, 4, 4, 1, 1, 3, 2),  # a 1×1 image: one tile, every tap but the centre reads padding
    (3, 2, 2, 3, 2, 3, 4),  # an image smaller than a tile
    (4, 3, 2, 5, 7, 4, 2),  # even k = 4 pads 1 before, 2 after (the module takes any width)
    (3, 2, 3, 6, 5, 5, 2),  # k = 5, six points
    (2, 3, 2, 5, 5, 1, 2),  # 1×1 kernel: no padding
]


def _reference(x, W, R, delta):
    h, xp = layers.conv_forward(x, W)
    return h, layers.conv_input_error(delta, xp, R), layers.conv_weight_increment(delta, xp)


@pytest.mark.parametrize("images", [1, 2, 100])  # blocks of one image, of two (a short last one), of all
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_input_error_and_increment_equal_the_reference_in_float64(shape, images):
    *conv, m = shape
    x, W, R, delta = conv_case(tuple(conv), np.float64, sum(shape))
    h_ref, e_ref, G_ref = _reference(x, W, R, delta)
    h, cache = winograd.forward(x, W, m, images)
    assert cache[1:] == (W.shape[-1], m, images)
    assert_close(h, h_ref, 1e-12, f"h {shape}")
    assert_close(winograd.input_error(delta, R, m, images), e_ref, 1e-12, f"e through R {shape}")
    assert_close(winograd.weight_increment(delta, cache), G_ref, 1e-12, f"G {shape}")


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 4), c_in=st.integers(1, 5), c_out=st.integers(1, 5), h=st.integers(1, 9),
       w=st.integers(1, 9), k_m=st.sampled_from([(2, 3), (3, 2), (3, 4), (2, 2)]), images=st.integers(1, 4),
       dtype=st.sampled_from([np.float32, np.float64]), seed=SEEDS)
def test_drawn_shapes_in_both_dtypes(n, c_in, c_out, h, w, k_m, images, dtype, seed):
    """Both dtypes keep their own (gemm reads bare pointers); float32 within ten times one operation's rounding."""
    k, m = k_m
    x, W, R, delta = conv_case((n, c_in, c_out, h, w, k), dtype, seed)
    h_ref, e_ref, G_ref = _reference(x, W, R, delta)
    rtol = 10 * tolerance(dtype)
    h_ours, cache = winograd.forward(x, W, m, images)
    e_ours = winograd.input_error(delta, R, m, images)
    G_ours = winograd.weight_increment(delta, cache)
    for ours, ref, what in ((h_ours, h_ref, "h"), (e_ours, e_ref, "e"), (G_ours, G_ref, "G")):
        assert ours.dtype == np.dtype(dtype), what
        assert_close(ours, ref, rtol, f"{what} {(n, c_in, c_out, h, w, k)}, m {m}, {images} images a block")


@pytest.mark.parametrize("extra", [0, 3])  # whole blocks of output channels: by registers; and a part block: gemm
@pytest.mark.parametrize("k, m", [(2, 3), (3, 2), (3, 4)])
def test_float32_products_in_registers_over_several_blocks_of_channels(k, m, extra):
    """In float32 the products go by vector registers (``register_products``) where the output channels fill whole
    blocks (of ``BLOCK``): two of them, more tiles than one pass, blocks of images with a short last one; the input
    error's products have the layer's input channels for theirs (two whole blocks too). A part block goes by gemm."""
    assert winograd.by_registers(np.float32) and not winograd.by_registers(np.float64)
    c_in, c_out = 2 * winograd.BLOCK, 2 * winograd.BLOCK + extra
    x, W, R, delta = conv_case((5, c_in, c_out, 7, 6, k), np.float32, 10 * k + m + extra)
    h_ref, e_ref, G_ref = _reference(x, W, R, delta)
    h, cache = winograd.forward(x, W, m, 2)
    assert_close(h, h_ref, 10 * tolerance(np.float32), f"h, k {k}, m {m}, {c_out} output channels")
    e = winograd.input_error(delta, R, m, 2)
    assert_close(e, e_ref, 10 * tolerance(np.float32), f"e, k {k}, m {m}, {c_in} channels below")
    assert_close(winograd.weight_increment(delta, cache), G_ref, 10 * tolerance(np.float32), "G")
    U = winograd.kernel_transforms(W, m)[0].astype(np.float32)
    assert winograd.register_weights(U).shape == ((U.shape[0], 0) if extra else (U.shape[0], U[0].size))


def test_one_thread_and_all_give_the_same_numbers():
    """The blocks and the parts of the increment are shared out by the thread count; the sums stay the same."""
    x, W, R, delta = conv_case((9, 3, 4, 6, 5, 3), np.float64, 3)
    results = []
    for threads in sorted({1, plan.numba.get_num_threads()}):
        with plan.on_threads(threads):
            h, cache = winograd.forward(x, W, 2, 2)
            results.append((h, winograd.input_error(delta, R, 2, 2), winograd.weight_increment(delta, cache)))
    _, _, G_ref = _reference(x, W, R, delta)
    assert_close(results[-1][2], G_ref, 1e-12, "G on all threads")
    for one, every in zip(results[0], results[-1]):
        assert_close(every, one, 1e-13, "one thread against all")


def test_blocks_are_whole_images_shared_evenly_by_the_threads():
    threads = plan.numba.get_num_threads()
    per_block = winograd.images_per_block(500, 8)
    blocks = -(-500 // per_block)
    assert 4 <= per_block <= 8 and blocks % threads == 0
    assert winograd.images_per_block(1, 8) == 1
    per_block = winograd.images_per_block(3, 100)  # fewer images than asked for
    assert -(-3 // per_block) % threads == 0 or per_block == 1


def test_channels_go_last_after_the_padding_and_come_back():
    x = np.arange(1, 2 * 3 * 2 * 2 + 1, dtype=np.float64).reshape(2, 3, 2, 2)  # two 2×2 images, 3 channels
    Xc = np.full((2, 4, 4, 3), np.nan)
    winograd.channels_last(x, 0, 2, 1, Xc)
    expected = np.zeros((2, 4, 4, 3))
    expected[:, 1:3, 1:3, :] = x.transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(Xc, expected)
    Yc = np.full((2, 3, 3, 3), np.nan)  # a tile's row and column past the 2×2 images: never read
    Yc[:, :2, :2, :] = x.transpose(0, 2, 3, 1)
    h = np.full((3, 3, 2, 2), np.nan)
    winograd.channels_first(Yc, 1, 3, h)  # into images 1 and 2 of h
    np.testing.assert_array_equal(h[1:], x)
    assert np.isnan(h[0]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C, H, W, before", [(20, 7, 5, 1), (33, 4, 9, 0), (17, 6, 6, 2)])
def test_wide_images_go_channels_last_and_back_number_for_number(dtype, C, H, W, before):
    """Channels and pixels past a vector's lanes (blocks turned over in registers for float32, then the edges),
    from the second image of a block on; the way back straight into h and through a padded scratch image."""
    x = np.random.default_rng(C).standard_normal((4, C, H, W)).astype(dtype)
    Xc = np.full((2, H + 2 * before + 1, W + 2 * before + 2, C), np.nan, dtype)
    winograd.channels_last(x, 1, 3, before, Xc)
    expected = np.zeros_like(Xc)
    expected[:, before : before + H, before : before + W] = x[1:3].transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(Xc, expected)
    for past in (0, 1, 3):  # tiles that cover the images exactly, and tiles past them
        Yc = np.full((2, H + past, W + past, C), np.nan, dtype)
        Yc[:, :H, :W] = x[1:3].transpose(0, 2, 3, 1)
        h = np.full((4, C, H, W), np.nan, dtype)
        winograd.channels_first(Yc, 2, 4, h)  # into images 2 and 3 of h
        np.testing.assert_array_equal(h[2:], x[1:3])
        assert np.isnan(h[:2]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_rounding_of_each_path_on_a_wide_layer(dtype):
    """On 64 → 64 channels (deep 2b's shape, 16 images): "winograd" rounds as the shifted products do, "winograd-4x4"
    about 30 times more (points up to ±2), measured here at under 3e-5 of the largest output, against 1e-6."""
    x, W, R, delta = conv_case((16, 64, 64, 11, 11, 3), dtype, 5)
    W, R = W / 24, R / 24  # outputs of order one
    h_ref, e_ref, G_ref = _reference(x.astype(np.float64), W.astype(np.float64), R.astype(np.float64),
                                     delta.astype(np.float64))
    h_shifted, cache = tuned_conv_shifted.forward(x, W)
    shifted = max(np.abs(h_shifted - h_ref).max() / np.abs(h_ref).max(),
                  np.abs(tuned_conv_shifted.weight_increment(delta, cache) - G_ref).max() / np.abs(G_ref).max())
    for m, bound in ((2, max(3 * shifted, 1e-14)), (4, 3e-5 if dtype == np.float32 else 1e-13)):
        h, cache = winograd.forward(x, W, m)
        assert_close(h, h_ref, bound, f"h, m = {m}")
        assert_close(winograd.input_error(delta, R, m), e_ref, bound, f"e, m = {m}")
        assert_close(winograd.weight_increment(delta, cache), G_ref, bound, f"G, m = {m}")
    if dtype == np.float32:
        assert shifted < 1e-6


def test_the_plan_offers_winograd_only_where_it_applies():
    kernel = lambda k: (None, np.empty((4, 4, k, k)))  # noqa: E731
    assert [k for k in range(1, 8) if plan.applies("conv_forward", "winograd", kernel(k))] == [2, 3]
    assert [k for k in range(1, 8) if plan.applies("conv_input_error", "winograd-4x4", kernel(k))] == [3]
    names = {c.path for c in plan.candidates("conv_forward", kernel(5)).values()}
    assert names == {"direct", "shifted"}
    names = {c.path for c in plan.candidates("conv_input_error", (None, None, np.empty((4, 4, 3, 3)))).values()}
    assert {"winograd", "winograd-4x4"} <= names


def test_the_plan_paths_run_their_tiles():
    """"winograd": F(2×2, 3×3) and F(3×3, 2×2), whose transforms hold 0, ±1, ±½; "winograd-4x4": F(4×4, 3×3)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 6, 6))
    for path, k, m in (("winograd", 3, 2), ("winograd", 2, 3), ("winograd-4x4", 3, 4)):
        _, (tag, cache) = plan.PATHS["conv_forward"][path](x, rng.normal(size=(2, 3, k, k)))
        assert (tag, cache[1], cache[2]) == (path, k, m)


@pytest.mark.parametrize("path", ["winograd", "winograd-4x4"])
@pytest.mark.parametrize("rule", ["bp", "urfb"])
def test_a_network_on_the_winograd_paths_learns_what_the_reference_learns(path, rule, monkeypatch):
    """A sum block of two 3×3 layers, a pool and a 2×2 layer: the numba backend's plans forced onto the path."""
    # blocks of two images: several, the last one short
    monkeypatch.setattr(plan, "default_plan", forcing_conv_path(path, block=2))
    plan.forget()
    try:
        architecture = "sum[conv3:4,conv3:4] pool2s2 conv2:5 ramp dense7 ramp out"
        reference, ours = (hebbref.build_network(architecture, (3, 9, 8), 4, rule=rule, backend=backend, seed=2)
                           for backend in ("numpy", "numba"))
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(7, 3, 9, 8)), rng.integers(0, 4, size=7)
        for _ in range(3):
            for net in (reference, ours):
                net.train_step(x, y, lr=0.05, loss="hinge")
        taken = {p.path for key, p in plan.plans_in_this_process().items() if key.startswith("conv_")}
        assert path in taken, taken
    finally:
        plan.forget()
    for p, q in zip(reference.parameters(), ours.parameters()):
        assert_close(q.W, p.W, 1e-9, f"{path} {rule} {p.name} W")
        assert_close(q.R, p.R, 1e-9, f"{path} {rule} {p.name} R")
