"""The readable tier on a GPU: each loop body of ``readable.py`` as a numba.cuda device function.  # SPEC §2, §3, §5

One GPU thread per output element: thread t decodes its output index from t (row-major)
and calls the body, compiled as a device function from the same Python source the CPU
loops compile. Kernel builders, then the host driver; imported only when a kernel is
first run on a GPU (or on the simulator, ``NUMBA_ENABLE_CUDASIM=1``, which must be set
before numba.cuda is first imported). ``numba.cuda`` is a module global here, as the
simulator needs it to be.
"""
import math

from numba import cuda

THREADS_PER_BLOCK = 128


def kernel_for(body):
    """A kernel filling a 4-d ``out`` with ``body(p, q, r, s, A, B, params)``, one thread per element."""
    at = cuda.jit(device=True)(body)

    @cuda.jit
    def kernel(out, A, B, params):
        P, Q, R, S = out.shape
        t = cuda.grid(1)  # this thread's output element, in row-major order
        if t < P * Q * R * S:
            p, q, r, s = t // (Q * R * S), t // (R * S) % Q, t // S % R, t % S
            out[p, q, r, s] = at(p, q, r, s, A, B, params)

    return kernel


def flat_kernel_for(body):
    """A kernel filling a 1-d ``out`` with ``body(m, A, B, s)``, one thread per element."""
    at = cuda.jit(device=True)(body)

    @cuda.jit
    def kernel(out, A, B, s):
        m = cuda.grid(1)
        if m < out.size:
            out[m] = at(m, A, B, s)

    return kernel


def launch(kernel, out, A, B, params):
    """Launch ``kernel`` on device arrays, one thread per element of ``out``."""
    blocks = max(1, math.ceil(out.size / THREADS_PER_BLOCK))
    kernel[blocks, THREADS_PER_BLOCK](out, A, B, params)


def run_on_device(kernel, shape, dtype, A, B, params):
    """Copy A and B in, launch one thread per element of a new (shape, dtype) array, copy it out."""
    out = cuda.device_array(shape, dtype=dtype)
    launch(kernel, out, cuda.to_device(A), cuda.to_device(B), params)
    return out.copy_to_host()
