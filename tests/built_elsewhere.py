"""The kernels as another CPU gets them, compiled here in a process of its own: the parts that process runs.

Numba takes the CPU it compiles for when it starts, so a test of the build that another
x86 CPU gets (``tuned_simd``'s 8 lanes for AVX2, 4 for a CPU without AVX; 16 vector
registers; no fused multiply-add without FMA) runs ``program(lanes)`` in a process of its
own, compiling for that CPU's features into an empty Numba cache
(``kernel_checks.run_built_for_avx2``, ``run_built_for_sse4``), and reads its report:

- **conv rows**: ``tuned_conv_rows`` (groups of eight and of four output channels) and
  ``tuned_conv_channels`` (eight and six positions or terms per pass) compute the NumPy
  reference's three equations.
- **untied registers**: the untied block's ``registers`` path (both groups) gives what
  ``images-last`` gives, bit for bit, on sums exact in any order.
- **pools and blocks**: the pools, the ramp's backward passes and the conv and untied
  blocks (their own paths at each block size, forward and backward) run, to be compiled.
- **winograd**: Winograd's three equations compute the reference's, with output channels
  that fill whole blocks (the products in vector registers) and that do not (gemm's): the
  test of ``tests/test_conv_winograd.py`` that checks this, run in the process.
- **drop dense**: the kept path of a dense layer above dropout (``tuned_dense_kept``) computes
  the reference's products around its blocks of outputs and its panels: tests of
  ``tests/test_dropout_dense.py``, run in the process.
- **no fmaf**: no kernel compiled by the parts above calls the C library's ``fmaf``
  (``benchmarks/find_gathers.fmaf_calls``). Where
  the CPU has no FMA, LLVM makes a fused multiply-add (``llvm.fma``) such a call for every
  lane, many times slower than a multiply and an add (``tuned_simd.vfma``).
- **multiply-adds**: the channel path's loops hold fused multiply-adds where the CPU has
  FMA, and packed multiplies and adds where it has not.
- **masked moves**: no kernel compiled by the parts holds an AVX masked load or store
  (``benchmarks/find_gathers.slow_moves``). Compiled for AVX2, a number read only where a
  select needs it becomes a masked load, and a select between a new number and the one
  just read from the same place a masked store (``vmaskmovps``), slow on AMD's CPUs; the
  kernels read every number before the select.
- **sums on the stack**: the register-blocked kernels that a CPU with 16 vector registers
  takes by default (four output channels at a time, six positions or terms at a time on
  the channel path, and the untied block's images-last sums and increment) keep every sum
  in a register: no innermost loop of theirs holds a multiply-add of vectors and a store of
  a vector to the stack (``find_gathers.spilled_sums``). Built for SSE4.2 one does, and is
  checked only where the CPU has FMA (``NEEDS_FMA``).
"""
from pathlib import Path

TESTS = Path(__file__).resolve().parent
FIND_GATHERS = TESTS.parent / "benchmarks" / "find_gathers.py"

# each part runs in the process's namespace; an exception fails that part alone
PARTS = {}

PARTS["conv rows"] = """
from hebbref import layers
from hebbref.kernels import tuned_conv_channels, tuned_conv_rows, tuned_simd
assert tuned_simd.LANES == LANES_BUILT and tuned_conv_rows.CHANNELS_PER_GROUP == 4, tuned_simd.LANES
rng = np.random.default_rng(0)
for n, c_in, c_out, h, w, k in [(2, 3, 9, 5, 19, 3), (3, 16, 20, 4, 7, 2), (1, 2, 5, 3, 35, 5)]:
    x = rng.normal(size=(n, c_in, h, w)).astype(np.float32)
    W = rng.normal(size=(c_out, c_in, k, k)).astype(np.float32)
    delta = rng.normal(size=(n, c_out, h, w)).astype(np.float32)
    h_ref, cache_ref = layers.conv_forward(x, W)
    e_ref, G_ref = layers.conv_input_error(delta, cache_ref, W), layers.conv_weight_increment(delta, cache_ref)
    for module, blocks in ((tuned_conv_rows, {"group": 8}), (tuned_conv_rows, {"group": 4}),
                           (tuned_conv_channels, {"span": 8}), (tuned_conv_channels, {"span": 6})):
        h_ours, cache = module.forward(x, W, **blocks)
        for ours, ref in ((h_ours, h_ref), (module.input_error(delta, W, **blocks), e_ref),
                          (module.weight_increment(delta, cache), G_ref)):
            assert np.abs(ours - ref).max() <= 2e-4 * np.abs(ref).max(), (module.__name__, blocks, (n, c_in, c_out, h, w, k))
"""

PARTS["untied registers"] = """
from hebbref.kernels import plan, tuned_locally_connected, tuned_simd
assert tuned_simd.LANES == LANES_BUILT, tuned_simd.LANES
rng = np.random.default_rng(0)
for shape in [(37, 53), (53, 37), (8, 8), (5, 3)]:  # turn_over's whole blocks and edges, both paths' layouts
    a = rng.normal(size=shape).astype(np.float32)
    assert np.array_equal(tuned_locally_connected.batch_last(a), a.T), shape
for n, c_in, c_out, h, w, k, pool_k, pool_t in [(21, 2, 9, 7, 6, 3, 3, 2), (5, 1, 3, 5, 9, 5, 2, 2), (40, 3, 17, 4, 4, 2, 3, 1)]:
    W = rng.integers(-2, 3, size=(h, w, c_out, c_in, k, k)).astype(np.float32)  # exact sums: the same bits
    x = rng.integers(-3, 4, size=(n, c_in, h, w)).astype(np.float32)
    dy = rng.normal(size=(n, c_out, -(-h // pool_t), -(-w // pool_t))).astype(np.float32)
    out = []
    for path, block in (("images-last", {}), ("registers", {"group": 4}), ("registers", {"group": 8})):
        y, _, h_of, cache = plan.PATHS["locally_connected_ramp_maxpool_forward"][path](x, W, pool_k, pool_t, 0.5,
                                                                                        **block)
        delta, G = plan.BLOCK_BACKWARD["locally_connected_ramp_maxpool_forward"][path](dy, cache, 0.5)
        out.append((y, cache.winner, G, h_of()))
    for ours in out[1:]:
        for a, b in zip(ours, out[0]):
            assert np.array_equal(a, b), (n, c_in, c_out, h, w, k, pool_k, pool_t)
"""

PARTS["pools and blocks"] = """
from hebbref.kernels import plan
rng = np.random.default_rng(0)
h, e, a = (rng.standard_normal((3, 4, 9, 9)).astype(np.float32) for _ in range(3))
plan.PATHS["ramp_backward"]["loops"](e, h, 0.5)
plan.PATHS["ramp_backward_of_sum"]["loops"](e, a, h, 0.5)
for k, t in ((3, 2), (2, 2)):
    for path, forward in plan.PATHS["maxpool_forward"].items():
        forward(h, k, t)
    for path, forward in plan.PATHS["ramp_maxpool_forward"].items():
        y, cache = forward(h, k, t, 0.5)
    plan.PATHS["ramp_plus_maxpool_forward"]["plane-groups"](h, a, k, t, 0.5)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    plan.PATHS["maxpool_ramp_backward"]["loops"](dy, cache, h, 0.5)
    plan.PATHS["maxpool_ramp_backward_of_sum"]["loops"](e, dy, cache, h, 0.5)
x = rng.standard_normal((20, 2, 8, 8)).astype(np.float32)
for equation, W in (("conv_ramp_maxpool_forward", rng.standard_normal((5, 2, 3, 3))),
                    ("locally_connected_ramp_maxpool_forward", rng.standard_normal((8, 8, 5, 2, 3, 3)))):
    for path in ("direct", "channels", "images-last", "registers"):  # the blocks' own ("in-turn" calls the above)
        for block in plan.BLOCKS.get(path, ("", "", [None]))[2] if path in plan.PATHS[equation] else ():
            forward = plan.path_function(equation, plan.Plan(path, 1, block=block))
            y, _, _, cache = forward(x, W.astype(np.float32), 3, 2, 0.5)
            plan.BLOCK_BACKWARD[equation][path](np.ones_like(y), cache, 0.5)
"""

PARTS["winograd"] = """
# tests/test_conv_winograd.py's check of the products in registers, run in this build: output channels that fill two
# whole blocks of BLOCK (the products in vector registers) and a part block (gemm's), every tile size the plan offers
import sys
sys.path.insert(0, TESTS)
import test_conv_winograd
for k, m in [(2, 3), (3, 2), (3, 4)]:
    for extra in (0, 3):
        test_conv_winograd.test_float32_products_in_registers_over_several_blocks_of_channels(k, m, extra)
"""

PARTS["drop dense"] = """
# tests/test_dropout_dense.py's check of the kept path around its blocks of WIDTH outputs and its panels, in this build
import sys
sys.path.insert(0, TESTS)
import test_dropout_dense
test_dropout_dense.test_the_kept_path_around_its_blocks_and_panels()
test_dropout_dense.test_a_kept_input_of_value_zero_still_gets_its_error()
"""

PARTS["no fmaf"] = """
# no kernel compiled by the parts above calls the C library's fused multiply-add, one number at a time
calls = {f"{module}.{name}": counts["fmaf calls"] for module, name, _, counts in slow_kernels() if counts["fmaf calls"]}
assert not calls, calls
"""

PARTS["multiply-adds"] = """
# the channel path's loops (built by the conv rows part): one fused instruction per multiply-add where the CPU has
# FMA (AVX2 does), a packed multiply and a packed add where it has not (SSE4.2; AVX without AVX2, Sandy Bridge's)
import re
from hebbref.kernels import tuned_conv_channels
text = "\\n".join(tuned_conv_channels.correlate_group.inspect_asm(signature)
                   for signature in tuned_conv_channels.correlate_group.signatures)
fused, multiplies = re.findall(r"\\bvfn?madd\\w*ps\\b", text), re.findall(r"\\bv?mulps\\b", text)
from hebbref.kernels import tuned_simd
if tuned_simd.compiles_for("fma"):
    assert len(fused) >= 12 and not multiplies, (len(fused), len(multiplies))
else:
    assert not fused and multiplies and re.search(r"\\bv?addps\\b", text), (len(fused), len(multiplies))
"""

PARTS["masked moves"] = """
masked = {f"{module}.{name}": dict(counts) for module, name, _, counts in slow_kernels()
          if counts["masked load"] or counts["masked store"]}
assert not masked, masked
"""

# the register-blocked kernels that 16 vector registers get by default, each compiled by a part above
SIXTEEN_REGISTERS = ["tuned_conv_rows.correlate_group_rows for 4", "tuned_conv_rows.increment_group_rows for 4",
                     "tuned_conv_channels.correlate_group for 6", "tuned_conv_channels.increment_group for 6",
                     "tuned_untied_registers.piece_of_windows for 4", "tuned_untied_block.increment_from_winners",
                     "tuned_locally_connected.forward_images_last", "tuned_dense_kept.sum_rows",
                     "tuned_dense_kept.kept_dot_products", "tuned_dense_kept.kept_dot_products_turning"]

# Without FMA a multiply-add is a multiply into a register of its own and then an add. Built for SSE4.2 alone, the
# row increment's group of four (12 sums, three input vectors and δ's: all 16 registers where FMA adds in place)
# keeps one sum on the stack; built for AVX without FMA (Sandy Bridge's features) it kept them in registers (a
# scratch check). So it is checked only where the CPU has FMA. The plan times that build against the group of eight
# and the channel path's increment (on the SSE4.2 stand-in, BENCHMARKS.md, seventeenth session, it took it for no
# layer)
NEEDS_FMA = ["tuned_conv_rows.increment_group_rows for 4"]

PARTS["sums on the stack"] = """
import importlib
from hebbref.kernels import tuned_simd
spilled = {}
for name in SIXTEEN_REGISTERS:  # named as find_gathers names them; "for 6": the builds for the constant 6 alone
    if name in NEEDS_FMA and not tuned_simd.compiles_for("fma"):
        continue
    kernel_name, _, span = name.partition(" for ")
    module, listed = kernel_name.split(".")
    kernel = dict(find_gathers.kernels_of(importlib.import_module("hebbref.kernels." + module)))[listed]
    builds = [signature for signature in kernel.signatures if not span or str(signature[-1]) == f"Literal[int]({span})"]
    assert builds, name + " was not compiled here"
    loops = sum(find_gathers.spilled_sums(kernel.inspect_asm(signature)) for signature in builds)
    if loops:
        spilled[name] = loops
assert not spilled, spilled
"""


def program(lanes):
    """The program a process of its own runs for a CPU of ``lanes``-lane vectors: every part in turn, then its
    report, {part: "ok" or its traceback}, as its last line of output."""
    return f"""
import importlib, importlib.util, json, traceback
import numpy as np
spec = importlib.util.spec_from_file_location("find_gathers", {str(FIND_GATHERS)!r})
find_gathers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(find_gathers)
SIXTEEN_REGISTERS = {SIXTEEN_REGISTERS!r}
NEEDS_FMA = {NEEDS_FMA!r}
LANES_BUILT = {lanes!r}
TESTS = {str(TESTS)!r}
_found = []


def slow_kernels():  # find_gathers.slow_kernels once, after the parts that compile: each assembly is emitted once
    if not _found:
        _found.append(find_gathers.slow_kernels())
    return _found[0]


report = {{}}
for name, code in {PARTS!r}.items():
    try:
        exec(code, dict(globals()))
        report[name] = "ok"
    except Exception:
        report[name] = traceback.format_exc()
print(json.dumps(report))
"""
