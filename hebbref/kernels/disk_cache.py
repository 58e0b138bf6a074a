"""Numba's compiled kernels on disk, kept in step with the source of every kernel module.

Every kernel is compiled with ``cache=True``: Numba keeps its machine code on disk
(in ``__pycache__`` beside the source, else in its user-wide cache folder, or under
``$NUMBA_CACHE_DIR``) and loads it again while the function's *own* source file is
unchanged (its modification time and size). It does not look at the files of the
functions a kernel calls or inlines. ``tuned_untied_block.increment_from_winners``
inlines ``tuned_pooling.delta_at``: after an edit of ``tuned_pooling.py`` alone, Numba
would load the increment compiled from the old ``delta_at`` next to a freshly compiled
deferred δ, and a test holding the two to the same bits would pass on the old code.

So ``keep_in_step`` (called by ``hebbref/kernels/__init__.py`` once its modules are
imported, before any kernel runs) keeps a fingerprint of the kernels' source, the
SHA-256 of every ``hebbref/kernels/*.py``, in a small file in each cache folder
(``FINGERPRINT_FILE``), one entry per module. Where a module's entry differs from the
source now, that module's cached kernels are dropped (Numba's index of them emptied, so
they compile again when first called) and the entry rewritten. Nothing in the process
changes; a cache folder that cannot be read or written is left alone (Numba cannot
cache there either). The kernels call no compiled function outside this folder.
"""
import hashlib
import json
import os
import tempfile
from pathlib import Path

from numba.core.registry import CPUDispatcher

FINGERPRINT_FILE = "hebbref-kernels-source.json"
KERNELS = Path(__file__).resolve().parent
FOLDERS = {}  # cache folder -> the modules whose kernels this process dropped there (``hebbref info`` prints it)


def fingerprint(folder=KERNELS):
    """SHA-256 of every ``*.py`` file of ``folder``, names and contents, in name order."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def cached_kernels(module):
    """The functions ``module`` defines with ``njit(cache=True)``: -> [(name, dispatcher)].

    Each under its module name, or, where a module-level dict holds builds of one body
    (one kernel per block size, say), under the dict's name and key, as ``BUILDS[8]``; a
    kernel found under two names is listed once, under the first.
    """
    found, seen = [], set()
    for name, value in vars(module).items():
        entries = [(f"{name}[{key!r}]", v) for key, v in value.items()] if isinstance(value, dict) else [(name, value)]
        for label, kernel in entries:
            if (isinstance(kernel, CPUDispatcher) and kernel.py_func.__module__ == module.__name__
                    and hasattr(getattr(kernel, "_cache", None), "flush") and id(kernel) not in seen):
                seen.add(id(kernel))
                found.append((label, kernel))
    return found


def keep_in_step(modules, source=None):
    """Drop the cached kernels of every module in ``modules`` whose recorded fingerprint is not ``source``.

    ``source``: the fingerprint of the kernels' source now (default: ``fingerprint()``).
    Returns the names of the modules whose kernels were dropped.
    """
    source = fingerprint() if source is None else source
    dropped = []
    by_folder = {}  # cache folder -> [(module, its cached kernels)]
    for module in modules:
        kernels = cached_kernels(module)
        if kernels:
            folder = kernels[0][1].stats.cache_path
            by_folder.setdefault(folder, []).append((module, kernels))
    for folder, entries in by_folder.items():
        FOLDERS.setdefault(folder, [])
        path = Path(folder) / FINGERPRINT_FILE
        try:
            recorded = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, ValueError):
            recorded = {}
        stale = [(module, kernels) for module, kernels in entries if recorded.get(module.__name__) != source]
        if not stale:
            continue
        try:
            for module, kernels in stale:
                for _, dispatcher in kernels:
                    dispatcher._cache.flush()  # an empty index: the next call compiles and saves anew
                recorded[module.__name__] = source
            _write_atomically(path, json.dumps(recorded, indent=1, sort_keys=True))
        except OSError:  # a folder this process cannot write: Numba does not cache there either
            continue
        FOLDERS[folder].extend(module.__name__ for module, _ in stale)
        dropped.extend(module.__name__ for module, _ in stale)
    return dropped


def _write_atomically(path, text):
    """Write ``text`` to ``path`` by a rename, so that a process reading it never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
