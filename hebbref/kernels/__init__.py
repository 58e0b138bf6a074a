"""Compiled kernels: the same equations as the NumPy reference in ``hebbref.layers``, in two tiers.

Readable tier, to read and to check against:

    readable.py                 one plain loop body per equation (conv forward, weight
                                increment, the untied three, max pooling forward and
                                backward, the ramp, σ', e ⊙ σ'), each compiled as njit,
                                njit(parallel=True) with prange, and a numba.cuda device
                                function; the conv input error composed once from the
                                forward body (``transposed_convolution``)
    readable_cuda.py            the CUDA compilation: kernel builders and host driver,
                                imported only when a body first runs on a GPU

Tuned tier, for speed (each module's docstring starts with "TUNED TIER"):

    tuned.py                    the ``numba`` backend's functions: ask the plan, run the path
    plan.py                     ``choose``: the one place that picks a path and a thread
                                count, by timing the candidates once per shape (cached on
                                disk per CPU) or by a default when timing is off
    tuned_conv_direct.py        tied conv by direct, hand-unrolled loops
    tuned_conv_shifted.py       tied conv by k·k gemm on shifted views of the input
    tuned_conv_winograd.py      tied conv by Winograd's minimal filtering: tiles of m×m
                                outputs, t² gemm over all tiles (k = 2, 3)
    tuned_conv_rows.py          tied conv by pieces of output rows whose sums stay in vector
                                registers (float32)
    tuned_conv_channels.py      the same along blocks of output channels, for narrow images
    tuned_simd.py               the float32 vectors those kernels hold, as Numba values
    tuned_locally_connected.py  untied layer, location by location, along tiles of images
                                laid out batch last or along the output channels (the
                                input error also along padded planes)
    tuned_pooling.py            max pooling
    tuned_activations.py        the ramp and its derivative
    tuned_dropout.py            dropout's training pass (the mask's numbers drawn on every thread)
    tuned_conv_block.py         a conv layer, its ramp and the pool above as one step
    tuned_untied_block.py       an untied layer, its ramp and the pool above as one step
    tuned_untied_registers.py   the same, the sums held in vector registers and pooled as they
                                are formed (float32)
    tuned_dense.py              the dense layer's three products, one SciPy gemm per thread
    tuned_dense_kept.py         a dense layer right above dropout: its three products over
                                the kept inputs only (float32)
    tuned_update.py             the SGD step W ← W - η (G + λ W), in place, one parallel pass

Every public function takes and returns exactly what its NumPy twin takes and returns
(same shapes, same dtype); the cache a forward returns is private to its backend.
The process settings the tuned tier wants (threads, allocator, SciPy's BLAS) are made
by ``hebbref.runtime`` when the ``numba`` backend is first loaded, never on import.
Compiled kernels are cached on disk by Numba, and dropped when any file of this folder
changes (``disk_cache.py``). Tests: ``tests/test_kernels.py`` (readable tier vs reference), ``tests/test_kernels_tuned.py``
(tuned vs readable and reference; ``test_conv_winograd.py``, ``test_conv_rows.py`` (rows and channels), ``test_conv_block.py``,
``test_untied_block.py``, ``test_untied_registers.py``, ``test_kernels_shifted.py``, ``test_kernels_dense.py``,
``test_dropout_dense.py`` and ``test_kernels_update.py`` for
single modules, ``test_blocks.py`` for what the two blocks share), ``tests/test_cuda.py`` (device functions, on a GPU or
the simulator).
"""
from . import disk_cache  # noqa: E402
from . import (tuned_activations, tuned_conv_block, tuned_conv_channels, tuned_conv_direct,  # noqa: E402
               tuned_conv_rows, tuned_conv_shifted, tuned_conv_winograd, tuned_dense, tuned_dense_kept, tuned_dropout,
               tuned_locally_connected, tuned_pooling, tuned_simd, tuned_untied_block, tuned_untied_registers, tuned_update)

# the modules whose kernels Numba caches on disk (the readable tier's are compiled afresh in
# each process). Before any kernel runs: have them load and save their builds under the cache
# folder's lock (several processes compile into one folder: disk_cache.py says what Numba does
# alone), and drop those that Numba kept from another version of this folder's source: it checks
# only each function's own file (disk_cache.py says why that is not enough)
CACHED_MODULES = (tuned_activations, tuned_conv_block, tuned_conv_channels, tuned_conv_direct, tuned_conv_rows,
                  tuned_conv_shifted, tuned_conv_winograd, tuned_dense, tuned_dense_kept, tuned_dropout,
                  tuned_locally_connected, tuned_pooling, tuned_simd, tuned_untied_block, tuned_untied_registers, tuned_update)
disk_cache.share_safely(CACHED_MODULES)
disk_cache.keep_in_step(CACHED_MODULES)
