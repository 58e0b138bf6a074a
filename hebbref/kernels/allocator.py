"""Keep freed memory in the process, so that a training step's large arrays are reused.

A training step allocates and frees the same large arrays every step (the padded
input, its channel-major copy, the fields, the errors: tens of MB each at batch 500). By
default glibc hands every block above 32 MB (and freed memory at the top of the heap)
back to the system, so the next step takes it again page by page, zeroed by the
kernel: on a 2-core machine that costs up to a quarter of a step. Raising glibc's
mmap and trim thresholds (``mallopt``) keeps those blocks in the process for reuse,
which is what PyTorch's caching allocator does for its own tensors. The price: the
process keeps its peak memory.

``keep_freed_memory()`` is called when the ``numba`` backend loads; it does nothing
outside glibc (Linux), or when ``HEBBREF_KEEP_FREED_MEMORY=0``.
"""
import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers
M_MMAP_THRESHOLD = -3
THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap and stay there when freed
ENVIRONMENT_VARIABLE = "HEBBREF_KEEP_FREED_MEMORY"

_done = False


def keep_freed_memory():
    """Raise glibc's mmap and trim thresholds once; True when they were raised."""
    global _done
    if _done or os.environ.get(ENVIRONMENT_VARIABLE, "1") == "0":
        return _done
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):  # not glibc: leave the allocator alone
        return False
    _done = bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, THRESHOLD))
    return _done
