"""TUNED TIER. Vectors of float32 as Numba values: the few LLVM operations that the register-blocked kernels use.

Numba vectorises an innermost loop, but it cannot keep a block of sums in registers
across a loop of terms: each sum lives in an array, and every term loads and stores
it again (LLVM cannot prove that the array of sums is not one of the arrays read). A
kernel written with these values says what a hand-written kernel says: a value of type
``f32v`` is one LLVM vector of ``LANES`` float32 numbers, a local variable like a float,
so a loop that updates sixteen of them keeps the sixteen in sixteen registers.

    vzero()            the vector of zeros
    vsplat(s)          s in every lane (s rounded to float32 first if it is a float64)
    vsplat_at(a, i)    a[i] in every lane, read straight from the flat float32 array (no
                       bounds check, no wrap-around of a negative i: one broadcast load)
    vload(a, i)        a[i : i + LANES] of a flat float32 array (any alignment; no bounds check)
    vstore(a, i, v)    a[i : i + LANES] = v
    vfma(s, x, acc)    acc + s ⊙ x: each lane one fused multiply-add where the CPU has FMA, a
                       multiply and then an add where it has not (LLVM's llvm.fmuladd)
    vmul(a, b)         a ⊙ b
    vabs(a)            |a|
    vwhere_gt(a, b, x, y)   x where a > b, else y, lane by lane (a select; false where a or b is NaN)
    vwhere_le(a, b, x, y)   x where a <= b, else y (likewise)
    vmaximum(a, b)     np.maximum(a, b) lane by lane, as Numba computes it: a where a >= b, and
                       a NaN in either gives the NaN (a's where both are)
    address_of(a)      the address of a flat array's first element (to align a buffer)
    vtranspose(src, i, s, dst, j, t)
                       a LANES × LANES block turned over: dst[j + c·t + r] = src[i + r·s + c] for
                       every r, c < LANES (LANES loads, log₂ LANES rounds of LANES shuffles, LANES
                       stores)

and one function built on them, ``turn_over``: a rectangle of any size turned over, by
whole blocks and then number by number at its edges. The kernels that lay an array out
anew (images last, channels last) go through it: written number by number, such a
loop reads or writes with a stride, and Numba, which wraps negative indices, leaves
LLVM a loop it can only vectorise with gathers and scatters, slower than the numbers
they move. ``turn_over_any`` takes flat arrays of any one dtype: ``turn_over`` where
both hold float32, number by number otherwise.

``vfma`` asks LLVM for a multiply-add that it may fuse (``llvm.fmuladd``), not for a fused one
(``llvm.fma``): where the CPU has FMA (x86 since Haswell and Piledriver) both compile to the
same instruction, and where it has not (Intel's CPUs before Haswell, AVX or not, and the
Pentiums and Celerons of later years that stop at SSE4.2), ``llvm.fma`` must still round once
and became a call to the C library's ``fmaf`` for every lane: there the channel path ran
many times slower than with a multiply and an add (BENCHMARKS.md, seventeenth session, gives
the ratios; ``tests/test_kernels_built_for_sse4.py`` checks that no kernel built there calls
``fmaf``).

Two plain loops go with them, for runs of any dtype (``copy_run`` converts from one to
another as it copies): ``copy_run`` and ``zero_run``.
Their indices are unsigned, so Numba has no negative index to wrap around, and LLVM
compiles them with plain vector loads and stores; with signed indices it cannot prove
a run contiguous and moves it with gathers and scatters (vector loads and stores
through a vector of addresses). ``benchmarks/find_gathers.py`` lists the compiled
kernels that still hold these.

``LANES`` is 16 where Numba compiles for AVX-512 (a vector is one zmm register), 8 with AVX
or AVX2 (one ymm register), and 4 on a CPU without AVX (one xmm register of SSE: at 8 lanes
LLVM split each vector into two, and the blocks of sums sized for 16 vector registers
needed 32); ``wide_vector_registers`` and ``compiles_for`` say which, from the CPU Numba
compiles for. The blocks sized for AVX2's 16 registers (six positions, four channels) are
the defaults at 4 lanes too: SSE has 16 xmm registers.
The arrays' types are checked when a kernel is compiled, no index ever: the callers index
inside their arrays (``tuned_conv_rows`` keeps a
margin after every buffer it reads whole vectors from). The readable tier
(``hebbref.kernels.readable``) has the same sums as plain loops; the tests hold every
kernel built from these to it.
"""
import llvmlite.binding
import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic, models, overload, register_model


def wide_vector_registers():
    """Whether Numba compiles for 32 vector registers (AVX-512), not 16 (AVX2 and older x86).

    The CPU Numba targets: the host's, unless $NUMBA_CPU_FEATURES names the features.
    """
    return compiles_for("avx512f")


def compiles_for(feature):
    """Whether the CPU Numba compiles for has ``feature`` (LLVM's name: "avx", "fma", ...): the host's,
    unless $NUMBA_CPU_FEATURES names the features."""
    features = numba.config.CPU_FEATURES
    if features:
        return f"+{feature}" in features.split(",")
    return bool(llvmlite.binding.get_host_cpu_features().get(feature, False))


LANES = 16 if wide_vector_registers() else 8 if compiles_for("avx") else 4


def described():
    """The vectors and multiply-adds of the kernels as built here, in words (``hebbref info``)."""
    registers = {16: "AVX-512's zmm registers", 8: "AVX's ymm registers", 4: "SSE's xmm registers"}[LANES]
    fused = "fused (FMA)" if compiles_for("fma") else "a multiply and then an add (no FMA)"
    return f"{LANES} float32 lanes ({registers}); multiply-adds {fused}"


_VECTOR = ir.VectorType(ir.FloatType(), LANES)


class Float32Vector(types.Type):
    """The Numba type of a vector of ``LANES`` float32 numbers."""

    def __init__(self):
        super().__init__(name=f"f32x{LANES}")


f32v = Float32Vector()


@register_model(Float32Vector)
class _Float32VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VECTOR)


def _address(context, builder, array_type, array, index):
    """A pointer to the vector that starts at element ``index`` of a flat array."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), ir.PointerType(_VECTOR))


def _float32_array(array):
    if not (isinstance(array, types.Array) and array.dtype == types.float32 and array.ndim == 1):
        raise TypingError(f"a vector is read from and written to a flat float32 array, not {array}")


@intrinsic
def vload(typingctx, array, index):
    _float32_array(array)

    def codegen(context, builder, signature, arguments):
        return builder.load(_address(context, builder, signature.args[0], *arguments), align=4)

    return f32v(array, types.intp), codegen


@intrinsic
def vstore(typingctx, array, index, vector):
    _float32_array(array)

    def codegen(context, builder, signature, arguments):
        array_value, index_value, vector_value = arguments
        builder.store(vector_value, _address(context, builder, signature.args[0], array_value, index_value), align=4)
        return context.get_dummy_value()

    return types.none(array, types.intp, f32v), codegen


@intrinsic
def vsplat(typingctx, scalar):
    if not isinstance(scalar, types.Float):
        raise TypingError(f"vsplat takes a float, not {scalar}")

    def codegen(context, builder, signature, arguments):
        value = arguments[0]
        if value.type != ir.FloatType():
            value = builder.fptrunc(value, ir.FloatType())
        one = builder.insert_element(ir.Constant(_VECTOR, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
        every = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
        return builder.shuffle_vector(one, ir.Constant(_VECTOR, ir.Undefined), every)

    return f32v(scalar), codegen


@intrinsic
def vsplat_at(typingctx, array, index):
    _float32_array(array)

    def codegen(context, builder, signature, arguments):
        array_value, index_value = arguments
        data = context.make_array(signature.args[0])(context, builder, array_value).data
        value = builder.load(builder.gep(data, [index_value]), align=4)
        one = builder.insert_element(ir.Constant(_VECTOR, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
        every = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
        return builder.shuffle_vector(one, ir.Constant(_VECTOR, ir.Undefined), every)

    return f32v(array, types.intp), codegen


@intrinsic
def vzero(typingctx):
    def codegen(context, builder, signature, arguments):
        return ir.Constant(_VECTOR, [0.0] * LANES)

    return f32v(), codegen


@intrinsic
def vfma(typingctx, s, x, acc):
    def codegen(context, builder, signature, arguments):
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_VECTOR, [_VECTOR] * 3), f"llvm.fmuladd.v{LANES}f32")
        return builder.call(fma, arguments)

    return f32v(f32v, f32v, f32v), codegen


@intrinsic
def address_of(typingctx, array):
    """The address of a flat array's first element, as an integer."""
    def codegen(context, builder, signature, arguments):
        data = context.make_array(signature.args[0])(context, builder, arguments[0]).data
        return builder.ptrtoint(data, ir.IntType(64))

    return types.int64(array), codegen


@intrinsic
def vmul(typingctx, a, b):
    def codegen(context, builder, signature, arguments):
        return builder.fmul(*arguments)

    return f32v(f32v, f32v), codegen


@intrinsic
def vabs(typingctx, a):
    def codegen(context, builder, signature, arguments):
        fabs = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VECTOR, [_VECTOR]),
                                              f"llvm.fabs.v{LANES}f32")
        return builder.call(fabs, arguments)

    return f32v(f32v), codegen


def _where(comparison, name):
    """The typing of an intrinsic (a, b, x, y) -> x where ``a comparison b`` (ordered: false with a NaN), else y."""
    def where(typingctx, a, b, x, y):
        def codegen(context, builder, signature, arguments):
            a_value, b_value, x_value, y_value = arguments
            return builder.select(builder.fcmp_ordered(comparison, a_value, b_value), x_value, y_value)

        return f32v(f32v, f32v, f32v, f32v), codegen

    where.__name__ = where.__qualname__ = name
    return where


vwhere_gt = intrinsic(_where(">", "vwhere_gt"))
vwhere_le = intrinsic(_where("<=", "vwhere_le"))


@intrinsic
def vmaximum(typingctx, a, b):
    def codegen(context, builder, signature, arguments):  # the steps of Numba's np.maximum for one float
        a_value, b_value = arguments
        a_nan = builder.fcmp_unordered("uno", a_value, a_value)
        any_nan = builder.fcmp_unordered("uno", a_value, b_value)
        nan_result = builder.select(a_nan, a_value, b_value)
        larger = builder.select(builder.fcmp_ordered(">=", a_value, b_value), a_value, b_value)
        return builder.select(any_nan, nan_result, larger)

    return f32v(f32v, f32v), codegen


def _interleave(builder, a, b, half):
    """The lanes of a and b in turn, from the first half of each (half 0) or the second (half 1)."""
    start = half * LANES // 2
    mask = [lane for i in range(start, start + LANES // 2) for lane in (i, LANES + i)]
    return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), LANES), mask))


@intrinsic
def vtranspose(typingctx, src, src_at, src_stride, dst, dst_at, dst_stride):
    _float32_array(src)
    _float32_array(dst)

    def codegen(context, builder, signature, arguments):
        src_value, i, s, dst_value, j, t = arguments
        rows = [builder.load(_address(context, builder, signature.args[0], src_value,
                                      builder.add(i, builder.mul(s, ir.Constant(s.type, r)))), align=4)
                for r in range(LANES)]
        # each round pairs row r with row r + LANES/2 and interleaves them; after log₂ LANES rounds
        # lane c of row r holds what was lane r of row c (tests/test_conv_rows.py checks it number by number)
        for _ in range(LANES.bit_length() - 1):
            rows = [_interleave(builder, rows[r // 2], rows[r // 2 + LANES // 2], r % 2) for r in range(LANES)]
        for c, row in enumerate(rows):
            builder.store(row, _address(context, builder, signature.args[3], dst_value,
                                        builder.add(j, builder.mul(t, ir.Constant(t.type, c)))), align=4)
        return context.get_dummy_value()

    return types.none(src, types.intp, types.intp, dst, types.intp, types.intp), codegen


@njit(cache=True, inline="always")
def turn_over(src, i, s, dst, j, t, rows, columns):
    """dst[j + c·t + r] = src[i + r·s + c] for r < rows and c < columns: a rows × columns rectangle turned over.

    Whole blocks of LANES × LANES by ``vtranspose``, a column block at a time, so that the
    stores of each block continue the runs the block before began; then the rows and the
    columns past the last whole block, number by number.
    """
    rb = rows // LANES * LANES
    cb = columns // LANES * LANES
    for c in range(0, cb, LANES):
        for r in range(0, rb, LANES):
            vtranspose(src, i + r * s + c, s, dst, j + c * t + r, t)
    for r in range(rows):
        for c in range(cb if r < rb else 0, columns):
            dst[j + c * t + r] = src[i + r * s + c]


def turn_over_any(src, i, s, dst, j, t, rows, columns):
    """``turn_over`` for flat arrays of any one dtype: by ``turn_over`` where both hold float32, else number by number.

    The choice is made when a kernel that calls it is compiled, from the arrays' types.
    Called from Python (where nothing is compiled), it is the plain loop.
    """
    for r in range(rows):
        for c in range(columns):
            dst[j + c * t + r] = src[i + r * s + c]


_turn_over_by_numbers = njit(cache=True, inline="always")(turn_over_any)


@overload(turn_over_any)
def _turn_over_any(src, i, s, dst, j, t, rows, columns):
    if src.dtype == types.float32 and dst.dtype == types.float32:
        return lambda src, i, s, dst, j, t, rows, columns: turn_over(src, i, s, dst, j, t, rows, columns)
    return lambda src, i, s, dst, j, t, rows, columns: _turn_over_by_numbers(src, i, s, dst, j, t, rows, columns)


@njit(cache=True, inline="always")
def copy_run(source, start, target, at, count):
    """target[at : at + count] = source[start : start + count], 1-d arrays, by unsigned indices (every one ≥ 0)."""
    start, at = np.uint64(start), np.uint64(at)
    for s in range(np.uint64(count)):
        target[at + s] = source[start + s]


@njit(cache=True, inline="always")
def zero_run(target, at, count):
    """target[at : at + count] = 0, a 1-d array, by unsigned indices (every one ≥ 0)."""
    at = np.uint64(at)
    for s in range(np.uint64(count)):
        target[at + s] = 0
