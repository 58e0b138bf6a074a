#!/bin/bash
# Run a command on this CPU held to SSE4.2, a stand-in for an x86 CPU without AVX (and so without
# FMA): an Intel CPU before Sandy Bridge, or a Pentium or Celeron of later years:
#
#     benchmarks/sse4_stand_in.sh CPU COMMAND...
#     benchmarks/sse4_stand_in.sh nehalem .venv/bin/python benchmarks/bench_training_step.py --skip-compile
#
# Numba compiles for SSE4.2's features alone (those of tests/kernel_checks.SSE4_FEATURES: 4-lane
# vectors, 16 vector registers, no fused multiply-add), scheduled for LLVM's CPU name CPU
# (nehalem, westmere, goldmont, ...), into a Numba cache of its own (/tmp/hebbref-CPU unless
# NUMBA_CACHE_DIR is set); PyTorch is held to its default (non-AVX) kernels, its MKL to the code
# path that needs no more than SSE2 (MKL_CBWR=COMPATIBLE: on an AMD CPU, MKL_ENABLE_INSTRUCTIONS
# alone left its matmul at AVX2's speed), NumPy's OpenBLAS to its Nehalem kernels and NumPy's own
# loops to SSE4.2 (NPY_DISABLE_CPU_FEATURES, in NumPy 2.4's names), so that both sides' matrix
# products, and the benchmark's matmul limit, are SSE ones. OPENBLAS_L2_SIZE is unset. A stand-in is not such a CPU: it keeps this CPU's caches,
# ports and clock. For benchmarks only, never for tests or CI (the tests build for these features
# in a process of their own: tests/test_kernels_built_for_sse4.py).
set -e
if [ $# -lt 2 ]; then
    echo "usage: $0 CPU COMMAND... (CPU: an LLVM CPU name such as nehalem, westmere or goldmont)" >&2
    exit 2
fi
name=$1
shift
export NUMBA_CPU_NAME="$name"
export NUMBA_CPU_FEATURES="+64bit,+cmov,+cx16,+mmx,+popcnt,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3"
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-/tmp/hebbref-$name}"
export ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2 MKL_CBWR=COMPATIBLE OPENBLAS_CORETYPE=Nehalem
export NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4 AVX512_ICL AVX512_SPR"
unset OPENBLAS_L2_SIZE
exec "$@"
