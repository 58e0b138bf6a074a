# %% [markdown]
# # 11. Inside the kernels: one equation, three implementations
#
# Most of a training step of the paper's networks is spent in three sums of the
# convolutional layer (SPEC §2, §3, §5), with xp the zero-padded input and p the padding
# before:
#
# $$h[n,o,i,j] = \sum_{c,a,b} W[o,c,a,b]\; xp[n,c,i+a,j+b] \qquad\text{(forward field)}$$
#
# $$e[n,c,y,x] = \sum_{o,a,b} B[o,c,a,b]\; \delta[n,o,y+p-a,x+p-b] \qquad\text{(error sent down, } B = W \text{ or } R)$$
#
# $$G[o,c,a,b] = \sum_{n,i,j} \delta[n,o,i,j]\; xp[n,c,i+a,j+b] \qquad\text{(Hebbian increment)}$$
#
# and their untied twins (one filter per location). hebbref computes them in up to
# four ways, chosen by the network's `backend`:
#
# | backend | where | how |
# |---|---|---|
# | `numpy` | `hebbref/layers/conv.py` | the reference: a sliding-window view and one `tensordot` |
# | `readable` | `hebbref/kernels/readable.py` | one plain loop body per equation, compiled by Numba with `prange` |
# | `cuda`  | `hebbref/kernels/readable.py` | the same bodies as `numba.cuda` device functions, one GPU thread per output |
# | `numba` | `hebbref/kernels/tuned*.py`, `plan.py` | the tuned tier: reordered, unrolled loops, k·k BLAS products on shifted views, Winograd's tiles or sums held in vector registers (along rows or along output channels), whichever `plan.choose` measured fastest for the layer's shape |
#
# The reference is never replaced: it is the specification each kernel is tested
# against. This tutorial checks the agreement itself and measures the speeds.

# %%
import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numba
import numpy as np
from numba import cuda

import hebbref
from hebbref import reading
from hebbref.backends import get_backend
from hebbref.kernels import (plan, readable, tuned_conv_block, tuned_conv_direct, tuned_conv_rows, tuned_conv_shifted,
                             tuned_conv_winograd, tuned_simd, tuned_untied_block)
from hebbref.layers import conv

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = Path(os.environ.get("HEBBREF_FIGURES", HERE / "figures"))
FIGURES.mkdir(parents=True, exist_ok=True)
FAST = os.environ.get("HEBBREF_FAST", "") not in ("", "0")  # smaller batches, fewer repeats

# %% [markdown]
# ## The slowest, most obvious version: loops
#
# The forward field written exactly as the equation, in Python, for a tiny layer. The
# NumPy reference `hebbref.layers.conv_forward` must give the same numbers.

# %%
def conv_forward_loops(x, W):
    """h[n,o,i,j] = Σ_{c,a,b} W[o,c,a,b] xp[n,c,i+a,j+b], "same" padding, in plain loops."""
    N, C, H, Wd = x.shape
    O, _, k, _ = W.shape
    before, after = (k - 1) // 2, k - 1 - (k - 1) // 2
    xp = np.pad(x, ((0, 0), (0, 0), (before, after), (before, after)))
    h = np.zeros((N, O, H, Wd))
    for n in range(N):
        for o in range(O):
            for i in range(H):
                for j in range(Wd):
                    for c in range(C):
                        for a in range(k):
                            for b in range(k):
                                h[n, o, i, j] += W[o, c, a, b] * xp[n, c, i + a, j + b]
    return h


rng = np.random.default_rng(8)
x_tiny = rng.normal(size=(2, 3, 6, 6))  # (N, C_in, H, W)
W_tiny = rng.normal(size=(4, 3, 3, 3))  # (C_out, C_in, k, k)
h_reference, _ = conv.conv_forward(x_tiny, W_tiny)
np.testing.assert_allclose(h_reference, conv_forward_loops(x_tiny, W_tiny), rtol=1e-12, atol=1e-12)
W_even = rng.normal(size=(4, 3, 2, 2))  # an even kernel pads 0 before and 1 after
np.testing.assert_allclose(conv.conv_forward(x_tiny, W_even)[0], conv_forward_loops(x_tiny, W_even),
                           rtol=1e-12, atol=1e-12)

# %% [markdown]
# ## The NumPy reference: all windows at once
#
# `hebbref.layers.conv` pads the input, takes a sliding-window *view* of every k×k
# window (no copy) and contracts it with the filter bank in one `tensordot`:

# %%
print(inspect.getsource(conv.correlate_valid))
xp_tiny = conv.pad_spatial(x_tiny, 1, 1)  # (2, 3, 8, 8)
print("windows:", conv.windows(xp_tiny, 3).shape, "= (N, C_in, H, W, k, k)")

# %% [markdown]
# ## The readable tier: one loop body, compiled three ways
#
# `hebbref/kernels/readable.py` writes each equation once, as the body that computes
# *one* output element from its index, in plain Python that Numba can compile for a
# CPU and for a GPU (the way minitorch and umap write kernels). The forward field's
# body is the innermost part of the loops above:

# %%
print(inspect.getsource(readable.conv_forward_at))

# %% [markdown]
# `compiled_three_ways` wraps a body in the output's loops: once as plain `njit` loops,
# once with the outermost loop a `prange` (its iterations shared by the cores), and, on
# first use, as a `numba.cuda` kernel that gives each GPU thread one output element and
# calls the body compiled as a device function:

# %%
print(inspect.getsource(readable.compiled_three_ways))

# %% [markdown]
# The error sent down has no body of its own: it is the forward body applied to δ
# padded the other way round, with B flipped in space and its channel axes swapped,
# which is how the NumPy reference computes it too. That composition is written once:

# %%
print(inspect.getsource(readable.transposed_convolution))
for how in ("serial", "parallel"):
    for W_case in (W_tiny, W_even):
        np.testing.assert_allclose(readable.conv_forward(x_tiny, W_case, how=how)[0],
                                   conv_forward_loops(x_tiny, W_case), rtol=1e-12, atol=1e-12)
print("readable tier, serial and parallel: the loops' numbers, odd and even kernels")

# %% [markdown]
# ## The tuned tier, and how it chooses
#
# The `numba` backend runs the tuned tier: the same sums reordered for the machine.
# For a few terms per output, direct loops whose innermost loop runs along the
# flattened image (it vectorises) and which handle eight window terms and two output
# planes per pass, so that each value loaded serves sixteen multiply-adds, or four
# terms per pass: eight terms' factors alone fill the 16 vector registers of a CPU
# with AVX2 and no AVX-512, and on such a CPU four were faster (measured, BENCHMARKS.md).
# The plan measures both, as it measures block sizes:

# %%
print(inspect.getsource(tuned_conv_direct.add_terms.py_func))

# %% [markdown]
# For many terms, k·k matrix products on shifted views of the input laid out
# channel-major; no window is ever copied. `hebbref/kernels/tuned_conv_shifted.py`
# explains it:

# %%
print(tuned_conv_shifted.__doc__)

# %% [markdown]
# A third way spends fewer multiplications. Two outputs of a correlation with a
# three-tap kernel, y₀ = g₀d₀ + g₁d₁ + g₂d₂ and y₁ = g₀d₁ + g₁d₂ + g₂d₃, take six
# products when summed directly. Winograd's minimal filtering F(2, 3) gets them from
# four: transform the kernel (G g) and the four inputs (Bᵀ d), multiply the four pairs,
# and combine the products (Aᵀ). The matrices come from evaluating polynomials at the
# points 0, 1, -1 and ∞, so they hold only 0, ±1 and ±½:

# %%
A, G, B_t = tuned_conv_winograd.winograd_matrices(2, 3)
g, d = np.array([0.5, -1.0, 2.0]), np.array([1.0, 2.0, 3.0, 4.0])
print("Bᵀ =", B_t, "G =", G, "Aᵀ =", A.T, sep="\n")
four, six = A.T @ ((G @ g) * (B_t @ d)), np.array([g @ d[0:3], g @ d[1:4]])
np.testing.assert_allclose(four, six, rtol=1e-15)
print("four products:", four, " six products:", six)

# %% [markdown]
# In two dimensions a tile of 2×2 outputs takes 16 products per pair of channels
# where the direct sum takes 36 (F(4×4, 3×3): 36 where it takes 144), and for each of
# the 16 positions of a transformed tile the sum over the input channels is one matrix
# product over all tiles. `hebbref/kernels/tuned_conv_winograd.py` lays out the
# tiles, and `plan.APPLIES` says for which kernel widths the plan may take it:

# %%
x_w, W_w = rng.normal(size=(4, 8, 9, 9)), rng.normal(size=(6, 8, 3, 3))
h_w, _ = tuned_conv_winograd.forward(x_w, W_w, 2)
h_ref, _ = conv.conv_forward(x_w, W_w)
np.testing.assert_allclose(h_w, h_ref, rtol=1e-12, atol=1e-12)
print("Winograd's tiles against the reference, largest difference:", np.abs(h_w - h_ref).max())
print(inspect.getsource(plan.APPLIES["winograd"]).strip())

# %% [markdown]
# A fourth way does the direct sums, but keeps them where the CPU adds fastest: in its
# vector registers. `hebbref/kernels/tuned_conv_rows.py` takes a piece of an output row
# two vectors long for eight output channels at once, 16 vectors of sums, and adds every
# window term (c, a, b) into them: two loads of the input row, eight weights, 16 fused
# multiply-adds, and the sums are written out once at the end. (A CPU with 16 vector
# registers rather than 32 cannot hold 16 sums beside the loads, and four channels at a
# time may win there: the plan times both.) Numba would keep sums
# held in an array in memory, loading and storing them at every term, so the kernel
# holds them as values of a vector type that `hebbref/kernels/tuned_simd.py` gives Numba
# (a few LLVM operations: load, store, broadcast, multiply-add; the multiply-add is one
# fused instruction where the CPU has FMA, and a multiply and an add where it has not; a
# vector is 16, 8 or 4 numbers with AVX-512, AVX or neither). On a narrow image
# (11 or 6 wide in `deep`'s later blocks) most lanes of such a row would be wasted, and
# `hebbref/kernels/tuned_conv_channels.py` runs its vectors along the output channels
# instead. Both compute in float32 only (`plan.DTYPES`):

# %%
x_r, W_r = x_w.astype(np.float32), W_w.astype(np.float32)
h_r, _ = tuned_conv_rows.forward(x_r, W_r)
np.testing.assert_allclose(h_r, h_ref, rtol=0, atol=1e-5 * np.abs(h_ref).max())
print("rows of vector registers (float32) against the reference, largest difference:", np.abs(h_r - h_ref).max())
print(f"a vector on this CPU: {tuned_simd.LANES} float32 numbers; a piece of a row: {tuned_conv_rows.SPAN} outputs")

# %% [markdown]
# The dense layer of `simple` gets the same care for another reason. It reads dropout's
# output, and at `drop0.8` four fifths of its inputs are zeros: a BLAS product multiplies
# them all. `hebbref/kernels/tuned_dense_kept.py` lists the inputs each image kept and adds
# up only their rows of Wᵀ (the same register blocks of sums), and sends the error down to
# the kept inputs alone, since dropout's backward pass multiplies the rest by zero. The
# network hands the dense layer dropout's mask (`Dense.forward_of_dropped`), and which of
# the two wins, the gemm at the CPU's full speed or a fifth of the work in less regular
# loops, is again measured, not assumed.
#
# Which of these runs, and on how many threads, is decided in one function,
# `hebbref.kernels.plan.choose`: the first time a layer shape comes, it times every
# candidate on this machine (each path, at each of its block sizes where it works in
# cache-sized blocks, on one thread and on all; a candidate still more than twice as slow
# as the best, and by over a millisecond, after two rounds is timed no more) and keeps the
# fastest, in a small file under the CPU's model name (`HEBBREF_TUNE=0` skips the timing
# and takes a default from the shape). A conv layer's forward pass is timed with the
# weight increment that follows it: after the direct loops or the shifted products, their
# own, which reads the padded input or the block layout the pass made; after Winograd's
# tiles or the register paths, whose cache is the input itself, whichever of those four
# increments its own plan found fastest (`plan.increment_after`):

# %%
print(inspect.getsource(plan.choose))
print("plan file:", plan.cache_file(), "| timing", "on" if plan.timing_enabled() else "off")

# %% [markdown]
# ## Agreement, for all six functions
#
# Each backend is a table of functions with the reference's signatures
# (`hebbref.backends.get_backend(name)`). On random layers, tied and untied, odd and
# even kernels, float64 and float32, the Numba kernels give the reference's numbers up
# to rounding: the tolerance is scaled by the dtype's precision and the size of the sums.

# %%
reference, compiled = get_backend("numpy"), get_backend("numba")
DTYPES = (np.float64,) if FAST else (np.float64, np.float32)
SHAPES = [  # (N, C_in, H, W, C_out, k)
    (3, 1, 12, 10, 8, 5),  # few terms per output: direct loops by default
    (2, 16, 7, 7, 8, 3),  # many terms: shifted products by default
    (2, 3, 6, 6, 4, 2),  # even kernel
]


def six_functions(backend, x, W, delta):
    """The three tied and three untied sums of one backend, for one layer."""
    H, Wd = x.shape[2:]
    W_untied = np.ascontiguousarray(np.broadcast_to(W, (H, Wd) + W.shape)) * np.linspace(0.5, 1.5, H * Wd).reshape(
        H, Wd, 1, 1, 1, 1).astype(W.dtype)  # a different filter at every location
    h, cache = backend.conv_forward(x, W)
    h_untied, cache_untied = backend.locally_connected_forward(x, W_untied)
    return {
        "conv_forward": h,
        "conv_input_error": backend.conv_input_error(delta, cache, W),
        "conv_weight_increment": backend.conv_weight_increment(delta, cache),
        "locally_connected_forward": h_untied,
        "locally_connected_input_error": backend.locally_connected_input_error(delta, cache_untied, W_untied),
        "locally_connected_weight_increment": backend.locally_connected_weight_increment(delta, cache_untied),
    }


largest_error = {}
for dtype in DTYPES:
    for N, C_in, H, Wd, C_out, k in SHAPES:
        x = rng.normal(size=(N, C_in, H, Wd)).astype(dtype)
        W = rng.normal(size=(C_out, C_in, k, k)).astype(dtype)
        delta = rng.normal(size=(N, C_out, H, Wd)).astype(dtype)
        ours, theirs = six_functions(compiled, x, W, delta), six_functions(reference, x, W, delta)
        terms = max(C_in * k * k, C_out * k * k, N * H * Wd)  # the longest sum
        tolerance = 8 * np.finfo(dtype).eps * terms
        for name in ours:
            assert ours[name].dtype == theirs[name].dtype and ours[name].shape == theirs[name].shape, name
            scale = np.abs(theirs[name]).max()
            error = float(np.abs(ours[name] - theirs[name]).max() / scale)
            largest_error[name, np.dtype(dtype).name] = max(error, largest_error.get((name, np.dtype(dtype).name), 0))
            assert error < tolerance, f"{name} {dtype.__name__}: relative error {error:.1e} > {tolerance:.1e}"
for (name, dtype), error in largest_error.items():
    print(f"numba vs numpy  {name:36s} {dtype:8s} largest relative difference {error:.1e}")

# %% [markdown]
# ## A whole training step on each backend
#
# The backend is chosen when the network is built. Two `simple` networks (SPEC §6) with
# one seed start from the same W and R and draw the same dropout masks; after one `urfb`
# step on the same images their weights agree to rounding.

# %%
x_images, y_images = hebbref.load_dataset("fashion-mnist-mini", "train")
BATCH = 50 if FAST else 500
x_batch, y_batch = x_images[:BATCH], y_images[:BATCH]
networks = {name: hebbref.build_network("simple", input_shape=(1, 28, 28), n_classes=10, rule="urfb", seed=0,
                                        backend=name) for name in ("numpy", "numba")}
losses = {name: net.train_step(x_batch, y_batch, lr=0.1, loss="hinge") for name, net in networks.items()}
np.testing.assert_allclose(losses["numba"], losses["numpy"], rtol=1e-10)
for layer_numpy, layer_numba in zip(networks["numpy"].parameters(), networks["numba"].parameters()):
    np.testing.assert_allclose(layer_numba.W, layer_numpy.W, rtol=1e-9, atol=1e-12, err_msg=layer_numpy.name)
    np.testing.assert_allclose(layer_numba.R, layer_numpy.R, rtol=1e-9, atol=1e-12, err_msg=layer_numpy.name)
print("one urfb step of `simple`: numba and numpy weights agree; loss", round(losses["numpy"], 6))

# %% [markdown]
# ## What one step runs, in the order a reader meets it
#
# To follow a step through the code, `hebbref reading-list` (here its function,
# `hebbref.reading.reading_list`) takes one training step with Numba's compiler switched
# off, so that the readable tier's loops and bodies run as the Python they are written in,
# and lists every function of hebbref the step called, file by file in the order first
# met, with its number of calls. On the `readable` backend the conv layer's forward body
# is called once per element of h, and its increment's body once per element of G. The
# first layer sends no error further down, so the forward body is not called again for
# an input error (which the readable tier computes as a forward correlation of δ).

# %%
rows = reading.reading_list("simple", "urfb", "readable", batch=2)
files = reading.by_file(rows)
print(f"one urfb step of `simple`, batch 2: {len(rows)} functions in {len(files)} files")
for path, functions in files.items():
    print(f"  {path}: {len(functions)} functions")
print("hebbref/kernels/readable.py, calls each:")
for name, count in files["hebbref/kernels/readable.py"]:
    print(f"  {name:50s} {count:6d}")
calls = dict(files["hebbref/kernels/readable.py"])
assert calls["conv_forward_at"] == 2 * 32 * 28 * 28  # one per element of h: 2 images, 32 channels, 28 × 28
assert calls["conv_weight_increment_at"] == 32 * 1 * 5 * 5  # one per element of G

# %% [markdown]
# ## Three layers as one step: the layout between them
#
# Most of the untied layer's time in `simple` went not to its sums but to laying arrays
# out. Its kernels run along the images, with the images last, while the library hands
# arrays from layer to layer as (N, C, H, W): so h (C_out·H·W numbers per image, 50 MB
# at batch 500) was transposed after the sums, and δ transposed back before the
# increment. Where an untied layer, its ramp and a max pool sit in a row, the network
# takes the three as one step each way (`Backend.locally_connected_ramp_maxpool_forward`
# and `maxpool_ramp_locally_connected_backward`; the reference runs its own functions in
# a row), and the `numba` backend keeps every array between them with the images last:

# %%
print(tuned_untied_block.__doc__)

# %% [markdown]
# Laying an array out anew has a trap of its own in Numba. A loop that moves one number
# at a time, `out[m * N + n] = a[n * M + m]`, reads or writes with a stride, and Numba
# wraps a negative index as Python does, so LLVM cannot treat the indices as a run. It
# vectorises such a loop with gathers and scatters, which cost more than the numbers
# they move; in the untied block's `registers` path, writing the output this way took
# longer than the sums. The tuned tier turns such rectangles over in blocks of LANES ×
# LANES numbers held in vector registers (`tuned_simd.turn_over`). It moves runs by a
# loop that makes no slice per run and indexes by unsigned numbers, which Numba never
# wraps (`tuned_simd.copy_run`, `zero_run`), and LLVM compiles it with plain vector
# loads and stores. A slice assignment (`marks[a:b] = mark[c:d]`) compiles to a plain
# vector loop too, but with a fixed cost around it: where the runs are short and many (a
# pixel's channels in Winograd's transforms, a row of an 11-pixel image, a window's marks
# for 16 or 32 images), that cost outweighed the numbers moved (BENCHMARKS.md, "fifth
# session"). `tests/test_kernels_vector_moves.py` compiles these loops afresh and
# searches their assembly for gathers and scatters.
#
# A select has a trap of the same kind where the CPU has AVX2 but not AVX-512. Written
# `e[i] * s if abs(s * h[i]) <= 1 else 0`, e[i] is read only where the test holds, and
# LLVM makes the read a masked load; `where[m] = label if larger else where[m]` rewrites
# a number with itself where the test fails, and LLVM makes the write a masked store.
# AVX's masked moves are slow on AMD's CPUs: without its masked stores (and with its
# weights laid out anew), the untied block's `registers` path ran at 0.72 to 0.77 of its
# former time on a Zen 4 held to AVX2. The tuned tier reads every
# number before its select (`v = e[i] * s`, then `v if ... else 0`), and
# `tests/test_kernels_built_for_avx2.py` compiles the pools and blocks for AVX2 and finds
# no masked move in them (BENCHMARKS.md, "sixth session").
#
# A register-blocked kernel has a count to keep too: its sums stay in registers only if
# they fit there beside the vectors a step loads, in 32 vector registers with AVX-512 and
# 16 with AVX2. Where they do not, LLVM keeps a sum on the stack, and every step of the
# loop stores it and loads it again. The row path's increment of four channels held 12
# sums, four δ vectors and an input vector, 17 registers; it now holds the three input
# vectors and takes the δ vectors one at a time, 16 registers, and on the Zen 4 held to
# AVX2 its forward pass and increment took 0.54 to 0.91 of their former time (BENCHMARKS.md,
# "seventh session"). The channel path's eight positions at a time need 16 sums, two
# vectors of weights and a broadcast input, 19 registers, so it is built a second time
# from the same code for six (15 registers), and the plan times both; on an Intel Xeon held
# to AVX2, six took 0.50 to 0.79 of the time of eight (BENCHMARKS.md, "eighth session").
# `benchmarks/find_gathers.py` counts such loops, and the same test file holds the kernels
# that 16 registers take by default to none.

# %% [markdown]
# The tied conv layer of `simple`, its ramp and its pool go the same way (`conv ramp
# pool`: `Backend.conv_ramp_maxpool_forward` and `maxpool_ramp_conv_backward`). Its
# kernels keep the library's layout; what the block saves is writing arrays out and
# reading them back. It has its own plan, among three paths. The direct loops make one
# image's 32 planes at a time and the pool is taken from them while they are still in
# cache, so h is never written out; the increment forms δ plane by plane from the pool's
# winners, so δ is not either. The channel path keeps one image's sums in a buffer with
# the channels last, the layout the pool's window walk takes, and its increment forms
# each image's δ in its own layout from the winners. "in-turn" runs the backend's own
# functions one after the other (`hebbref/kernels/tuned_conv_block.py`; BENCHMARKS.md
# times the block against the steps in a row). In the tied network trained above, the
# first layer went as one step, by the path printed here:

# %%
assert networks["numba"].layers[0].in_block and networks["numpy"].layers[0].in_block
print(networks["numba"].layers[0].block_cache[0], "path;", tuned_conv_block.__doc__.splitlines()[0])

# %% [markdown]
# The untied `simple` network takes its own block; after one `urfb` step its weights
# agree with the reference's to rounding, as the tied network's do:

# %%
networks = {name: hebbref.build_network("simple", input_shape=(1, 28, 28), n_classes=10, rule="urfb", seed=0,
                                        backend=name, untied=True) for name in ("numpy", "numba")}
losses = {name: net.train_step(x_batch, y_batch, lr=0.1, loss="hinge") for name, net in networks.items()}
assert networks["numba"].layers[0].in_block  # the untied layer, its ramp and its pool went as one step
np.testing.assert_allclose(losses["numba"], losses["numpy"], rtol=1e-10)
for layer_numpy, layer_numba in zip(networks["numpy"].parameters(), networks["numba"].parameters()):
    np.testing.assert_allclose(layer_numba.W, layer_numpy.W, rtol=1e-9, atol=1e-12, err_msg=layer_numpy.name)
    np.testing.assert_allclose(layer_numba.R, layer_numpy.R, rtol=1e-9, atol=1e-12, err_msg=layer_numpy.name)
print("one urfb step of untied `simple`: numba and numpy weights agree; loss", round(losses["numpy"], 6))

# %% [markdown]
# ## The CUDA kernel, on a GPU or on the simulator
#
# The `cuda` backend runs the readable tier's bodies as device functions: thread t
# decodes its output index (n, o, i, j) from t and runs the body, the same Python
# function the CPU loops call. `hebbref/kernels/readable_cuda.py` builds the kernel
# (importing it needs `numba.cuda`, so its source is read here, not imported):

# %%
cuda_source = (Path(readable.__file__).parent / "readable_cuda.py").read_text(encoding="utf-8")
print(cuda_source[cuda_source.index("def kernel_for"):cuda_source.index("def flat_kernel_for")])

# %% [markdown]
# Without a GPU, Numba can *simulate* one: with `NUMBA_ENABLE_CUDASIM=1` set before
# Numba is imported, every GPU thread runs the kernel's Python code on the CPU. That is
# slow, so the check runs on small layers, but it runs exactly the kernel code. Since
# the variable must be set before import, the check runs in a fresh Python process,
# which prints its results as JSON. (The simulator's times say nothing about a GPU's.)

# %%
CUDA_CHECK = """
import json, sys, time
import numpy as np
from hebbref.backends import get_backend
reference, gpu = get_backend("numpy"), get_backend("cuda")
rng = np.random.default_rng(0)
report = {}
for N, C_in, H, Wd, C_out, k in json.loads(sys.argv[1]):
    x = rng.normal(size=(N, C_in, H, Wd))
    W = rng.normal(size=(C_out, C_in, k, k))
    W_untied = W * rng.uniform(0.5, 1.5, size=(H, Wd, 1, 1, 1, 1))  # a filter per location
    delta = rng.normal(size=(N, C_out, H, Wd))
    for backend in (reference, gpu):
        start = time.perf_counter()
        h, cache = backend.conv_forward(x, W)
        hu, cache_u = backend.locally_connected_forward(x, W_untied)
        out = {"conv_forward": h, "conv_input_error": backend.conv_input_error(delta, cache, W),
               "conv_weight_increment": backend.conv_weight_increment(delta, cache),
               "locally_connected_forward": hu,
               "locally_connected_input_error": backend.locally_connected_input_error(delta, cache_u, W_untied),
               "locally_connected_weight_increment": backend.locally_connected_weight_increment(delta, cache_u)}
        report.setdefault("seconds", {}).setdefault(backend.name, 0.0)
        report["seconds"][backend.name] += time.perf_counter() - start
        if backend is reference:
            expected = out
    for name, value in out.items():
        error = float(np.abs(value - expected[name]).max() / np.abs(expected[name]).max())
        report.setdefault("errors", {})[name] = max(error, report.get("errors", {}).get(name, 0.0))
print(json.dumps(report))
"""
CUDA_SHAPES = [(2, 2, 6, 6, 3, 3), (2, 3, 5, 5, 2, 2)]  # (N, C_in, H, W, C_out, k): odd and even kernels
simulated = subprocess.run([sys.executable, "-c", CUDA_CHECK, json.dumps(CUDA_SHAPES)],
                           env=dict(os.environ, NUMBA_ENABLE_CUDASIM="1"), capture_output=True, text=True,
                           timeout=600)
assert simulated.returncode == 0, simulated.stderr[-3000:]
cuda_report = json.loads(simulated.stdout.strip().splitlines()[-1])
for name, error in cuda_report["errors"].items():
    print(f"cuda (simulated) vs numpy  {name:36s} largest relative difference {error:.1e}")
    assert error < 1e-12, name
print("seconds for all six functions on these layers:",
      {name: round(value, 3) for name, value in cuda_report["seconds"].items()})

# %% [markdown]
# Where a GPU is present, the same backend runs on it for real; its speed joins the
# table below. Do not expect it to be fast: on an NVIDIA H200 (BENCHMARKS.md, by
# `benchmarks/bench_gpu.py`) a training step of `simple` took 114.5 ms with this
# backend, 77.7 ms with `numba` on the same machine's 16 CPU cores and 3.6 ms with
# PyTorch on the GPU. One thread per output element, sums in float64 and a copy across
# the PCIe bus at every call make a kernel that is easy to read and check, not a fast
# one; that is why `numba`, not `cuda`, is the default backend even where a GPU is.

# %%
GPU_PRESENT = cuda.is_available() and os.environ.get("NUMBA_ENABLE_CUDASIM") != "1"  # a real GPU
print("a CUDA GPU is", "present" if GPU_PRESENT else "not present: the CUDA kernels ran on the simulator only")

# %% [markdown]
# ## Speeds
#
# The first layer of `simple` on 28×28 grey images (5×5, 32 channels), tied and
# untied, and a whole training step of `simple`; each timed as the best of a few runs
# after a first call (which, for Numba, may compile or load the compiled code from its
# cache).

# %%
REPEATS = 3 if FAST else 7


def best_time(function, *arguments):
    """Seconds for one call: the fastest of REPEATS runs, after one warm-up call."""
    function(*arguments)
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        function(*arguments)
        times.append(time.perf_counter() - start)
    return min(times)


x_layer = x_batch.astype(np.float64)  # (B, 1, 28, 28)
W_layer = rng.normal(size=(32, 1, 5, 5)) * 0.2
W_layer_untied = np.ascontiguousarray(np.broadcast_to(W_layer, (28, 28) + W_layer.shape))
delta_layer = rng.normal(size=(BATCH, 32, 28, 28))
timings = {}
backends_timed = [("numpy", reference), ("numba", compiled)] + ([("cuda", get_backend("cuda"))] if GPU_PRESENT else [])
if GPU_PRESENT:
    networks["cuda"] = hebbref.build_network("simple", input_shape=(1, 28, 28), n_classes=10, rule="urfb",
                                             seed=0, backend="cuda")
for name, backend in backends_timed:
    _, cache = backend.conv_forward(x_layer, W_layer)
    _, cache_untied = backend.locally_connected_forward(x_layer, W_layer_untied)
    timings[name] = {
        "conv forward": best_time(backend.conv_forward, x_layer, W_layer),
        "conv error down": best_time(backend.conv_input_error, delta_layer, cache, W_layer),
        "conv increment": best_time(backend.conv_weight_increment, delta_layer, cache),
        "untied forward": best_time(backend.locally_connected_forward, x_layer, W_layer_untied),
        "untied error down": best_time(backend.locally_connected_input_error, delta_layer, cache_untied,
                                       W_layer_untied),
        "untied increment": best_time(backend.locally_connected_weight_increment, delta_layer, cache_untied),
        "simple: train step": best_time(networks[name].train_step, x_batch, y_batch, 0.1, "hinge"),
    }
print(f"batch {BATCH}, float64, best of {REPEATS}; {os.cpu_count()} CPU cores, "
      f"{numba.get_num_threads()} Numba threads")
print(f"{'':22s}" + "".join(f"{name + ' ms':>11s}" for name in timings) + "   numpy/numba")
for task in timings["numpy"]:
    print(f"{task:22s}" + "".join(f"{1e3 * timings[name][task]:11.2f}" for name in timings)
          + f"   {timings['numpy'][task] / timings['numba'][task]:8.1f}x")

# %%
fig, ax = plt.subplots(figsize=(8, 3.6))
tasks = list(timings["numpy"])
positions = np.arange(len(tasks))
width = 0.8 / len(timings)
for index, name in enumerate(timings):
    ax.bar(positions + (index - (len(timings) - 1) / 2) * width, [1e3 * timings[name][task] for task in tasks],
           width=width, label=name)
ax.set_xticks(positions)
ax.set_xticklabels(tasks, rotation=25, ha="right", fontsize=8)
ax.set_yscale("log")
ax.set_ylabel("milliseconds per call")
ax.set_title(f"batch {BATCH}, float64, this machine")
ax.legend()
fig.tight_layout()
fig.savefig(FIGURES / "11_speeds.png", dpi=100)
print("saved", FIGURES / "11_speeds.png")

# %% [markdown]
# These are this machine's numbers at this moment: on a small batch, or on cores busy
# with other work, waking threads and copying data can cost more than the sums
# themselves, and the NumPy reference can win. `benchmarks/` measures the kernels
# under controlled conditions, at the paper's batch size, against PyTorch and against
# the machine's matrix-product speed.
