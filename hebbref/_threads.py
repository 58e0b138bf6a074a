"""Keep the idle threads of OpenBLAS and of Numba from spinning against each other.

A training step alternates between Numba's parallel loops and NumPy's matrix products
(OpenBLAS), each run by its own pool of threads. When a pool's work is done its threads
keep spinning, waiting for more: OpenBLAS's for about 2^28 cycles (a tenth of a second),
libgomp's (Numba's ``omp`` threading layer) for a few hundred thousand spins. With as
many threads as cores, the spinning pool takes the cores from the working one; on the
2-core machine hebbref is benchmarked on, it makes the ``deep`` step 15 % slower
(BENCHMARKS.md). Two settings make idle threads sleep at once:

- ``OPENBLAS_THREAD_TIMEOUT=4`` (2^4 cycles of spinning), read by OpenBLAS when it loads:
  it only takes effect when hebbref is imported before NumPy (``import hebbref`` first,
  or the ``hebbref`` command);
- ``OMP_WAIT_POLICY=passive`` for Numba's own libgomp, set just while Numba starts its
  threads (``quiet_numba_threads``, called when the ``numba`` backend loads) and removed
  again, so that other libraries' OpenMP runtimes (PyTorch's) keep their defaults.

Settings already in the environment are left as they are; ``HEBBREF_QUIET_THREADS=0``
turns both off. This module imports nothing heavy, so that it can run before NumPy loads.
"""
import os
import sys

ENVIRONMENT_VARIABLE = "HEBBREF_QUIET_THREADS"
applied = {"openblas": False, "numba": False}  # which of the two settings took effect


def enabled():
    return os.environ.get(ENVIRONMENT_VARIABLE, "1") != "0"


def quiet_blas_threads():
    """Ask OpenBLAS's idle threads to sleep at once; True when NumPy has not loaded it yet."""
    if not enabled() or "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        return False
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = "4"
    applied["openblas"] = "numpy" not in sys.modules
    return applied["openblas"]


def quiet_numba_threads():
    """Start Numba's threads with libgomp told not to spin; True when the setting applied.

    libgomp reads ``OMP_WAIT_POLICY`` once, when it loads, which Numba does the first
    time it launches its threads; so the variable is set around that moment only.
    """
    if not enabled() or "OMP_WAIT_POLICY" in os.environ:
        return False
    import numba

    try:
        numba.threading_layer()  # answers only once the threads have started: too late then
        return False
    except ValueError:
        pass
    os.environ["OMP_WAIT_POLICY"] = "passive"
    try:
        numba.get_num_threads()  # starts the threads
    finally:
        del os.environ["OMP_WAIT_POLICY"]
    applied["numba"] = True
    return True
