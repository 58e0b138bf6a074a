"""Running the grid of ``hebbref compare`` beyond one machine: on Dask, or as a job array.

    hebbref compare ... --scheduler tcp://HOST:PORT   every run is one task on that Dask cluster
    hebbref compare ... --scheduler local:N           the same on a LocalCluster of N one-thread workers
    hebbref compare ... --emit-commands               one `hebbref train ... --resume` line per run
    hebbref compare ... --summarise-only              the tables and plots of the runs finished so far

A task is one ``train(config, resume=True)`` (hebbref.experiments.train) writing into
the run's own folder ``OUT/runs/NAME``, exactly what the local pool (``--jobs``) does.
So the workers must see ``OUT`` at the same path as the client (shared storage): before
the grid starts every worker reads a token file the client wrote there and writes a file
of its own, and a worker that cannot is named in one line (exit 2).

A worker that dies (killed, out of memory, preempted) takes with it only the epoch its
run was in: the scheduler gives the task to another worker (up to
``distributed.scheduler.allowed-failures`` times, default 3), where it resumes from the
run's last checkpoint, which holds everything the next epoch depends on; so the run
ends with the numbers of an uninterrupted one. An exception inside a task that is not a
hebbref error (a MemoryError, a lost connection) is retried ``retries`` times the same
way (Dask's ``retries=``); a hebbref error (a bad configuration, a diverged run) would
only happen again, so it is reported as that run's failure at once.

Threads: a host's cores are shared evenly among the task slots (worker threads) of all
the workers on it, so a task runs Numba's kernels and OpenBLAS on
``cores // slots`` threads (at least one): ``--scheduler local:2`` on two cores gives one
thread per run, a lone ``dask worker --nthreads 1`` on 16 cores gives a run 16. The
Numba kernels order their sums by thread count, so the count a run started with is kept
in its folder (``threads``) and a resumed run uses it again wherever it lands. Each task
applies the tuned backend's process settings (``hebbref.runtime.prepare``) before Numba
starts its threads, so that idle ones sleep. The ``numba`` backend computes the dense
layers' products on Numba's threads too (SciPy's gemm, one thread per call); NumPy's
OpenBLAS (the ``numpy`` backend's products) sleeps when idle only with
``OPENBLAS_THREAD_TIMEOUT`` set, which a LocalCluster's workers inherit from the client
and ``dask worker`` must be given.

Dask is imported only here, and only when ``--scheduler`` is used:
``pip install 'hebbref[distributed]'``.
"""
import contextlib
import ctypes
import dataclasses
import glob
import logging
import os
import shlex
import sys
import time
import uuid
from pathlib import Path

from ..errors import ConfigError, HebbrefError
from .compare import read_history, run_name, summarise
from .rundir import RunsFailed, available_cores, environment_kept
from .train import TrainConfig

INSTALL = "pip install 'hebbref[distributed]'"
RETRIES = 2  # extra attempts of a task that raised something other than a HebbrefError
CONNECT_TIMEOUT = 10  # seconds to reach a --scheduler tcp://...
WAIT_FOR_WORKERS = 60  # seconds a --scheduler tcp://... waits for its first worker
THREADS_FILE = "threads"  # in a run's folder: the thread count the run started with
TOKEN_PREFIX = ".hebbref-shared-storage-"


class SharedStorageError(ConfigError):
    """Some workers cannot read or write the folder the client put the runs in."""


# --- the scheduler ------------------------------------------------------------------------------
def parse_scheduler(text):
    """'local:N' -> ('local', N); 'tcp://HOST:PORT' (any Dask address) -> ('address', text)."""
    if text.startswith("local:"):
        count = text[len("local:"):]
        if count.isdigit() and int(count) >= 1:
            return "local", int(count)
        raise ConfigError(f"--scheduler local:N needs a number of workers N ≥ 1, got {text!r}")
    if "://" in text:
        return "address", text
    raise ConfigError(f"--scheduler must be local:N or a Dask scheduler address such as tcp://HOST:8786, got {text!r}")


def import_dask():
    """The ``distributed`` package, or a ConfigError saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise ConfigError(f"--scheduler needs Dask, which is not installed: {INSTALL}") from None
    return distributed


@contextlib.contextmanager
def connect(scheduler):
    """A Dask client of the scheduler at ``scheduler`` (or of a new LocalCluster), with a worker."""
    kind, value = parse_scheduler(scheduler)
    distributed = import_dask()
    if kind == "local":
        with environment_kept(), distributed.LocalCluster(
                n_workers=value, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                silence_logs=logging.ERROR) as cluster:
            with distributed.Client(cluster) as client:
                yield client
        return
    try:
        client = distributed.Client(value, timeout=f"{CONNECT_TIMEOUT}s")
    except (OSError, TimeoutError) as error:
        raise ConfigError(f"cannot reach the Dask scheduler at {value}: {error}") from None
    with client:
        try:
            client.wait_for_workers(1, timeout=WAIT_FOR_WORKERS)
        except TimeoutError:
            raise ConfigError(f"the Dask scheduler at {value} has had no worker for {WAIT_FOR_WORKERS} s; "
                              f"start some with `dask worker {value}`") from None
        yield client


# --- shared storage -----------------------------------------------------------------------------
def write_token(folder):
    """Write a file with a fresh random token into ``folder``; return (path, token)."""
    token = uuid.uuid4().hex
    path = Path(folder) / f"{TOKEN_PREFIX}{token}"
    path.write_text(token)
    return path, token


def worker_sees(path, token):
    """On a worker: None when it reads ``token`` from ``path`` and can write beside it, else why not."""
    path = Path(path)
    try:
        if path.read_text() != token:
            return f"{path} holds another token"
        probe = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        return error.strerror or str(error)
    return None


def check_shared_storage(client, path, token):
    """Raise a SharedStorageError naming the workers that cannot see ``path`` (the token file)."""
    answers = client.run(worker_sees, str(path), token)
    blind = {worker: reason for worker, reason in answers.items() if reason is not None}
    if blind:
        worker, reason = next(iter(blind.items()))
        raise SharedStorageError(
            f"{len(blind)} of {len(answers)} Dask workers cannot see the output folder {path.parent} "
            f"(e.g. {worker}: {reason}); --out must be on storage that the client and every worker share, "
            "mounted at the same path")


# --- threads ------------------------------------------------------------------------------------
def workers_of(client):
    """{address: info} of every worker (newer Dask lists only 5 unless asked for all)."""
    try:
        return client.scheduler_info(n_workers=-1)["workers"]
    except TypeError:  # Dask before 2025: every worker always
        return client.scheduler_info()["workers"]


def slots_per_host(client):
    """{host: the worker threads of all workers on it}, from the scheduler."""
    slots = {}
    for worker in workers_of(client).values():
        slots[worker["host"]] = slots.get(worker["host"], 0) + worker["nthreads"]
    return slots


def set_blas_threads(count):
    """Set the thread count of NumPy's bundled OpenBLAS (process-wide).

    SciPy's OpenBLAS stays on the one thread ``hebbref.runtime`` loaded it with: the tuned
    kernels call its gemm from inside Numba's parallel blocks, one call per Numba thread
    (the shifted conv products, the dense products), so each call must run on its caller's
    thread; ``count`` threads each would put count² threads on the task's cores.
    """
    import numpy

    folder = os.path.join(os.path.dirname(os.path.dirname(numpy.__file__)), "numpy.libs")
    for path in glob.glob(os.path.join(folder, "lib*openblas*.so*")):
        library = ctypes.CDLL(path)
        for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                     "openblas_set_num_threads64_", "openblas_set_num_threads"):
            if hasattr(library, name):
                getattr(library, name)(count)
                break


def task_threads(folder, slots, host, worker_threads):
    """The threads of a run on this worker: the count it started with, else cores // slots of this host."""
    import numba

    from .. import runtime

    record = Path(folder) / THREADS_FILE
    if record.exists():
        count = int(record.read_text())
    else:
        count = max(1, available_cores() // slots.get(host, worker_threads))
        Path(folder).mkdir(parents=True, exist_ok=True)
        record.write_text(f"{count}\n")
    if count > numba.config.NUMBA_NUM_THREADS:
        logging.getLogger("hebbref").warning(
            "%s started on %d threads, this worker has %d: its last bits may differ from an uninterrupted run",
            folder, count, numba.config.NUMBA_NUM_THREADS)
        count = numba.config.NUMBA_NUM_THREADS
    runtime.prepare()  # before set_num_threads starts Numba's threads: idle ones sleep (hebbref/runtime.py)
    numba.set_num_threads(count)  # for this thread only
    set_blas_threads(count)
    return count


# --- one task -----------------------------------------------------------------------------------
def train_task(config, token_path, token, slots):
    """On a worker: one run of the grid, resumed from its checkpoint if it has one.

    Returns ("done", folder, test accuracy) or ("failed", folder, message); an
    exception other than a HebbrefError propagates, so that Dask retries the task.
    """
    from distributed import get_worker
    from distributed.comm import get_address_host

    from .train import train

    reason = worker_sees(token_path, token)  # a worker that joined after the check
    if reason is not None:
        return "failed", config.out, f"this worker cannot see {Path(token_path).parent}: {reason}"
    worker = get_worker()
    try:
        task_threads(config.out, slots, get_address_host(worker.address), worker.state.nthreads)
        history, _ = train(dataclasses.replace(config, quiet=True), resume=True)
    except HebbrefError as error:
        return "failed", config.out, str(error)
    return "done", config.out, history[-1]["test_accuracy"] if history else None


def for_workers(config, cwd):
    """The configuration with its paths made absolute, since workers do not share the client's folder."""
    changes = {"out": str(Path(cwd, config.out))}
    if str(config.data).endswith(".npz") and not Path(config.data).is_absolute():
        changes["data"] = str(Path(cwd, config.data))
    if config.data_dir is not None and not Path(config.data_dir).is_absolute():
        changes["data_dir"] = str(Path(cwd, config.data_dir))
    return dataclasses.replace(config, **changes)


# --- the grid -----------------------------------------------------------------------------------
def executing(dask_worker):
    """On a worker: how many tasks it is running now."""
    return len(dask_worker.state.executing)


def run_grid_distributed(configs, scheduler, stream=None, retries=RETRIES, poll=1.0, keep_going=False):
    """Train every configuration as one task on the Dask cluster ``scheduler``; progress on ``stream``.

    As ``compare.run_grid``: with ``keep_going`` returns ``[(config, why it failed)]`` (empty when
    every run finished); without it raises RunsFailed, after every other run has finished.
    """
    stream = stream or sys.stderr
    cwd = os.getcwd()
    tasks = [for_workers(config, cwd) for config in configs]
    folders = sorted({Path(task.out).parent for task in tasks})
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    with connect(scheduler) as client:
        tokens = [write_token(folder) for folder in folders]
        try:
            for path, token in tokens:
                check_shared_storage(client, path, token)
            slots = slots_per_host(client)
            stream.write(f"{len(tasks)} runs on {len(workers_of(client))} Dask workers at {client.scheduler.address}\n")
            token_of = {folder: token for folder, token in zip(folders, tokens)}
            futures = {}
            for task in tasks:
                path, token = token_of[Path(task.out).parent]
                key = f"hebbref-train-{Path(task.out).name}-{token[:8]}"
                futures[client.submit(train_task, task, str(path), token, slots, key=key, retries=retries,
                                      pure=False)] = task
            failures = _follow(client, futures, stream, poll)
        finally:
            for path, _ in tokens:
                path.unlink(missing_ok=True)
    if keep_going:
        by_out = {task.out: config for task, config in zip(tasks, configs)}
        return [(by_out[out], message) for out, message in failures]
    if failures:
        out, message = failures[0]
        more = f" (and {len(failures) - 1} more, named above)" if len(failures) > 1 else ""
        others = "the others are finished: " if len(failures) < len(configs) else ""
        raise RunsFailed(
            f"{len(failures)} of {len(configs)} runs failed, {Path(out).name}: {message}{more}; {others}run the same "
            "command again to retry the failed ones (they resume), or add --summarise-only for the tables so far")


def _follow(client, futures, stream, poll):
    """Wait for every future, writing a line whenever runs finish, fail or start, or a worker leaves."""
    total, pending, failures, done = len(futures), set(futures), [], 0
    workers = set(workers_of(client))
    shown = None
    while pending:
        now = set(workers_of(client))
        for gone in sorted(workers - now):
            stream.write(f"worker {gone} left: its runs go to other workers and resume from their checkpoints\n")
        workers = now
        running = sum(client.run(executing, on_error="ignore").values())  # a worker that just left: skipped
        for future in [f for f in pending if f.done()]:
            pending.discard(future)
            name = Path(futures[future].out).name
            if future.status == "finished":
                status, out, value = future.result()
            else:  # the worker died more often than the scheduler allows, or the retries ran out
                status, out, value = "failed", futures[future].out, repr(future.exception())
            if status == "failed":
                value = " ".join(str(value).split())  # one line
            if status == "done":
                done += 1
                what = f"test accuracy {value:.4f}" if value is not None else "no test set"
            else:
                failures.append((out, value))
                what = f"FAILED: {value}"
            shown = (done, running, len(failures))
            stream.write(f"[{done}/{total} done, {running} running, {len(failures)} failed] {name}: {what}\n")
        if (done, running, len(failures)) != shown and pending:
            shown = (done, running, len(failures))
            stream.write(f"[{done}/{total} done, {running} running, {len(failures)} failed]\n")
        stream.flush()
        if pending:
            time.sleep(poll)
    return failures


# --- job arrays ---------------------------------------------------------------------------------
FLAGS = {"untied": "--untied", "quiet": "--quiet"}  # boolean fields given by a flag when true
NEGATED_FLAGS = {"dropout": "--no-dropout"}  # boolean fields given by a flag when false


def train_command(config):
    """The ``hebbref train OPTIONS --resume`` line that trains ``config``: every field, explicitly."""
    words = ["hebbref", "train"]
    for field in dataclasses.fields(TrainConfig):
        value = getattr(config, field.name)
        if field.name in FLAGS:
            words += [FLAGS[field.name]] if value else []
        elif field.name in NEGATED_FLAGS:
            words += [] if value else [NEGATED_FLAGS[field.name]]
        elif value is not None:
            words += [f"--{field.name.replace('_', '-')}", repr(value) if isinstance(value, float) else str(value)]
    return " ".join(shlex.quote(word) for word in words + ["--resume"])


def emit_commands(configs, stream=None):
    """Print one ``hebbref train OPTIONS --resume`` line per run of the grid."""
    stream = stream or sys.stdout
    for config in configs:
        stream.write(train_command(config) + "\n")


def finished(config):
    """True when the run's log reaches its last epoch."""
    history = read_history(config)
    return bool(history) and history[-1]["epoch"] >= config.epochs


def summarise_finished(out, configs, title, command=None, depths=None, nets=None, stream=None):
    """summarise() over the runs that have finished; the others are named on ``stream``."""
    stream = stream or sys.stderr
    done = [config for config in configs if finished(config)]
    for config in configs:
        if not finished(config):
            epochs = len(read_history(config))
            state = f"{epochs} of {config.epochs} epochs" if epochs else "not started"
            stream.write(f"missing: {run_name(config)} ({state})\n")
    if not done:
        raise ConfigError(f"none of the {len(configs)} runs under {Path(out) / 'runs'} has finished yet")
    stream.write(f"{len(done)} of {len(configs)} runs have finished\n")
    if len(done) < len(configs):
        title += f" ({len(done)} of {len(configs)} runs finished)"
    return summarise(out, done, title, command, depths, nets)
