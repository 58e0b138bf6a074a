"""TUNED TIER. Dropout's training pass: the uniform numbers drawn on every thread, mask and output in one pass.  # SPEC §2

The reference (``hebbref.layers.dropout``) draws u = rng.random(shape), float64, and
forms m = [u >= p] / (1-p) in the layer's dtype and x ⊙ m. Here:

- the same u are drawn in one chunk per thread (``uniform_draws``). NumPy's PCG64 turns
  one 64-bit output into one float64, and can jump ahead (``advance``): chunk i draws
  from a copy of the generator jumped past the chunks before it, the copies fill their
  chunks at once (NumPy lets go of the GIL while it fills an array), and the generator
  itself is then jumped past all of them. Same numbers, and the same generator state
  after, as one ``rng.random(shape)``; any other generator (or one holding a buffered
  32-bit half) draws as the reference does;
- m and x ⊙ m come out of one parallel pass over u and x (``mask_and_apply``), the same
  arithmetic as the reference, so the same bits.

The backward pass, e ⊙ m, is one parallel pass too (``dropout_backward``).

Shapes: any x; out and m have its shape and dtype.
"""
import copy
import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import njit, prange

JUMPABLE = (np.random.PCG64, np.random.PCG64DXSM)  # one 64-bit output per float64, and ``advance``
_pools = {}  # (process id, worker count) -> ThreadPoolExecutor, made on first use


def _pool(workers):
    """A pool of ``workers`` threads of this process (a forked child makes its own: it has none of its parent's threads)."""
    key = (os.getpid(), workers)
    if key not in _pools:
        _pools[key] = ThreadPoolExecutor(workers, thread_name_prefix="hebbref-draws")
    return _pools[key]


def uniform_draws(rng, n, chunks):
    """rng.random(n): the same float64 numbers and the same state of ``rng`` after, drawn in ``chunks`` pieces at once."""
    bit_generator = rng.bit_generator
    jumpable = isinstance(bit_generator, JUMPABLE) and not bit_generator.state["has_uint32"]
    if chunks < 2 or n < chunks or not jumpable:
        return rng.random(n)
    u = np.empty(n)
    starts = [n * i // chunks for i in range(chunks + 1)]
    generators = []
    for i in range(chunks):
        jumped = copy.deepcopy(bit_generator)
        jumped.advance(starts[i])  # as if the numbers of the chunks before had been drawn
        generators.append(np.random.Generator(jumped))

    def fill(i):
        generators[i].random(out=u[starts[i] : starts[i + 1]])

    others = [_pool(chunks - 1).submit(fill, i) for i in range(1, chunks)]
    fill(0)  # this thread draws the first chunk
    for other in others:
        other.result()
    bit_generator.advance(n)  # past every number drawn, as one rng.random(n) leaves it
    return u


@njit(parallel=True, cache=True)
def mask_and_apply(x, u, p, scale, zero):
    """m[i] = scale where u[i] >= p, else 0; out[i] = x[i]·m[i]: -> (out, m), flat, in x's dtype."""
    out = np.empty_like(x)
    m = np.empty_like(x)
    for i in prange(x.size):
        m[i] = scale if u[i] >= p else zero
        out[i] = x[i] * m[i]
    return out, m


@njit(parallel=True, cache=True)
def times_mask(e, m):
    """e[i]·m[i]: -> a new flat array."""
    out = np.empty_like(e)
    for i in prange(e.size):
        out[i] = e[i] * m[i]
    return out


def dropout_backward(e, mask):
    """e_below = e ⊙ m in one parallel pass: the reference's product (one multiply, same dtype), the same bits.

    Arrays of other dtypes or shapes take NumPy's own product (and its promotion or broadcasting).
    """
    if not (isinstance(e, np.ndarray) and isinstance(mask, np.ndarray) and e.shape == mask.shape
            and e.dtype == mask.dtype and e.dtype in (np.float32, np.float64)):
        return e * mask
    e, mask = np.ascontiguousarray(e), np.ascontiguousarray(mask)
    return times_mask(e.reshape(-1), mask.reshape(-1)).reshape(e.shape)


def dropout_draw(x, p, rng=None, chunks=None):
    """(x ⊙ m, m) with m = [u >= p]/(1-p), u drawn from ``rng`` as ``rng.random(x.shape)`` draws it.

    ``chunks``: pieces drawn at once (default: Numba's thread count, which the plan sets).
    ``rng`` None: a generator of its own, seeded 0 (the plan times the path with it, so
    that timing never draws from a network's generator).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    x = np.ascontiguousarray(x)
    u = uniform_draws(rng, x.size, numba.get_num_threads() if chunks is None else chunks)
    dtype = x.dtype.type
    out, m = mask_and_apply(x.reshape(-1), u, float(p), dtype(1.0 / (1.0 - p)), dtype(0))
    return out.reshape(x.shape), m.reshape(x.shape)
