#!/bin/bash
# Run a command on this CPU held to SSE4.2, a stand-in for an x86 CPU without AVX and FMA
# (benchmarks/stand_in.sh says what is held and how):
#
#     benchmarks/sse4_stand_in.sh CPU COMMAND...
#     benchmarks/sse4_stand_in.sh nehalem .venv/bin/python benchmarks/bench_training_step.py --skip-compile
exec bash "$(dirname "$0")/stand_in.sh" sse4 "$@"
