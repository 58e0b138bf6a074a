"""A run folder kept safe: one writer at a time, whole files only, only healthy weights.

- ``locked_run(train)``: ``hebbref train`` holds an OS lock on ``DIR/.lock`` while it
  runs, so a second run on the same folder refuses at once, in one line naming the
  folder. The kernel drops the lock when the process ends, however it ends (SIGKILL
  included), so a stale lock never blocks a later ``--resume``.
- ``write_atomically(path, write)``: the bytes go to a fresh temporary file beside
  ``path``, are flushed to the disk, then renamed over ``path``. When anything fails
  (a full disk, a quota) the temporary file is removed, ``path`` keeps its last good
  content, and the error is one ``OutputError`` line naming the file.
- ``check_healthy(...)``: a checkpoint is written only when every weight is finite and
  the loss of the weights on a fixed batch has not blown up to more than
  ``BLOWUP_FACTOR`` times its value at the start of training.
"""
import contextlib
import ctypes.util
import errno
import functools
import multiprocessing
import os
import signal
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import ConfigError, HebbrefError

LOCK = ".lock"
TEMPORARY_SUFFIX = ".tmp"
BLOWUP_FACTOR = 1e3  # a loss 1,000 times its starting value is divergence, not learning
REFERENCE_SIZE = 500  # images of the fixed batch on which the weights' loss is checked

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


class OutputError(HebbrefError):
    """A result could not be written (disk full, quota, permissions); nothing half-written is left."""


class TrainingDiverged(HebbrefError):
    """Training diverged (a NaN or infinite loss, non-finite weights, a loss that blew up); what is kept is said."""


class RunsFailed(HebbrefError):
    """Some runs of a comparison failed; the tables of the others are written and list them."""


def failure_text(error):
    """One line for a run that failed: hebbref's own message, or the exception's type and text."""
    if isinstance(error, HebbrefError):
        return str(error)
    return f"{type(error).__name__}: {error}".rstrip(": ") + " (an unexpected error)"


# --- one writer per folder ------------------------------------------------------------------
def lock_folder(out):
    """Take the lock of the run folder ``out`` (which exists); returns the open lock file.

    Raises a ConfigError naming the folder when another process holds it. Close the
    returned file to release the lock (the OS releases it too when the process ends).
    """
    out = Path(out)
    handle = open(out / LOCK, "a+b")  # not inherited by child processes (Python's default)
    try:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:  # pragma: no cover - Windows
            import msvcrt
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    except OSError as error:
        handle.close()
        if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK, errno.EDEADLK):
            raise ConfigError(
                f"{out} is in use by another hebbref run (it holds {out / LOCK}); wait for it to end, "
                "or choose another --out") from None
        raise OutputError(f"cannot lock the output folder {out}: {error.strerror or error}") from None
    return handle


def remove_stale_temporaries(out):
    """Delete temporary files a killed writer left in ``out`` (only ever called under the lock)."""
    for path in Path(out).glob(f"*{TEMPORARY_SUFFIX}"):
        try:
            path.unlink()
        except OSError:
            pass


def locked_run(train):
    """Decorator of ``train(config, ...)``: check the configuration, create the folder, hold its lock."""
    @functools.wraps(train)
    def locked(*args, **kwargs):
        from .train import prepare_out  # here: train.py imports this module

        config = args[0] if args else kwargs["config"]
        config.check()
        out = prepare_out(config.out)
        handle = lock_folder(out)
        try:
            remove_stale_temporaries(out)
            return train(*args, **kwargs)
        except TrainingDiverged as error:  # say what is kept: every checkpoint written passed check_healthy
            raise TrainingDiverged(f"{error}; {kept_text(checkpoint_epoch(out), out)}") from None
        finally:
            handle.close()
    return locked


# --- whole files only --------------------------------------------------------------------------
def write_atomically(path, write):
    """Call ``write(binary file)`` on a temporary file beside ``path``, then rename it over ``path``.

    On any failure the temporary file is removed and ``path`` is left as it was; an
    OSError (disk full, quota, permission) becomes an OutputError naming ``path``.
    """
    path = Path(path)
    descriptor, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # the permissions a plain open() would give, not mkstemp's 0600
        with os.fdopen(descriptor, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(error, OSError):
            reason = error.strerror or str(error) or type(error).__name__
            raise OutputError(f"cannot write {path}: {reason}; {path.name} keeps its last complete "
                              "version") from None
        raise


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --- healthy weights only ---------------------------------------------------------------------
def reference_batch(x, y):
    """The fixed batch on which the weights' loss is checked: the first training images."""
    return x[:REFERENCE_SIZE], y[:REFERENCE_SIZE]


def weights_loss(net, batch, loss, mu):
    """The loss of the network's current weights on ``batch`` (no dropout); inf when it overflows."""
    with np.errstate(over="ignore", invalid="ignore"):
        value = net.loss(batch[0], batch[1], loss=loss, mu=mu)
    return value if np.isfinite(value) else float("inf")


def checkpoint_epoch(out):
    """The epoch of the checkpoint in ``out`` (0 when there is none or it cannot be read)."""
    from .train import CHECKPOINT

    try:
        with np.load(Path(out) / CHECKPOINT, allow_pickle=False) as npz:
            return int(npz["loop.epoch"])
    except Exception:  # absent or unreadable: nothing usable is kept
        return 0


def kept_text(saved_epoch, out):
    """What is left on disk after a divergence, said truthfully."""
    if saved_epoch:
        return f"the checkpoint of epoch {saved_epoch} (the last with finite weights and a sound loss) is kept in {out}"
    return f"no checkpoint was written to {out} (no epoch ended with sound weights)"


def check_healthy(net, batch, start_loss, config, epoch):
    """Raise TrainingDiverged unless every W and R is finite and the loss has not blown up."""
    for p in net.parameters():
        for which in ("W", "R"):
            if not np.isfinite(getattr(p, which)).all():
                raise TrainingDiverged(f"training diverged: {p.name}.{which} holds NaN or infinite values after "
                                  f"epoch {epoch}; try a smaller --lr")
    value = weights_loss(net, batch, config.loss, config.mu)
    limit = BLOWUP_FACTOR * max(start_loss, 1.0)
    if not value <= limit:
        raise TrainingDiverged(f"training diverged: after epoch {epoch} the {config.loss} loss of the weights is "
                          f"{value:.3g}, over {BLOWUP_FACTOR:g} times its {start_loss:.3g} at the start; "
                          f"try a smaller --lr")


# --- the process a grid runs in ---------------------------------------------------------------
def available_cores():
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cores_per_worker(jobs):
    """Each of ``jobs`` worker processes' share of the cores: at least one."""
    return max(1, available_cores() // jobs)


def worker_numba_threads(jobs):
    """The Numba threads each of ``jobs`` worker processes will run on (``threads_per_worker``): $NUMBA_NUM_THREADS
    where the user set it, else its share of the cores."""
    try:
        return int(os.environ["NUMBA_NUM_THREADS"])
    except (KeyError, ValueError):
        return cores_per_worker(jobs)


@contextlib.contextmanager
def environment_kept():
    """Put ``os.environ`` back as it was on leaving the block.

    For settings given to worker processes through the environment they inherit:
    compare's pool sets their thread counts this way, and Dask's nannies write the variables they give the workers they spawn (one BLAS and
    OpenMP thread, ``MALLOC_TRIM_THRESHOLD_``, ...) into the environment of the process
    that runs them, where they would change every process it starts later.
    """
    before = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(before)


# --- worker processes ------------------------------------------------------------------------------
PR_SET_PDEATHSIG = 1  # Linux prctl(2): the signal a process gets when its parent dies


@contextlib.contextmanager
def worker_pool(jobs):
    """A pool of ``jobs`` spawned worker processes (``compare --jobs``, ``hebbref theory --jobs``).

    Spawned: a clean interpreter per worker (no copy of this process's Numba threads).
    Each worker starts with its share of the cores' threads (``threads_per_worker``)
    and ends when this process dies (``end_with_parent``).
    """
    context = multiprocessing.get_context("spawn")
    with threads_per_worker(jobs), ProcessPoolExecutor(max_workers=jobs, mp_context=context,
                                                       initializer=end_with_parent, initargs=(os.getpid(),)) as pool:
        yield pool


def end_with_parent(parent):
    """Worker initialiser: end this worker when the process that started it dies.

    A killed ``hebbref compare`` would otherwise leave its workers training, and writing
    into the runs' folders, until their current run ends (hours for a long run), where a
    restarted comparison would train the same runs again beside them. On Linux the kernel
    sends SIGTERM to the worker when its parent dies; elsewhere nothing is done.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError, TypeError):  # not Linux / glibc
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


@contextlib.contextmanager
def threads_per_worker(jobs):
    """Share the cores among ``jobs`` worker processes: each starts with cores // jobs BLAS and Numba threads.

    Set in the environment the spawned workers inherit (the libraries read it as they
    load), and put back afterwards; a thread count the user set is left alone. Without
    it each worker starts as many threads as there are cores, and the idle ones spin
    against the other workers' (the demo's two workers took 1.6x as long on 2 cores).
    """
    threads = str(cores_per_worker(jobs))
    with environment_kept():
        for name in ("OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
            os.environ.setdefault(name, threads)
        yield
