"""How many threads a Numba kernel call gets: all of them for big work, one for small.

Waking the other threads of a ``prange`` loop costs little on an idle machine but can
cost milliseconds when the cores are busy with other processes, far more than a small
layer's work. So a call with less than ``PARALLEL_FROM`` units of work (multiply-adds
or array elements) runs on the calling thread alone.
"""
import contextlib

import numba

PARALLEL_FROM = 1 << 18


@contextlib.contextmanager
def one_thread_if_small(work):
    """Run the body on one thread when ``work < PARALLEL_FROM``, else on Numba's current count."""
    if work >= PARALLEL_FROM:
        yield
        return
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)
