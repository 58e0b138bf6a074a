#!/bin/bash
# Run a command on this CPU held to AVX2, a stand-in for a CPU without AVX-512 (benchmarks/stand_in.sh
# says what is held and how):
#
#     benchmarks/avx2_stand_in.sh CPU COMMAND...
#     benchmarks/avx2_stand_in.sh skylake .venv/bin/python benchmarks/bench_training_step.py --skip-compile
exec bash "$(dirname "$0")/stand_in.sh" avx2 "$@"
