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

**Several processes, one cache folder.** The tests run in two processes, a grid of runs
(``hebbref.experiments.compare``) in one per job, and each compiles kernels into the same
folder. Numba keeps one index file per function (signature -> data file) and saves a new
build by reading the index, taking the first free data file's name, writing the index and
then the data, with no lock. Two processes that save two builds of one function at once
(two signatures, or two block sizes of a ``literally`` build) both take the same name: the
index ends up naming one build's signature, the data file holds whichever build was
written last, and every later process loads that machine code for that signature without
checking (provoked in a scratch run: a function of an int64 loaded the float64 build and
returned a float). And a save writes its index before its data: a process loading between
the two reads whatever the data file held, an older build where an emptied index (above)
freed its name (``tests/test_kernels_disk_cache.py`` provokes both). With arrays of another
rank or layout the wrong build reads memory as the wrong shape. So ``share_safely`` (called with
``keep_in_step``) has each cached kernel read its index and data under a shared lock of
the cache folder and save or drop builds under an exclusive one (``flock`` on
``LOCK_FILE`` there): a save takes its name, writes its index and its data while no other
process reads or writes that folder's builds. Compiling is not under the lock, only the
few milliseconds of each save. Where ``fcntl`` is missing (Windows) or the lock file cannot
be opened or locked (a read-only folder, some network file systems), the kernels read and
write as Numba does alone.
"""
import contextlib
import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no lock (see the module docstring)
    fcntl = None

from numba.core.registry import CPUDispatcher

FINGERPRINT_FILE = "hebbref-kernels-source.json"
LOCK_FILE = "hebbref-kernels.lock"
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


_held = {}  # (lock file, thread) -> the file, open and locked, while that thread of this process holds the lock


@contextlib.contextmanager
def folder_lock(folder, exclusive, name=LOCK_FILE):
    """Hold the lock ``name`` of the folder ``folder``: exclusive (saving, dropping) or shared (loading).

    A use inside another in the same thread (``keep_in_step`` dropping builds) runs under
    the lock already held; another thread waits for it, as another process does (each
    opens the lock file anew, and ``flock`` locks an open file). No lock where ``fcntl`` is
    missing or the lock file cannot be opened or locked. (``plan`` holds its plan file's
    folder by the lock ``plans.json.lock`` while it adds a plan.)
    """
    path = os.path.join(str(folder), name)
    key = (path, threading.get_ident())
    if fcntl is None or key in _held:
        yield
        return
    try:
        if exclusive:
            os.makedirs(folder, exist_ok=True)
        handle = open(path, "a+b")
    except OSError:  # no folder yet (nothing to load) or one this process cannot write
        yield
        return
    with handle:  # closing the file releases the lock
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        except OSError:  # a file system without flock
            yield
            return
        _held[key] = handle
        try:
            yield
        finally:
            del _held[key]


class LockedCacheFiles:
    """One function's index and data files in its cache folder (Numba's ``IndexDataCacheFile``), read under the
    folder's shared lock and written under its exclusive one (``folder_lock``)."""

    def __init__(self, files, folder):
        self.files = files
        self.folder = folder

    def save(self, key, data):
        with folder_lock(self.folder, exclusive=True):
            return self.files.save(key, data)

    def load(self, key):
        with folder_lock(self.folder, exclusive=False):
            return self.files.load(key)

    def flush(self):
        with folder_lock(self.folder, exclusive=True):
            return self.files.flush()

    def __getattr__(self, name):  # anything else Numba asks of its files
        return getattr(self.files, name)


def share_safely(modules):
    """Have every cached kernel of ``modules`` load and save its builds under its cache folder's lock.

    Returns how many kernels were given the lock now (a kernel that has it already is left as it is).
    """
    given = 0
    for module in modules:
        for _, dispatcher in cached_kernels(module):
            cache = dispatcher._cache
            files = getattr(cache, "_cache_file", None)
            if files is None or isinstance(files, LockedCacheFiles):
                continue
            cache._cache_file = LockedCacheFiles(files, cache.cache_path)
            given += 1
    return given


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
        with folder_lock(folder, exclusive=True):  # no other process loads or saves while the builds are dropped
            stale = _drop_stale(folder, entries, source)
        FOLDERS[folder].extend(stale)
        dropped.extend(stale)
    return dropped


def _drop_stale(folder, entries, source):
    """``keep_in_step`` in one cache folder: -> the names of the modules whose kernels were dropped there."""
    path = Path(folder) / FINGERPRINT_FILE
    try:
        recorded = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        recorded = {}
    stale = [(module, kernels) for module, kernels in entries if recorded.get(module.__name__) != source]
    if not stale:
        return []
    try:
        for module, kernels in stale:
            for _, dispatcher in kernels:
                dispatcher._cache.flush()  # an empty index: the next call compiles and saves anew
            recorded[module.__name__] = source
        _write_atomically(path, json.dumps(recorded, indent=1, sort_keys=True))
    except OSError:  # a folder this process cannot write: Numba does not cache there either
        return []
    return [module.__name__ for module, _ in stale]


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
