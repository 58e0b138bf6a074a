"""Training a network for a number of epochs, with a log, checkpoints and resume.

One epoch (SPEC §3, §6):

    π = shuffle_rng.permutation(N)                 # a fresh order each epoch, from the seed
    for each batch b of B indices of π:            # the last batch may be smaller
        loss_b = net.train_step(x[b], y[b], η)     # forward, e_L, backward, W -= ηG, R -= η_R G
    evaluate: train / val / test accuracy; probes (hebbref.experiments.probes)
    append one JSON line to DIR/log.jsonl; write DIR/checkpoint.npz atomically

A checkpoint holds everything the next epoch depends on: every W and R and the
dropout generator (``net.state()``), the shuffling generator, the epoch, the log so
far and the configuration. Resuming from it therefore gives, bit for bit, the
weights of an uninterrupted run.
"""
import dataclasses
import json
import logging
import sys
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..architectures import describe_layers
from ..backends import get_backend
from ..errors import ConfigError, InputError
from ..init import check_init
from ..losses import get_loss
from ..network import DTYPES, build_network
from ..rules import get_rule
from .curve import HeldOutCurve
from .data import load_splits
from .probes import probe
from .rundir import TrainingDiverged, check_healthy, locked_run, reference_batch, weights_loss, write_atomically

CHECKPOINT = "checkpoint.npz"
LOG = "log.jsonl"
# fields that may differ when resuming: they change how long or how fast, not what is computed
RESUMABLE_CHANGES = ("epochs", "backend", "out", "quiet")
logger = logging.getLogger(__name__)  # the final summary; the command line shows it (hebbref/logs.py)


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults follow SPEC §6."""

    net: str = "simple"
    rule: str = "urfb"
    init: str = "random"
    loss: str = "hinge"
    mu: float = 1.0
    untied: bool = False
    data: str = "fashion-mnist"
    data_dir: str | None = None
    train_size: int | None = None  # the first N training images only (None: all)
    val_size: int | None = None  # images held out for validation (None: the data's default; 0: none)
    epochs: int = 10
    batch_size: int = 500
    lr: float = 0.1
    weight_decay: float = 0.0  # λ: W -= η (G + λ W), R too where the rule says (hebbref.rules)
    seed: int = 0
    dtype: str = "float32"
    dropout: bool = True
    probe_size: int = 500  # the fixed probe batch: the first images of the training set
    train_eval_size: int = 5000  # train accuracy is measured on the first images of the training set
    evals_per_epoch: int = 0  # held-out accuracy and probes this many times per epoch (hebbref.experiments.curve)
    curve_size: int = 1000  # ... on the first images of the test set
    backend: str | None = None  # None: the library's default
    out: str = "runs/run"
    quiet: bool = False

    def check(self):
        """Raise a ConfigError naming the first bad field (before any data is loaded)."""
        get_rule(self.rule)
        check_init(self.init)
        get_loss(self.loss)
        describe_layers(self.net, 2, untied=self.untied)
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}; expected one of {', '.join(map(repr, DTYPES))}")
        if self.backend is not None:
            get_backend(self.backend)
        for name in ("epochs", "probe_size", "train_eval_size", "evals_per_epoch", "curve_size"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name.replace('_', '-')} must be 0 or more, got {getattr(self, name)}")
        if not str(self.out).strip():
            raise ConfigError("--out must name a folder")
        if self.batch_size < 1:
            raise ConfigError(f"batch-size must be at least 1, got {self.batch_size}")
        if self.val_size is not None and not (isinstance(self.val_size, int) and self.val_size >= 0):
            raise ConfigError(f"val-size must be a whole number, 0 or more, got {self.val_size!r}")
        if self.train_size is not None and self.train_size < 1:
            raise ConfigError(f"train-size must be at least 1, got {self.train_size}")
        if not (np.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        if not (np.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight-decay must be 0 or more, got {self.weight_decay}")
        if not (np.isfinite(self.mu) and self.mu >= 0):
            raise ConfigError(f"mu must be 0 or more, got {self.mu}")
        return self

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text):
        values = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def differences(self, other):
        """Fields (other than those a resume may change) whose values differ, as readable strings."""
        out = []
        for f in dataclasses.fields(self):
            if f.name in RESUMABLE_CHANGES:
                continue
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if mine != theirs:
                out.append(f"{f.name} (checkpoint {theirs!r}, now {mine!r})")
        return out


@dataclass
class LoopState:
    """Where the loop stands: epochs done, the shuffling generator, the log so far."""

    epoch: int
    shuffle_rng: np.random.Generator
    history: list = field(default_factory=list)


def shuffle_generator(seed):
    """The generator of the epoch orders: its own stream spawned from ``seed``.

    The network spawns three children of ``SeedSequence(seed)`` (W, R, dropout); this
    is the fourth, so shuffling never shares a stream with them.
    """
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(4)[3])


# --- checkpoints ------------------------------------------------------------------------
def save_checkpoint(path, net, loop, config):
    """Write the checkpoint to a temporary file, then rename it over ``path`` (hebbref.experiments.rundir)."""
    arrays = dict(net.state())
    arrays["loop.epoch"] = np.array(loop.epoch, dtype=np.int64)
    arrays["loop.shuffle_rng"] = np.array(json.dumps(loop.shuffle_rng.bit_generator.state))
    arrays["loop.history"] = np.array(json.dumps(loop.history))
    arrays["config"] = np.array(config.to_json())
    write_atomically(path, lambda f: np.savez(f, **arrays))


def read_checkpoint(path):
    """(config, arrays) of a checkpoint; plain arrays only (``allow_pickle=False``)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        missing = [k for k in ("config", "loop.epoch", "loop.shuffle_rng", "loop.history") if k not in arrays]
        if missing:
            raise KeyError(f"it lacks {', '.join(missing)}")
        return TrainConfig.from_json(str(arrays["config"])), arrays
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        reason = str(error).strip("'\"") or type(error).__name__
        raise InputError(f"cannot read checkpoint {path} ({type(error).__name__}: {reason}): it is truncated "
                         "or not a hebbref checkpoint; move it away (or delete it) to start the run afresh") from None


def restore(net, config, arrays):
    """Put a checkpoint's weights into ``net`` and return its LoopState."""
    net.load_state(arrays)
    rng = shuffle_generator(config.seed)
    try:
        rng.bit_generator.state = json.loads(str(arrays["loop.shuffle_rng"]))
        return LoopState(int(arrays["loop.epoch"]), rng, json.loads(str(arrays["loop.history"])))
    except (ValueError, TypeError, KeyError) as error:
        raise InputError(f"cannot resume from {config.out}/{CHECKPOINT}: its loop state is damaged ({error}); "
                         "move it away (or delete it) to start the run afresh") from None


# --- the output folder --------------------------------------------------------------------
def prepare_out(out):
    """Create the output folder and check that it can be written to."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe_file = out / ".write-test"
        probe_file.write_bytes(b"")
        probe_file.unlink()
    except OSError as error:
        raise ConfigError(f"cannot write to the output folder {out}: {error.strerror or error}") from None
    return out


def write_log(path, history):
    """Rewrite DIR/log.jsonl from the history (atomically), one JSON object per epoch."""
    text = "".join(json.dumps(_strict_json(record)) + "\n" for record in history)
    write_atomically(path, lambda f: f.write(text.encode()))


def _strict_json(value):
    """NaN and infinities (a diverging probe) become null, so every line is standard JSON."""
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


# --- the progress bar -----------------------------------------------------------------------
class Progress:
    """One line on stderr per epoch: batches done, running loss, images per second."""

    WIDTH = 24

    def __init__(self, epoch, epochs, n_batches, quiet=False, stream=None):
        self.epoch, self.epochs, self.n_batches = epoch, epochs, n_batches
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.live = not quiet and self.stream.isatty()
        self.start = self.last_draw = time.perf_counter()
        self.images, self.loss_sum, self.done = 0, 0.0, 0

    def step(self, loss, batch):
        self.done += 1
        self.images += batch
        self.loss_sum += loss
        now = time.perf_counter()
        if self.live and (now - self.last_draw > 0.2 or self.done == self.n_batches):
            self.last_draw = now
            self.stream.write("\r" + self.line())
            self.stream.flush()

    @property
    def running_loss(self):
        return self.loss_sum / max(self.done, 1)

    def line(self):
        filled = self.WIDTH * self.done // max(self.n_batches, 1)
        rate = self.images / max(time.perf_counter() - self.start, 1e-9)
        return (f"epoch {self.epoch}/{self.epochs} [{'#' * filled}{'.' * (self.WIDTH - filled)}] "
                f"{self.done}/{self.n_batches} batches  loss {self.running_loss:.4f}  {rate:,.0f} img/s")

    def close(self, summary=""):
        if self.quiet:
            return
        self.stream.write(("\r" if self.live else "") + self.line() + summary + "\n")
        self.stream.flush()


# --- the loop ---------------------------------------------------------------------------------
def _batches(order, batch_size):
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def run_epoch(net, x, y, order, config, epoch, progress, curve=None):
    """One pass over the training set in the given order; returns the mean batch loss.

    ``curve`` (a ``HeldOutCurve``) measures the held-out subset after the steps it is given.
    """
    losses = []
    for step, idx in enumerate(_batches(order, config.batch_size), start=1):
        value = net.train_step(x[idx], y[idx], lr=config.lr, loss=config.loss, mu=config.mu,
                               weight_decay=config.weight_decay)
        if not np.isfinite(value):
            if not config.quiet:
                progress.stream.write("\n")
            raise TrainingDiverged(
                f"training diverged: the loss became {value} at epoch {epoch}, step {step}; try a smaller --lr"
            )
        losses.append(value)
        progress.step(value, len(idx))
        if curve is not None:
            curve.after_step(step)
    return float(np.mean(losses))


def evaluate(net, splits, config):
    """Accuracies (train on its first ``train_eval_size`` images, val, test) and the probes."""
    n = min(config.train_eval_size, len(splits.x_train))
    record = {
        "train_accuracy": net.accuracy(splits.x_train[:n], splits.y_train[:n]) if n else None,
        "val_accuracy": net.accuracy(splits.x_val, splits.y_val) if len(splits.y_val) else None,
        "test_accuracy": net.accuracy(splits.x_test, splits.y_test) if len(splits.y_test) else None,
    }
    m = min(config.probe_size, len(splits.x_train))
    if m:
        record["layers"] = probe(net, splits.x_train[:m], splits.y_train[:m], config.loss, config.mu)
    return record


def first_steps_notice(backend=None, threads=None):
    """The line hebbref's commands print before training on the numba backend when it has planned nothing on
    this machine yet (``plan.nothing_planned``; ``threads``: the Numba threads the runs will have, where not this
    process's), else None: the first steps will be slow, once."""
    try:
        if get_backend(backend).name != "numba":
            return None
    except ConfigError:  # a backend that does not load here: each run says so when it starts
        return None
    from ..kernels import plan

    if not plan.nothing_planned(threads):
        return None
    return (f"hebbref: no plans on file for this CPU and this kernel code yet ({plan.cache_file()}): the first "
            "steps compile the numba backend's kernels and time their paths, about a minute on 2 cores, once; "
            "later runs read both from disk")


@locked_run  # one run per folder at a time; stale temporary files removed
def train(config, resume=False, splits=None, stream=None):
    """Train as ``config`` says; returns (history, network).

    history: one dict per epoch, what DIR/log.jsonl holds. ``resume=True`` continues
    DIR/checkpoint.npz when there is one (and starts afresh when there is none);
    without it an existing checkpoint is never overwritten. ``splits`` (a
    ``hebbref.experiments.data.Splits``) replaces loading ``config.data``.
    """
    stream = stream or sys.stderr
    config.check()
    out = prepare_out(config.out)
    checkpoint, log = out / CHECKPOINT, out / LOG
    saved = None
    if checkpoint.exists():
        if not resume:
            raise ConfigError(
                f"{out} already holds a checkpoint; pass --resume to continue it, or choose another --out"
            )
        saved_config, arrays = read_checkpoint(checkpoint)
        differences = config.differences(saved_config)
        if differences:
            raise ConfigError(
                f"cannot resume {checkpoint}: the configuration differs in " + "; ".join(differences)
            )
        saved = arrays
    if splits is None:
        splits = load_splits(config.data, config.data_dir, config.train_size, config.val_size)
    if splits.description and not config.quiet:
        stream.write(splits.description + "\n")  # how the data was split
    n = len(splits.x_train)
    if config.batch_size > n:
        raise ConfigError(f"batch-size {config.batch_size} is larger than the {n} training images")
    net = build_network(
        config.net, splits.input_shape, splits.n_classes, rule=config.rule, init=config.init,
        untied=config.untied, seed=config.seed, dtype=config.dtype, dropout=config.dropout,
        backend=config.backend,
    )
    notice = None if config.quiet else first_steps_notice(net.backend)
    if notice:
        stream.write(notice + "\n")
    check_batch = reference_batch(splits.x_train, splits.y_train)
    start_loss = weights_loss(net, check_batch, config.loss, config.mu)  # of the initial weights
    if saved is not None:
        loop = restore(net, config, saved)
        if not config.quiet:
            stream.write(f"resuming {checkpoint} after epoch {loop.epoch}\n")
    else:
        loop = LoopState(0, shuffle_generator(config.seed), [])
        if resume and not config.quiet:
            stream.write(f"no checkpoint in {out}: starting from the beginning\n")
    write_log(log, loop.history)
    x = splits.x_train.astype(net.dtype, copy=False)
    xs = dataclasses.replace(splits, x_train=x)
    n_batches = -(-n // config.batch_size)
    while loop.epoch < config.epochs:
        epoch = loop.epoch + 1
        start = time.perf_counter()
        order = loop.shuffle_rng.permutation(n)  # (N,) this epoch's order
        progress = Progress(epoch, config.epochs, n_batches, config.quiet, stream)
        curve = HeldOutCurve(net, xs, config, epoch, n_batches) if config.evals_per_epoch else None
        # weights blowing up overflow NumPy's products (the numpy backend's; compiled kernels never warn): the
        # loop says so itself, in one line (run_epoch's loss, check_healthy's weights), so no warning is printed
        with np.errstate(over="ignore", invalid="ignore"):
            train_loss = run_epoch(net, x, splits.y_train, order, config, epoch, progress, curve)
            train_seconds = time.perf_counter() - start
            record = {"epoch": epoch, "train_loss": train_loss}
            record.update(evaluate(net, xs, config))
        record.update(curve.record() if curve else {})
        record["seconds"] = time.perf_counter() - start
        record["train_seconds"] = train_seconds
        if epoch == 1 and splits.description:
            record["data"] = splits.description  # how the data was split, in log.jsonl's first line
        progress.close(_epoch_summary(record))
        loop.epoch = epoch
        loop.history.append(record)
        check_healthy(net, check_batch, start_loss, config, epoch)  # else no checkpoint (hebbref.experiments.rundir)
        save_checkpoint(checkpoint, net, loop, config)  # first the checkpoint, then the log
        write_log(log, loop.history)
    if not config.quiet:
        logger.info(final_summary(config, loop.history, out))
    return loop.history, net


def _epoch_summary(record):
    parts = [f" | {record['seconds']:.1f} s"]
    for key in ("val_accuracy", "test_accuracy"):
        if record.get(key) is not None:
            parts.append(f"{key.split('_')[0]} {record[key]:.4f}")
    return "  ".join(parts)


def final_summary(config, history, out):
    """The last line a run prints: what was trained and where it ended."""
    what = f"{config.net} {'untied' if config.untied else 'tied'} {config.rule} ({config.init}, {config.loss}) seed {config.seed}"
    if not history:
        return f"done: {what}: no epoch trained; log {out / LOG}"
    last = history[-1]
    seconds = sum(r["seconds"] for r in history)
    test = last.get("test_accuracy")
    accuracy = f"test accuracy {test:.4f}" if test is not None else "no test set"
    return f"done: {what}: {accuracy} after {last['epoch']} epochs, {seconds:.0f} s; log {out / LOG}"
