#!/bin/bash
# Run a command on this CPU held to fewer vector instructions, a stand-in for an x86 CPU that has
# no more than those:
#
#     benchmarks/stand_in.sh LEVEL CPU COMMAND...
#     benchmarks/stand_in.sh avx2 skylake .venv/bin/python benchmarks/bench_training_step.py --skip-compile
#
# LEVEL avx2 (benchmarks/avx2_stand_in.sh): a CPU without AVX-512. Numba compiles for AVX2's
# features alone (those of tests/kernel_checks.AVX2_FEATURES: 8-lane vectors, 16 vector registers);
# PyTorch is held to AVX2 and NumPy's OpenBLAS to its Haswell kernels.
# LEVEL sse4 (benchmarks/sse4_stand_in.sh): a CPU without AVX, and so without FMA (Intel's before
# Sandy Bridge, the Pentiums and Celerons of later years). Numba compiles for SSE4.2's features
# alone (tests/kernel_checks.SSE4_FEATURES: 4-lane vectors, 16 vector registers, no fused
# multiply-add); PyTorch is held to its default kernels, its MKL to the code path that needs SSE2
# alone (MKL_CBWR=COMPATIBLE: on an AMD CPU, MKL_ENABLE_INSTRUCTIONS alone left its matmul at
# AVX2's speed), NumPy's OpenBLAS to its Nehalem kernels and NumPy's own loops to SSE4.2
# (NPY_DISABLE_CPU_FEATURES, in NumPy 2.4's names).
#
# Either way Numba's code is scheduled for LLVM's CPU name CPU (skylake, haswell, znver3; nehalem,
# westmere, goldmont, ...) and cached in a folder of its own (/tmp/hebbref-CPU unless
# NUMBA_CACHE_DIR is set), both sides' matrix products and the benchmark's matmul limit are held
# to the level, and OPENBLAS_L2_SIZE is unset. A stand-in is not such a CPU: it keeps this CPU's
# caches, ports and clock. For benchmarks and find_gathers.py only, never for tests or CI (the
# tests build for these features in processes of their own: tests/test_kernels_built_for_*.py).
set -e
if [ $# -lt 3 ] || { [ "$1" != avx2 ] && [ "$1" != sse4 ]; }; then
    echo "usage: $0 avx2|sse4 CPU COMMAND... (CPU: an LLVM CPU name such as skylake, haswell or nehalem)" >&2
    exit 2
fi
level=$1
name=$2
shift 2
export NUMBA_CPU_NAME="$name"
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-/tmp/hebbref-$name}"
if [ "$level" = avx2 ]; then
    export NUMBA_CPU_FEATURES="+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+f16c,+fma,+fsgsbase,+lzcnt,+mmx,+movbe,+popcnt,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave"
    export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 OPENBLAS_CORETYPE=Haswell
else
    export NUMBA_CPU_FEATURES="+64bit,+cmov,+cx16,+mmx,+popcnt,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3"
    export ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2 MKL_CBWR=COMPATIBLE
    export OPENBLAS_CORETYPE=Nehalem NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4 AVX512_ICL AVX512_SPR"
fi
unset OPENBLAS_L2_SIZE
exec "$@"
