"""Process-wide settings for the tuned kernels: applied once, when the tuned backend is first used.

Importing hebbref changes no environment variable and no setting of the process. The
first time the ``numba`` backend (the tuned tier) loads, ``prepare()`` makes three
changes, records each in ``CHANGES``, and ``hebbref info`` prints them:

1. **Numba's threads start passive.** A training step alternates between Numba's
   parallel loops and BLAS products; libgomp's idle threads (Numba's ``omp`` threading
   layer) otherwise spin for a while after each loop and take the cores from the BLAS
   threads. ``OMP_WAIT_POLICY=passive`` is set only while Numba starts its threads
   (libgomp reads it then, once) and removed again, so other OpenMP runtimes in the
   process (PyTorch's) keep their defaults.
2. **SciPy's OpenBLAS loads on one thread.** The shifted, Winograd and dense products
   (``hebbref.kernels.tuned_conv_shifted``, ``tuned_conv_winograd``, ``tuned_dense``) call
   its gemm from inside Numba's parallel blocks, one block per thread, so each call must
   run on its caller's thread.
   ``OPENBLAS_NUM_THREADS=1`` is set only while ``scipy.linalg.cython_blas`` loads
   (OpenBLAS reads it then) and the variable put back as it was. NumPy's own OpenBLAS,
   a separate library loaded with NumPy, keeps its threads (a user's
   ``OPENBLAS_NUM_THREADS`` still governs it). If SciPy's BLAS was loaded before (by the user's
   ``import scipy.linalg``), this cannot apply: the gemm then uses SciPy's own thread
   count inside our blocks, which is correct but may be slower, and the plans
   (``hebbref.kernels.plan``) measure the paths as they are.
3. **glibc keeps freed memory.** A step allocates and frees the same large arrays
   every step (tens of MB at batch 500); by default glibc returns blocks over 32 MB to
   the system, so the next step page-faults them in again, zeroed. Raising the mmap
   and trim thresholds (``mallopt``) keeps them for reuse, as PyTorch's caching
   allocator does for its tensors; the process keeps its peak memory. glibc only.

``HEBBREF_RUNTIME=0`` switches all three off; a user's ``OMP_WAIT_POLICY`` is left as it is.

Not changed, because it can only be set before NumPy loads: NumPy's OpenBLAS lets its
idle threads spin about 0.1 s after each product. The ``numba`` backend does not call it
in a step: the dense layers' products run on Numba's threads, one SciPy gemm each
(``hebbref.kernels.tuned_dense``), as do the direct-feedback rules' products. Code that
calls NumPy's products between the kernels (the ``numpy`` backend, a user's own) gets the spin
unless ``OPENBLAS_THREAD_TIMEOUT=4`` was in the environment before Python started;
``hebbref info`` says whether it is set.

**Why SciPy's gemm is reached through its address** (``scipy.linalg.cython_blas``, via
``numba.extending.get_cython_function_address``), the one place this is explained: the
shifted products multiply *views* of the padded input whose row stride is the BLAS
leading dimension, and add k·k products into one output (beta = 1), inside one Numba
parallel region. ``np.dot`` inside ``njit`` copies such non-contiguous views and
allocates a new output for every product; ``scipy.linalg.blas.sgemm`` called from
Python would leave the compiled region at every product, so the blocks could no longer
run in parallel on Numba's threads. Neither keeps the speed, so the raw gemm stays.
"""
import ctypes
import ctypes.util
import functools
import hashlib
import os
import platform
import sys
from pathlib import Path

ENVIRONMENT_VARIABLE = "HEBBREF_RUNTIME"
CHANGES = []  # one dict per setting prepare() considered: what, applied (bool), how or why not
_prepared = False

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers
M_MMAP_THRESHOLD = -3
MALLOC_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap and stay there when freed


def enabled():
    return os.environ.get(ENVIRONMENT_VARIABLE, "1") != "0"


def _record(what, applied, detail):
    CHANGES.append({"what": what, "applied": bool(applied), "detail": detail})


class _environment_variable_while:
    """Set an environment variable for the duration of a ``with`` block, then put back what was there."""

    def __init__(self, name, value):
        self.name, self.value = name, value

    def __enter__(self):
        self.before = os.environ.get(self.name)
        os.environ[self.name] = self.value

    def __exit__(self, *exc):
        if self.before is None:
            del os.environ[self.name]
        else:
            os.environ[self.name] = self.before


def _start_numba_threads_passive():
    import numba

    what = "Numba's OpenMP threads started with OMP_WAIT_POLICY=passive"
    if "OMP_WAIT_POLICY" in os.environ:
        return _record(what, False, f"left to the user's OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")
    try:
        numba.threading_layer()  # answers only once the threads have started: too late then
        return _record(what, False, "Numba's threads had already started")
    except ValueError:
        pass
    with _environment_variable_while("OMP_WAIT_POLICY", "passive"):
        numba.get_num_threads()  # starts the threads
    layer = numba.threading_layer()
    _record(what, layer == "omp", f"threading layer {layer!r}" + ("" if layer == "omp" else ": not libgomp, no effect"))


def _load_scipy_blas_on_one_thread():
    what = "SciPy's OpenBLAS (the gemm of the shifted, Winograd and dense products) loaded with OPENBLAS_NUM_THREADS=1"
    if "scipy.linalg.cython_blas" in sys.modules:
        return _record(what, False, "SciPy's BLAS was already loaded: it keeps its own thread count")
    with _environment_variable_while("OPENBLAS_NUM_THREADS", "1"):
        import scipy.linalg.cython_blas  # noqa: F401  (OpenBLAS reads the variable as it loads)
    _record(what, True, "NumPy's OpenBLAS, loaded with NumPy, keeps its threads")


def _keep_freed_memory():
    what = f"glibc mallopt: mmap and trim thresholds raised to {MALLOC_THRESHOLD >> 20} MiB"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return _record(what, False, "not glibc: the allocator is left alone")
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError) as error:
        return _record(what, False, f"mallopt not found: {error}")
    done = bool(mallopt(M_MMAP_THRESHOLD, MALLOC_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, MALLOC_THRESHOLD))
    _record(what, done, "freed blocks stay in the process for reuse" if done else "mallopt refused")


def prepare():
    """Apply the tuned backend's process settings once (see the module docstring); returns CHANGES."""
    global _prepared
    if _prepared:
        return CHANGES
    _prepared = True
    if not enabled():
        _record("all process settings", False, f"switched off by ${ENVIRONMENT_VARIABLE}=0")
        return CHANGES
    _start_numba_threads_passive()
    _load_scipy_blas_on_one_thread()
    _keep_freed_memory()
    return CHANGES


def scipy_gemm_address(name):
    """The address of SciPy's Fortran ``sgemm`` or ``dgemm``, its library loaded as ``prepare`` arranges."""
    prepare()
    from numba.extending import get_cython_function_address

    return get_cython_function_address("scipy.linalg.cython_blas", name)


def cpu_model():
    """The CPU's model name (from /proc/cpuinfo on Linux), else what ``platform`` knows."""
    return _cpu_fields().get("model name") or platform.processor() or platform.machine() or "unknown CPU"


@functools.lru_cache(maxsize=None)
def _cpu_fields(path="/proc/cpuinfo"):
    """The first processor's entries of Linux's cpuinfo, {name: value}; {} where there is none."""
    fields = {}
    try:
        with open(path, encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if not line.strip():
                    break  # the end of the first processor's block
                name, _, value = line.partition(":")
                fields[name.strip()] = value.strip()
    except OSError:
        pass
    return fields


@functools.lru_cache(maxsize=None)
def _l2_size():
    """The first core's L2 cache size as Linux's sysfs gives it ("2048K"), or None."""
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            if (index / "level").read_text().strip() == "2":
                return (index / "size").read_text().strip()
        except OSError:
            pass
    return None


def numba_target():
    """The CPU that Numba compiles the kernels for: $NUMBA_CPU_NAME, else LLVM's name for the host.

    A feature list in $NUMBA_CPU_FEATURES changes the code as much as the name does, so it
    is named too (by a short digest).
    """
    import llvmlite.binding
    import numba

    name = numba.config.CPU_NAME or llvmlite.binding.get_host_cpu_name()
    features = numba.config.CPU_FEATURES
    if features:
        name += f" with features {hashlib.sha1(features.encode()).hexdigest()[:8]}"
    return name


def cpu_identity():
    """What tells one CPU from another where the kernels' speed is concerned, as a dict.

    The model name alone does not: a virtual machine often shows a generic one ("Intel(R)
    Xeon(R) Processor") for several generations. So the vendor, family, model and stepping
    numbers, the L2 cache per core (the block sizes depend on it) and the CPU that Numba
    compiles for are added where the system gives them; a plan measured on one CPU is not
    taken on another that shares its name (``hebbref.kernels.plan.machine``).
    """
    numbers = _cpu_numbers()
    return {
        "model": cpu_model(),
        "vendor, family, model, stepping": " ".join(numbers) if numbers else None,
        "L2 per core": _l2_size(),
        "Numba compiles for": numba_target(),
    }


def _cpu_numbers():
    """(vendor, family, model, stepping) as cpuinfo gives them, or None where one is missing."""
    fields = _cpu_fields()
    numbers = tuple(fields.get(name) for name in ("vendor_id", "cpu family", "model", "stepping"))
    return numbers if all(numbers) else None


def cpu_key():
    """``cpu_identity`` as one line: "model name [vendor family/model/stepping, L2 size, compiled for target]"."""
    identity = cpu_identity()
    numbers = _cpu_numbers()
    rest = [f"{numbers[0]} {'/'.join(numbers[1:])}" if numbers else None,
            f"L2 {identity['L2 per core']}" if identity["L2 per core"] else None,
            f"compiled for {identity['Numba compiles for']}"]
    return f"{identity['model']} [{', '.join(part for part in rest if part)}]"


def info(backend=None):
    """Everything ``hebbref info`` prints, as a dict: versions, backend, threads, CPU, what was changed.

    "compiled kernels": the folder where Numba caches the tuned kernels, and which modules'
    kernels were dropped there when this process loaded them (``hebbref.kernels.disk_cache``).
    """
    import numba
    import numpy
    import scipy

    from . import __version__
    from .backends import get_backend
    from .kernels import disk_cache, plan, tuned_simd

    chosen = get_backend(backend)  # loading the backend applies its process settings
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = "not started"
    watched = ("OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY",
               "NUMBA_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "HEBBREF_BACKEND",
               ENVIRONMENT_VARIABLE, plan.TUNE_VARIABLE, plan.CACHE_VARIABLE)
    stored = plan.stored_plans()  # the plan file, read once
    return {
        "versions": {"hebbref": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
                     "numba": numba.__version__, "scipy": scipy.__version__},
        "backend": chosen.name,
        "cpu": {**cpu_identity(), "the kernels' vectors": tuned_simd.described(), "cores visible": os.cpu_count()},
        "threads": {"numba": numba.get_num_threads(), "threading layer": layer},
        "process settings changed": list(CHANGES),
        "compiled kernels": {
            f"cache folder {folder}": (f"dropped in this process, their source changed: {', '.join(dropped)}" if dropped
                                       else "none dropped: recorded as compiled from this source")
            for folder, dropped in disk_cache.FOLDERS.items()},
        "plans": {"timing": plan.timing_enabled(), "cache file": str(plan.cache_file()),
                  "machine": plan.machine(), "stored for this machine": len(stored),
                  "of them timed with this kernel source": sum(entry.get("kernels") == plan.kernels_source()
                                                               for entry in stored.values()),
                  "chosen in this process": plan.chosen_in_this_process()},
        "environment": {name: os.environ[name] for name in watched if name in os.environ},
    }


def print_info(args):
    report = info(args.backend)
    for key, value in report.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for name, item in value.items():
                print(f"  {name}: {item}")
        elif isinstance(value, list):
            print(f"{key}:" + ("" if value else " none"))
            for change in value:
                print(f"  [{'applied' if change['applied'] else 'not applied'}] {change['what']}: {change['detail']}")
        else:
            print(f"{key}: {value}")
    if "OPENBLAS_THREAD_TIMEOUT" not in os.environ:
        print("note: NumPy's OpenBLAS threads spin after each product (the numba backend's steps call none); "
              "OPENBLAS_THREAD_TIMEOUT=4 set before Python starts makes them sleep (hebbref does not set it)")
    return 0


def add_commands(subparsers):
    """``hebbref info``: versions, backend, threads, the CPU, and what the backend changed in the process."""
    parser = subparsers.add_parser("info", help="versions, backend, threads, CPU, and the process settings changed")
    parser.add_argument("--backend", default=None, help="backend to load and report (default: the default one)")
    parser.set_defaults(func=print_info)
