"""Compare learning rules over a grid of runs, and summarise them over seeds.

    grid = rules × networks × tied/untied × losses × inits × seeds

Every run is one ``hebbref train`` (``hebbref.experiments.train``) in its own folder
``OUT/runs/NAME``, started with resume on, so a comparison that is stopped and
started again continues where it was and skips the runs already finished.
Afterwards (``summarise``):

- ``OUT/results.csv``: one row per run (its configuration and its last epoch);
- ``OUT/results.md``: one row per configuration, the final accuracies as
  mean ± standard deviation over seeds (sample std, n - 1 in the denominator);
- ``OUT/accuracy.png``: test accuracy per epoch (against SGD steps when the runs
  measured several times per epoch, ``--evals-per-epoch``), one line per rule (mean
  over seeds, shaded ± std), one panel per setting;
- ``OUT/alignment.png``: the angle between ``Rᵀδ`` and ``Wᵀδ`` over training, one
  panel per layer whose error is used (hebbref.experiments.probes), for the rules
  with feedback (not ``bp``);
- with ``--study depth``: ``OUT/depth.png`` and a table of final test accuracy
  against the number of hidden layers.
"""
import csv
import dataclasses
import hashlib
import json
import re
import sys
import warnings
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from . import plots
from .train import LOG, first_steps_notice, prepare_out, train
from .rundir import RunsFailed, failure_text, lock_folder, worker_numba_threads, worker_pool

RUN_FIELDS = ("net", "untied", "rule", "init", "loss", "seed")
GROUP_FIELDS = ("net", "untied", "init", "loss", "rule")


def split_list(text):
    """'a,b,c' -> ['a', 'b', 'c'], leaving commas inside [...] alone (sum[conv3:16,conv3:16])."""
    items = [item.strip() for item in re.split(r",(?![^\[]*\])", text)]
    if not all(items):
        raise ConfigError(f"empty item in the list {text!r}")
    return items


def dense_stack(depth, width=100):
    """A dense network with ``depth`` hidden layers of ``width`` ramp units."""
    return " ".join([f"dense{width} ramp"] * depth) + " out"


def slug(text, length=48):
    """A folder-safe name for a network; a long description is cut and given a hash of the whole."""
    name = re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")
    if len(name) <= length:
        return name
    return f"{name[:length - 9]}.{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def run_name(config):
    tied = "untied" if config.untied else "tied"
    return f"{slug(config.net)}-{tied}-{config.rule}-{config.init}-{config.loss}-seed{config.seed}"


def grid_configs(base, out, nets, rules, untied=(False,), losses=("hinge",), inits=("random",), seeds=(0,)):
    """One TrainConfig per point of the grid, each with its own folder under OUT/runs."""
    configs = []
    for net in nets:
        for tied_flag in untied:
            for loss in losses:
                for init in inits:
                    for rule in rules:
                        for seed in seeds:
                            config = dataclasses.replace(base, net=net, untied=tied_flag, loss=loss, init=init,
                                                         rule=rule, seed=seed)
                            config.out = str(Path(out) / "runs" / run_name(config))
                            configs.append(config.check())
    names = [c.out for c in configs]
    if len(set(names)) != len(names):
        raise ConfigError("two points of the grid have one folder name; make the network descriptions differ more")
    return configs


def _train_one(config):
    """Worker of a parallel comparison: one quiet run, resumed if it was started before."""
    config = dataclasses.replace(config, quiet=True)
    history, _ = train(config, resume=True)
    return config.out, history[-1]["test_accuracy"] if history else None


def _train_one_safely(config):
    """Worker of a parallel comparison: (out, test accuracy, None), or (out, None, why it failed)."""
    try:
        out, accuracy = _train_one(config)
    except Exception as error:  # one failed run must not stop the grid
        return config.out, None, failure_text(error)
    return out, accuracy, None


def run_grid(configs, jobs=1, stream=None, scheduler=None, keep_going=False):
    """Train every configuration: one after another (``jobs=1``), or in ``jobs`` processes.

    With ``scheduler`` ('tcp://HOST:PORT' or 'local:N'), as Dask tasks instead (hebbref.experiments.distributed).

    ``keep_going=True`` (what ``compare`` passes): a run that fails (diverges, runs out of
    memory, finds its folder in use) does not stop the others. Returns ``[(config, why it
    failed)]``, empty when every run finished; without ``keep_going`` the first failure is raised.
    """
    stream = stream or sys.stderr
    if scheduler is not None:
        from .distributed import run_grid_distributed  # imports Dask only when asked to

        return run_grid_distributed(configs, scheduler, stream, keep_going=keep_going)
    total = len(configs)
    failures = []
    # the first steps' cost, said once: here, unless the runs train in this process and not quietly (train says it)
    said_by_train = jobs <= 1 and not all(config.quiet for config in configs)
    # worker processes train on their share of the cores, and plans hold for one thread count
    threads = worker_numba_threads(jobs) if jobs > 1 else None
    for backend in () if said_by_train else dict.fromkeys(config.backend for config in configs):
        notice = first_steps_notice(backend, threads)
        if notice:
            stream.write(notice + "\n")
            break
    if jobs <= 1:
        for i, config in enumerate(configs, start=1):
            stream.write(f"[{i}/{total}] {run_name(config)}\n")
            try:
                train(config, resume=True)
            except Exception as error:  # one failed run must not stop the grid
                if not keep_going:
                    raise
                failures.append((config, failure_text(error)))
                stream.write(f"[{i}/{total}] {run_name(config)} failed: {failures[-1][1]}\n")
        return failures
    by_out = {config.out: config for config in configs}
    done = 0
    with worker_pool(jobs) as pool:
        try:
            for out, accuracy, error in pool.map(_train_one_safely, configs):
                done += 1
                if error is not None:
                    if not keep_going:
                        raise RunsFailed(f"{Path(out).name} failed: {error}")
                    failures.append((by_out[out], error))
                    stream.write(f"[{done}/{total}] {Path(out).name} failed: {error}\n")
                    continue
                shown = f"test accuracy {accuracy:.4f}" if accuracy is not None else "no test set"
                stream.write(f"[{done}/{total}] {Path(out).name}: {shown}\n")
        except BrokenProcessPool:  # a worker was killed (out of memory, a signal): the rest cannot run here
            why = "a worker process died (killed, or out of memory); run the comparison again to resume it"
            failures += [(config, why) for config in configs[done:]]
            stream.write(f"{why}: {total - done} run(s) not finished\n")
    return failures


# --- collecting and summarising -------------------------------------------------------------
def read_history(config):
    path = Path(config.out) / LOG
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def collect(configs):
    """[(config, history)] for every run of the grid."""
    return [(config, read_history(config)) for config in configs]


def mean_std(values):
    """(mean, sample std) of the finite values; std is NaN with fewer than two."""
    values = np.array([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if values.size == 0:
        return float("nan"), float("nan")
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else float("nan")


def percent(mean, std):
    """'87.12 ± 0.31' (accuracies as percentages); '—' when missing."""
    if not np.isfinite(mean):
        return "—"
    return f"{100 * mean:.2f} ± {100 * std:.2f}" if np.isfinite(std) else f"{100 * mean:.2f}"


def group_runs(runs):
    """{(net, untied, init, loss, rule): [history of each seed]}, in the grid's order."""
    groups = {}
    for config, history in runs:
        key = tuple(getattr(config, f) for f in GROUP_FIELDS)
        groups.setdefault(key, []).append(history)
    return groups


def write_csv(path, runs):
    fields = list(RUN_FIELDS) + ["epochs", "train_loss", "train_accuracy", "val_accuracy", "test_accuracy",
                                 "seconds"]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for config, history in runs:
            last = history[-1] if history else {}
            writer.writerow([getattr(config, k) for k in RUN_FIELDS] + [
                last.get("epoch", 0), last.get("train_loss"), last.get("train_accuracy"),
                last.get("val_accuracy"), last.get("test_accuracy"),
                round(sum(r["seconds"] for r in history), 1),
            ])


def net_label(net):
    """The description, or for a long one its start and its number of weighted layers."""
    if len(net) <= 40:
        return net
    weighted = len(re.findall(r"\b(?:conv|lc|dense)\d", net)) + 1  # + the output layer
    return f"{net[:28]}... ({weighted} weighted layers)"


def results_table(runs):
    """The markdown table: one row per configuration, mean ± std over seeds of the last epoch."""
    lines = [
        "| network | layers | init | loss | rule | seeds | epochs | test accuracy % | val accuracy % | train loss |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for (net, untied, init, loss, rule), histories in group_runs(runs).items():
        finished = [h for h in histories if h]
        lasts = [h[-1] for h in finished]
        epochs = sorted({r["epoch"] for r in lasts})
        test = percent(*mean_std([r["test_accuracy"] for r in lasts]))
        val = percent(*mean_std([r["val_accuracy"] for r in lasts]))
        loss_mean, loss_std = mean_std([r["train_loss"] for r in lasts])
        loss_text = f"{loss_mean:.4f} ± {loss_std:.4f}" if np.isfinite(loss_std) else f"{loss_mean:.4f}"
        lines.append(f"| `{net_label(net)}` | {'untied' if untied else 'tied'} | {init} | {loss} | {rule} | "
                     f"{len(finished)} | {'/'.join(map(str, epochs)) or 0} | {test} | {val} | {loss_text} |")
    return "\n".join(lines)


TIE = 1e-9  # mean accuracies closer than this are equal (they differ only by rounding)


def rank_tiers(means):
    """{rule: mean} -> the rules best first, rules with equal means joined as one entry 'bp = urfb'.

    A rule whose mean is NaN (no finite accuracy) is left out.
    """
    order = sorted((rule for rule in means if np.isfinite(means[rule])), key=lambda rule: -means[rule])
    tiers = []
    for rule in order:
        if tiers and abs(means[tiers[-1][0]] - means[rule]) <= TIE:
            tiers[-1].append(rule)
        else:
            tiers.append([rule])
    position = {rule: i for i, rule in enumerate(means)}  # within a tie: the grid's order
    return [" = ".join(sorted(tier, key=position.get)) for tier in tiers]


def ranking_by_epoch(by_rule):
    """[(epoch, [rules, best first])] by mean test accuracy over seeds, on the epochs every seed reached.

    Rules with equal means are one entry, ``"bp = urfb"``: a tie is not an order.
    """
    curves = {rule: _by_epoch(histories, lambda r: r.get("test_accuracy") or np.nan)[1]
              for rule, histories in by_rule.items() if histories}
    if len(curves) < 2:
        return []
    n = min(len(mean) for mean in curves.values())
    return [(epoch + 1, rank_tiers({rule: curves[rule][epoch] for rule in curves})) for epoch in range(n)]


def ranking_table(runs):
    """One row per setting with two or more rules: the last ranking, and since which epoch it has held."""
    lines = ["| setting | ranking after the last epoch | unchanged since epoch | epochs |",
             "|---|---|---:|---:|"]
    for key, by_rule in _panels(group_runs(runs)).items():
        ranking = ranking_by_epoch(by_rule)
        if not ranking:
            continue
        last_epoch, last = ranking[-1]
        since = last_epoch
        while since > 1 and ranking[since - 2][1] == last:
            since -= 1
        setting = _panel_title(key).replace("\n", ", ")
        lines.append(f"| {setting} | {' > '.join(last)} | {since} | {last_epoch} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def failures_section(runs, failures):
    """The markdown list of the runs that failed: name, epochs they reached, why."""
    reached = {config.out: len(history) for config, history in runs}
    lines = ["## Runs that failed (left out of the tables above)", ""]
    for config, why in failures:
        lines.append(f"- `{run_name(config)}` after {reached.get(config.out, 0)} epoch(s): {why}")
    return "\n".join(lines)


def summarise_finished_runs(out, configs, failures, title="hebbref compare", *args):
    """``summarise`` on the runs that finished; the runs that failed listed at the end of results.md.

    A failed run's partial log stays in its folder but is left out of the tables, the csv
    and the plots, which compare runs that finished.
    """
    failed = {config.out for config, _ in failures}
    finished = [config for config in configs if config.out not in failed]
    text = summarise(out, finished, title, *args) if finished else f"# {title}\n\nNo run finished.\n"
    if failures:
        text += "\n" + failures_section(collect(configs), failures) + "\n"
        (Path(out) / "results.md").write_text(text)
    return text


def raise_for_failures(out, configs, failures):
    """One line: how many runs failed, which, and where the tables of the others are."""
    names = ", ".join(run_name(config) for config, _ in failures[:3]) + (", ..." if len(failures) > 3 else "")
    raise RunsFailed(f"{len(failures)} of {len(configs)} runs failed ({names}); {out}/results.md holds the "
                     f"{len(configs) - len(failures)} that finished and lists each failure with its reason")


def depth_table(runs, depths, nets):
    """Rows: number of hidden layers; columns: rules; final test accuracy % mean ± std."""
    groups = group_runs(runs)
    rules = list(dict.fromkeys(key[4] for key in groups))
    lines = ["| hidden layers | " + " | ".join(rules) + " |", "|---:|" + "---:|" * len(rules)]
    for depth, net in zip(depths, nets):
        cells = []
        for rule in rules:
            histories = [h for key, hs in groups.items() if key[0] == net and key[4] == rule for h in hs if h]
            cells.append(percent(*mean_std([h[-1]["test_accuracy"] for h in histories])))
        lines.append(f"| {depth} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- what the plots and the ranking share -------------------------------------------------------
def _panels(groups):
    """{(net, untied, init, loss): {rule: [histories]}}: one panel per setting, one line per rule."""
    panels = {}
    for (net, untied, init, loss, rule), histories in groups.items():
        panels.setdefault((net, untied, init, loss), {})[rule] = [h for h in histories if h]
    return panels


def _panel_title(key):
    net, untied, init, loss = key
    return f"{net_label(net)}\n{'untied' if untied else 'tied'}, {init} init, {loss}"


def _by_epoch(histories, value):
    """(epochs, mean, std) of value(record) over seeds, on the epochs every seed reached."""
    n = min(len(h) for h in histories)
    matrix = np.array([[value(r) for r in h[:n]] for h in histories], dtype=float)  # (seeds, epochs)
    with warnings.catch_warnings():  # a probe that was NaN for every seed stays NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.arange(1, n + 1), np.nanmean(matrix, axis=0), (
            np.nanstd(matrix, axis=0, ddof=1) if len(histories) > 1 else np.zeros(n))


def summarise(out, configs, title="hebbref compare", command=None, depths=None, nets=None):
    """Write results.csv, results.md and the plots; return the markdown text."""
    out = Path(out)
    runs = collect(configs)
    write_csv(out / "results.csv", runs)
    base = configs[0]
    parts = [f"# {title}", ""]
    if command:
        parts += ["Command:", "", f"```\n{command}\n```", ""]
    parts += [
        f"Data `{base.data}`" + (f" (first {base.train_size} training images)" if base.train_size else "")
        + f", batch {base.batch_size}, η = {base.lr}, μ = {base.mu}, {base.dtype}. "
        "Accuracies after the last epoch, mean ± sample std over seeds.", "",
        results_table(runs), "",
    ]
    ranking = ranking_table(runs)
    if ranking:
        parts += ["## Ranking of the rules by mean test accuracy, epoch by epoch", "", ranking, ""]
    if depths is not None:
        parts += ["## Test accuracy (%) against depth", "", depth_table(runs, depths, nets), ""]
        plots.plot_depth(out / "depth.png", runs, depths, nets)
    plots.plot_accuracy(out / "accuracy.png", runs)
    aligned = plots.plot_alignment(out / "alignment.png", runs)
    parts += ["Plots: `accuracy.png` (test accuracy during training)"
              + (", `alignment.png` (per layer whose error is used, the angle between the error the feedback "
                 "sends down, Rᵀδ, and back-propagation's, Wᵀδ)" if aligned is not None else "")
              + (", `depth.png`" if depths is not None else "") + " (hebbref.experiments.plots)."]
    text = "\n".join(parts) + "\n"
    (out / "results.md").write_text(text)
    return text


def compare(base, out, nets, rules, untied=(False,), losses=("hinge",), inits=("random",), seeds=(0,), jobs=1,
            title="hebbref compare", command=None, depths=None, scheduler=None):
    """Build the grid, train every run (or resume it), summarise; return the results.md text."""
    out = prepare_out(out)
    configs = grid_configs(base, out, nets, rules, untied, losses, inits, seeds)
    lock = lock_folder(out)  # one comparison per folder at a time
    try:
        failures = run_grid(configs, jobs, scheduler=scheduler, keep_going=True) or []
        text = summarise_finished_runs(out, configs, failures, title, command, depths,
                                       nets if depths is not None else None)
    finally:
        lock.close()
    if failures:
        raise_for_failures(out, configs, failures)
    return text
