"""TUNED TIER. Dropout's training pass: the uniform numbers drawn on every thread, mask and output in one pass.  # SPEC §2

The reference (``hebbref.layers.dropout``) draws u = rng.random(shape), float64, and
forms m = [u >= p] / (1-p) in the layer's dtype and x ⊙ m. Two paths (``plan.choose``
times them), each giving the same u, the same bits of m and x ⊙ m, and the same
generator state after, as the reference:

"lanes" (``dropout_draw_lanes``), for NumPy's PCG64 (``default_rng``'s): the kernel
steps the generator itself, one chunk per thread, and forms m and x ⊙ m as each number
is drawn, so u is never written out. PCG64 is an affine step on a 128-bit state,
S <- M·S + inc (mod 2^128), each new state giving one 64-bit output; j steps compose to
S <- A_j·S + C_j (``_steps_ahead``), so the kernel takes the numbers of a block of L
from the state at the block's start at once, none waiting on the one before (stepped
one after another, each 128-bit product waits on the last, and that chain, not the
arithmetic, sets the pace). The chunks' first states are read off the generator as it
is advanced past the chunks before (``advance``). The upper half of a 128-bit product
and PCG's rotation come from two-line LLVM intrinsics (``_mul_high``, ``_rotate_right``),
and u is never formed: with k = output >> 11, u = k·2^-53 ≥ p exactly when the integer
k ≥ ⌈p·2^53⌉ (``keep_from``), so each number costs integer instructions only (about
twenty, no conversion to float64). On the 2-core Intel Xeon of
BENCHMARKS.md ("2026-12-02, late afternoon") it took dropout's draw in `simple` from
10.5 ms of a step to 4.7 to 5.2 (bench_training_step.py, table 6); L = 16, 64 and 256
were within 7 % of each other there (256 ahead on the largest array), and the plan
measures them. Comparing integers and rotating by the intrinsic, with the steps' factors
in rows of their own, made the path 2.3 to 2.7 times faster again at L = 256 on the Zen 4
EPYC of BENCHMARKS.md ("2026-12-03, third session": the medians of the rounds' ratios,
0.37 to 0.44, of ``benchmarks/bench_conv_paths.py --dropout --against 95d69fb``), with
the same bits.

"chunks" (``dropout_draw``), for every generator:

- the same u are drawn in one chunk per thread (``uniform_draws``). NumPy's PCG64 turns
  one 64-bit output into one float64, and can jump ahead (``advance``): chunk i draws
  from a copy of the generator jumped past the chunks before it, the copies fill their
  chunks at once (NumPy lets go of the GIL while it fills an array), and the generator
  itself is then jumped past all of them. Same numbers, and the same generator state
  after, as one ``rng.random(shape)``; any other generator (or one holding a buffered
  32-bit half) draws as the reference does;
- m and x ⊙ m come out of one parallel pass over u and x (``mask_and_apply``), the same
  arithmetic as the reference, so the same bits.

The backward pass, e ⊙ m, is one parallel pass too (``dropout_backward``).

Shapes: any x; out and m have its shape and dtype.
"""
import copy
import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import cgutils, types
from numba.extending import intrinsic

JUMPABLE = (np.random.PCG64, np.random.PCG64DXSM)  # one 64-bit output per float64, and ``advance``
_pools = {}  # (process id, worker count) -> ThreadPoolExecutor, made on first use


def _pool(workers):
    """A pool of ``workers`` threads of this process (a forked child makes its own: it has none of its parent's threads)."""
    key = (os.getpid(), workers)
    if key not in _pools:
        _pools[key] = ThreadPoolExecutor(workers, thread_name_prefix="hebbref-draws")
    return _pools[key]


def uniform_draws(rng, n, chunks):
    """rng.random(n): the same float64 numbers and the same state of ``rng`` after, drawn in ``chunks`` pieces at once."""
    bit_generator = rng.bit_generator
    jumpable = isinstance(bit_generator, JUMPABLE) and not bit_generator.state["has_uint32"]
    if chunks < 2 or n < chunks or not jumpable:
        return rng.random(n)
    u = np.empty(n)
    starts = [n * i // chunks for i in range(chunks + 1)]
    generators = []
    for i in range(chunks):
        jumped = copy.deepcopy(bit_generator)
        jumped.advance(starts[i])  # as if the numbers of the chunks before had been drawn
        generators.append(np.random.Generator(jumped))

    def fill(i):
        generators[i].random(out=u[starts[i] : starts[i + 1]])

    others = [_pool(chunks - 1).submit(fill, i) for i in range(1, chunks)]
    fill(0)  # this thread draws the first chunk
    for other in others:
        other.result()
    bit_generator.advance(n)  # past every number drawn, as one rng.random(n) leaves it
    return u


@njit(parallel=True, cache=True)
def mask_and_apply(x, u, p, scale, zero):
    """m[i] = scale where u[i] >= p, else 0; out[i] = x[i]·m[i]: -> (out, m), flat, in x's dtype."""
    out = np.empty_like(x)
    m = np.empty_like(x)
    for i in prange(x.size):
        m[i] = scale if u[i] >= p else zero
        out[i] = x[i] * m[i]
    return out, m


@njit(parallel=True, cache=True)
def times_mask(e, m):
    """e[i]·m[i]: -> a new flat array."""
    out = np.empty_like(e)
    for i in prange(e.size):
        out[i] = e[i] * m[i]
    return out


def dropout_backward(e, mask):
    """e_below = e ⊙ m in one parallel pass: the reference's product (one multiply, same dtype), the same bits.

    Arrays of other dtypes or shapes take NumPy's own product (and its promotion or broadcasting).
    """
    if not (isinstance(e, np.ndarray) and isinstance(mask, np.ndarray) and e.shape == mask.shape
            and e.dtype == mask.dtype and e.dtype in (np.float32, np.float64)):
        return e * mask
    e, mask = np.ascontiguousarray(e), np.ascontiguousarray(mask)
    return times_mask(e.reshape(-1), mask.reshape(-1)).reshape(e.shape)


def dropout_draw(x, p, rng=None, chunks=None):
    """(x ⊙ m, m) with m = [u >= p]/(1-p), u drawn from ``rng`` as ``rng.random(x.shape)`` draws it.

    ``chunks``: pieces drawn at once (default: Numba's thread count, which the plan sets).
    ``rng`` None: a generator of its own, seeded 0 (the plan times the path with it, so
    that timing never draws from a network's generator).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    x = np.ascontiguousarray(x)
    u = uniform_draws(rng, x.size, numba.get_num_threads() if chunks is None else chunks)
    dtype = x.dtype.type
    out, m = mask_and_apply(x.reshape(-1), u, float(p), dtype(1.0 / (1.0 - p)), dtype(0))
    return out.reshape(x.shape), m.reshape(x.shape)


# --- the "lanes" path: NumPy's PCG64 stepped inside the kernel ---------------------------------
# NumPy's PCG64 (its pcg64.h; the tests hold this to rng.random, number for number): a 128-bit
# state S, stepped S <- M·S + inc (mod 2^128), each step giving one 64-bit output
# rotr(hi ^ lo, hi >> 58) of the new state, and each float64 u = (output >> 11) · 2^-53.
PCG64_MULTIPLIER = (2549297995355413924 << 64) + 4865540595714422341
LANES = 64  # steps taken from one state at once, by default; a measured plan (plan.BLOCKS) times 64, 16 and 256
_MASK64, _MASK128 = (1 << 64) - 1, (1 << 128) - 1


@intrinsic
def _mul_high(typingctx, a, b):
    """The upper 64 bits of the 128-bit product a·b of two uint64 (one instruction on x86-64)."""
    def codegen(context, builder, signature, arguments):
        wide = ir.IntType(128)
        product = builder.mul(builder.zext(arguments[0], wide), builder.zext(arguments[1], wide))
        return builder.trunc(builder.lshr(product, ir.Constant(wide, 64)), ir.IntType(64))

    return types.uint64(types.uint64, types.uint64), codegen


@intrinsic
def _rotate_right(typingctx, a, r):
    """a rotated right by r bits, r < 64 (LLVM's funnel shift: one instruction on x86-64)."""
    def codegen(context, builder, signature, arguments):
        word = ir.IntType(64)
        shift = cgutils.get_or_insert_function(builder.module, ir.FunctionType(word, [word] * 3), "llvm.fshr.i64")
        return builder.call(shift, [arguments[0], arguments[0], arguments[1]])

    return types.uint64(types.uint64, types.uint64), codegen


def keep_from(p):
    """The least k with k·2^-53 ≥ p: u = k·2^-53 is kept (u ≥ p) exactly when k ≥ keep_from(p); as np.uint64.

    p·2^53 is exact in float64 (a power of two times p), and k is an integer, so
    k·2^-53 ≥ p ⟺ k ≥ p·2^53 ⟺ k ≥ ⌈p·2^53⌉.
    """
    return np.uint64(max(0, math.ceil(float(p) * 2.0**53)))


@functools.lru_cache(maxsize=32)  # keyed by each generator's increment: a sweep's many networks must not pile up
def _steps_ahead(inc, lanes):
    """(A, C), uint64 (2, lanes), row 0 the upper halves, row 1 the lower: j+1 steps of PCG64 from S give
    A[:, j]·S + C[:, j] (mod 2^128).

    A[:, j] = M^(j+1), C[:, j] = (M^j + … + M + 1)·inc: the affine map of one step, composed.
    """
    A, C = np.empty((2, lanes), np.uint64), np.empty((2, lanes), np.uint64)
    a, c = 1, 0
    for j in range(lanes):
        a, c = (a * PCG64_MULTIPLIER) & _MASK128, (c * PCG64_MULTIPLIER + inc) & _MASK128
        A[:, j], C[:, j] = (a >> 64, a & _MASK64), (c >> 64, c & _MASK64)
    return A, C


@njit(parallel=True, cache=True)
def draw_in_lanes_mask_and_apply(x, keep, scale, zero, starts, states, A, C):
    """u drawn in the kernel, then m and x ⊙ m as ``mask_and_apply``: -> (out, m), flat, in x's dtype.

    Chunk i covers x[starts[i]:starts[i+1]] from the PCG64 state ``states[i]`` ([high, low],
    the generator's state before its first number). Its numbers go by blocks of L = A.shape[1]:
    number j of a block comes from the state at the block's start S as A[:, j]·S + C[:, j], so
    the L steps of a block do not wait on each other (one step after another, each waits on
    the 128-bit product before it); the last state of a block starts the next. A number
    u = k·2^-53 is kept where k ≥ ``keep`` (``keep_from(p)``: the same as u ≥ p).
    """
    out = np.empty_like(x)
    m = np.empty_like(x)
    lanes = A.shape[1]
    a_high, a_low, c_high, c_low = A[0], A[1], C[0], C[1]  # each a contiguous row: plain loads, no strides
    for chunk in prange(starts.size - 1):
        high, low = states[chunk, 0], states[chunk, 1]
        start, stop = starts[chunk], starts[chunk + 1]
        for block in range((stop - start + lanes - 1) // lanes):
            first = start + block * lanes
            count = min(lanes, stop - first)
            x_block, out_block, m_block = x[first:first + count], out[first:first + count], m[first:first + count]
            step_high, step_low = high, low
            for j in range(count):
                product_low = low * a_low[j]  # (A·S + C) mod 2^128, in 64-bit halves
                step_low = product_low + c_low[j]
                carry = np.uint64(step_low < product_low)
                step_high = _mul_high(low, a_low[j]) + low * a_high[j] + high * a_low[j] + c_high[j] + carry
                # PCG's output: hi ^ lo rotated right by the state's top 6 bits; its top 53 bits are k
                output = _rotate_right(step_high ^ step_low, step_high >> np.uint64(58))
                m_block[j] = scale if output >> np.uint64(11) >= keep else zero
                out_block[j] = x_block[j] * m_block[j]
            high, low = step_high, step_low
    return out, m


def dropout_draw_lanes(x, p, rng=None, chunks=None, lanes=None):
    """``dropout_draw``'s numbers and generator state after, with the generator stepped inside the kernel.

    For NumPy's PCG64 with no buffered 32-bit half: the state of each chunk's first number
    is read off the generator as it is advanced past the chunks before (``advance``), and
    the kernel draws, masks and multiplies in one pass, with no array of u. Any other
    generator goes by ``dropout_draw``.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    bit_generator = rng.bit_generator
    if type(bit_generator) is not np.random.PCG64 or bit_generator.state["has_uint32"]:
        return dropout_draw(x, p, rng, chunks)
    x = np.ascontiguousarray(x)
    n = x.size
    chunks = max(1, min(n, numba.get_num_threads() if chunks is None else chunks))
    starts = np.array([n * i // chunks for i in range(chunks + 1)], dtype=np.int64)
    states = np.empty((chunks, 2), np.uint64)
    for i in range(chunks):
        state = bit_generator.state["state"]["state"]
        states[i] = state >> 64, state & _MASK64
        bit_generator.advance(int(starts[i + 1] - starts[i]))  # past this chunk: at the end, past all n
    A, C = _steps_ahead(bit_generator.state["state"]["inc"], lanes or LANES)
    dtype = x.dtype.type
    out, m = draw_in_lanes_mask_and_apply(x.reshape(-1), keep_from(p), dtype(1.0 / (1.0 - p)), dtype(0), starts,
                                          states, A, C)
    return out.reshape(x.shape), m.reshape(x.shape)
