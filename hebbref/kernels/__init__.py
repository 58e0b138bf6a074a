"""Compiled kernels: the same equations as the NumPy reference in ``hebbref.layers``.

    numba_conv.py               tied convolution (SPEC §2, §3, §5), CPU, ``prange``
    numba_locally_connected.py  untied (locally connected) layer (SPEC §5), CPU
    numba_pooling.py            max pooling forward and backward (SPEC §2, §3), CPU
    numba_activations.py        the ramp σ, its derivative σ', δ = e ⊙ σ'(h) (SPEC §2, §3), CPU
    numba_threads.py            one thread for small calls, all of Numba's for big ones
    allocator.py                glibc keeps freed memory, so a step's big arrays are reused
    cuda_conv.py                tied convolution on a GPU (numba.cuda)
    cuda_locally_connected.py   untied layer on a GPU (numba.cuda)

Every public function takes and returns exactly what its NumPy twin takes and returns
(same shapes, same dtype); the cache a forward returns is private to its backend.
The CPU modules are imported by ``hebbref.backends`` when the ``numba`` backend is
asked for; the CUDA modules only when a GPU (or ``NUMBA_ENABLE_CUDASIM=1``) is there.
Each kernel is tested against its reference in ``tests/test_kernels*.py``.
"""
