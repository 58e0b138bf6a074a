#!/bin/bash
# Run a command on this CPU held to AVX2, a stand-in for a CPU without AVX-512:
#
#     benchmarks/avx2_stand_in.sh CPU COMMAND...
#     benchmarks/avx2_stand_in.sh skylake .venv/bin/python benchmarks/bench_training_step.py --skip-compile
#
# Numba compiles for AVX2's features alone (those of tests/kernel_checks.AVX2_FEATURES: 8-lane
# vectors, 16 vector registers), scheduled for LLVM's CPU name CPU (skylake, haswell, znver3, ...),
# into a Numba cache of its own (/tmp/hebbref-CPU unless NUMBA_CACHE_DIR is set); PyTorch is held
# to AVX2 too, and NumPy's OpenBLAS to its Haswell kernels, so that the benchmark's matmul limit is
# an AVX2 one. OPENBLAS_L2_SIZE is unset. A stand-in is not an AVX2 CPU: it keeps this CPU's caches,
# ports and clock. For benchmarks and find_gathers.py only, never for tests or CI.
set -e
if [ $# -lt 2 ]; then
    echo "usage: $0 CPU COMMAND... (CPU: an LLVM CPU name such as skylake, haswell or znver3)" >&2
    exit 2
fi
name=$1
shift
export NUMBA_CPU_NAME="$name"
export NUMBA_CPU_FEATURES="+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+f16c,+fma,+fsgsbase,+lzcnt,+mmx,+movbe,+popcnt,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave"
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-/tmp/hebbref-$name}"
export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 OPENBLAS_CORETYPE=Haswell
unset OPENBLAS_L2_SIZE
exec "$@"
