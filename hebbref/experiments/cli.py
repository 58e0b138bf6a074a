"""The sub-commands ``hebbref train``, ``hebbref compare`` and ``hebbref demo``.

Every bad argument is one readable line on stderr and exit status 2: names (net,
rule, loss, ...) are checked by the library, which raises a ``HebbrefError``, and
argparse's own errors (a number that is not one) are shortened to one line too.
"""
import argparse
import re
import shlex
import sys
from pathlib import Path

from ..errors import ConfigError, choose
from ..rules import RULES
from .compare import compare, dense_stack, grid_configs, split_list
from .demo import DEMO, NETWORKS, SEEDS, run_demo
from .train import TrainConfig, train

DEFAULTS = TrainConfig()


def _one_line_errors(parser):
    """Make argparse report an error as one line (no usage block) and exit 2."""
    def error(message):
        parser.exit(2, f"{parser.prog}: error: {message} (see {parser.prog} --help)\n")
    parser.error = error
    return parser


def count(text):
    """An integer ≥ 0 (epochs, sizes)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def positive(text):
    """An integer ≥ 1 (batch size)."""
    value = count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def add_run_arguments(parser, grid=False):
    """The options of one run (``grid=True``: net, rule, init, loss, seed take comma-separated lists)."""
    many = " (comma-separated list)" if grid else ""
    parser.add_argument("--net", default=DEFAULTS.net,
                        help=f"'simple', 'deep' or a description such as \"dense100 ramp out\"{many}; "
                             f"default {DEFAULTS.net}" + ("; in a list separate with ';'" if grid else ""))
    parser.add_argument("--rule", default=DEFAULTS.rule,
                        help=f"{', '.join(RULES)}{many}; default {DEFAULTS.rule} (see hebbref rules)")
    parser.add_argument("--init", default=DEFAULTS.init, help=f"random or symmetric{many}; default {DEFAULTS.init}")
    parser.add_argument("--loss", default=DEFAULTS.loss, help=f"hinge, softmax or squared{many}; default {DEFAULTS.loss}")
    parser.add_argument("--mu", type=float, default=DEFAULTS.mu, help="hinge off-class factor μ (default 1)")
    parser.add_argument("--data", default=DEFAULTS.data,
                        help="fashion-mnist, fashion-mnist-mini, mnist, cifar10, cifar100, or an .npz file "
                             f"(default {DEFAULTS.data})")
    parser.add_argument("--data-dir", default=None, help="where the dataset files are (default: the library's)")
    parser.add_argument("--train-size", type=positive, default=None,
                        help="train on the first N training images only (default: all)")
    parser.add_argument("--val-size", type=count, default=None,
                        help="images held out from the end of the training set for validation (0: none; "
                             "default 5,000 or a tenth of the set, whichever is smaller; an .npz file's own "
                             "x_val when it has one)")
    parser.add_argument("--epochs", type=count, default=DEFAULTS.epochs, help=f"default {DEFAULTS.epochs}")
    parser.add_argument("--batch-size", type=positive, default=DEFAULTS.batch_size,
                        help=f"default {DEFAULTS.batch_size} (SPEC §6)")
    parser.add_argument("--lr", type=float, default=DEFAULTS.lr, help=f"step η, default {DEFAULTS.lr} (SPEC §6)")
    parser.add_argument("--weight-decay", type=float, default=DEFAULTS.weight_decay,
                        help="λ: W -= η (G + λ W) under every rule, R too under kp (default 0; SPEC §9)")
    parser.add_argument("--dtype", default=DEFAULTS.dtype, help=f"float32 or float64 (default {DEFAULTS.dtype})")
    parser.add_argument("--no-dropout", dest="dropout", action="store_false", help="leave out every dropout layer")
    parser.add_argument("--probe-size", type=count, default=DEFAULTS.probe_size,
                        help=f"images in the fixed probe batch (0: no probes; default {DEFAULTS.probe_size})")
    parser.add_argument("--train-eval-size", type=count, default=DEFAULTS.train_eval_size,
                        help=f"train accuracy is measured on the first N training images "
                             f"(default {DEFAULTS.train_eval_size})")
    parser.add_argument("--backend", default=None, help="numpy or a compiled backend (default: numba, else numpy)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    parser.add_argument("--evals-per-epoch", type=count, default=DEFAULTS.evals_per_epoch,
                        help="also measure the first --curve-size test images and the probes this many times per "
                             "epoch, logged with the step count under \"curve\" (default 0: once per epoch only)")
    parser.add_argument("--curve-size", type=count, default=DEFAULTS.curve_size,
                        help=f"test images of those measurements (default {DEFAULTS.curve_size})")


def default_out(args):
    slug = re.sub(r"[^A-Za-z0-9.]+", "_", args.net).strip("_")[:40]
    tied = "untied" if args.untied else "tied"
    return f"runs/{slug}-{tied}-{args.rule}-{args.init}-{args.loss}-seed{args.seed}"


def config_from_args(args):
    return TrainConfig(
        net=args.net, rule=args.rule, init=args.init, loss=args.loss, mu=args.mu, untied=args.untied,
        data=args.data, data_dir=args.data_dir, train_size=args.train_size, val_size=args.val_size, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, seed=args.seed, dtype=args.dtype,
        dropout=args.dropout,
        probe_size=args.probe_size, train_eval_size=args.train_eval_size, backend=args.backend, out=args.out or default_out(args),
        quiet=args.quiet, evals_per_epoch=args.evals_per_epoch, curve_size=args.curve_size,
    )


def run_train(args):
    train(config_from_args(args), resume=args.resume)
    return 0


def add_commands(subparsers):
    """Add ``train``, ``compare`` and ``demo`` to the ``hebbref`` command."""
    p = _one_line_errors(subparsers.add_parser(
        "train", help="train one network; log, checkpoints, resume",
        description="Train one network with a learning rule (hebbref rules lists them). Writes DIR/log.jsonl (one JSON line "
                    "per epoch) and DIR/checkpoint.npz after every epoch."))
    add_run_arguments(p)
    p.add_argument("--untied", action="store_true", help="locally connected layers instead of conv (SPEC §5)")
    p.add_argument("--seed", type=count, default=DEFAULTS.seed, help="default 0")
    p.add_argument("--out", default=None, help="output folder (default runs/NET-TIED-RULE-INIT-LOSS-seedS)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz if there is one")
    p.set_defaults(func=run_train)
    add_compare_command(subparsers)
    add_demo_command(subparsers)


# --- hebbref compare ------------------------------------------------------------------------
LAYER_KINDS = {"tied": False, "untied": True}


def _numbers(text, what):
    try:
        values = [int(v) for v in split_list(text)]
    except ValueError:
        raise ConfigError(f"{what} must be a comma-separated list of whole numbers, got {text!r}") from None
    if any(v < 0 for v in values):
        raise ConfigError(f"{what} must be 0 or more, got {text!r}")
    return values


def run_compare(args):
    layers = [choose("layers", kind, LAYER_KINDS) for kind in split_list(args.layers)]
    seeds = _numbers(args.seed, "--seed")
    depths = None
    if args.study == "depth":
        depths = _numbers(args.depths, "--depths")
        if not depths or min(depths) < 1:
            raise ConfigError(f"--depths must be 1 or more hidden layers, got {args.depths!r}")
        nets = [dense_stack(d, args.width) for d in depths]
    else:
        nets = split_list(args.net)
    args.net, args.untied, args.seed = nets[0], False, 0
    base = config_from_args(args)
    # the command line, when we were started as `hebbref ...` or `python -m hebbref ...`
    started_as_hebbref = Path(sys.argv[0]).name in ("hebbref", "__main__.py")
    command = "hebbref " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if started_as_hebbref else None
    if args.emit_commands or args.summarise_only:  # the runs are trained elsewhere: a job array
        return run_compare_elsewhere(args, base, nets, layers, seeds, depths, command)
    if args.scheduler is not None and args.jobs != 1:
        raise ConfigError("--jobs is for the local pool; with --scheduler the Dask workers decide how many runs at once")
    text = compare(base, args.out, nets, split_list(args.rule), layers, split_list(args.loss),
                   split_list(args.init), seeds, jobs=args.jobs, command=command, depths=depths,
                   title="hebbref compare" + (" --study depth" if depths else ""), scheduler=args.scheduler)
    if not args.quiet:
        print(text)
    print(f"wrote {args.out}/results.md, results.csv and the plots")
    return 0


def run_compare_elsewhere(args, base, nets, layers, seeds, depths, command):
    """--emit-commands: one `hebbref train` line per run; --summarise-only: the tables of the finished runs."""
    from .distributed import emit_commands, summarise_finished

    configs = grid_configs(base, args.out, nets, split_list(args.rule), layers, split_list(args.loss),
                           split_list(args.init), seeds)
    if args.emit_commands:
        emit_commands(configs)
        return 0
    text = summarise_finished(args.out, configs, "hebbref compare" + (" --study depth" if depths else ""), command,
                              depths, nets if depths is not None else None)
    if not args.quiet:
        print(text)
    print(f"wrote {args.out}/results.md, results.csv and the plots")
    return 0


def add_compare_command(subparsers):
    p = _one_line_errors(subparsers.add_parser(
        "compare", help="a grid of runs over rules, networks, tied/untied, losses, seeds",
        description="Train every point of a grid (each in OUT/runs/NAME, resumed if started before) and "
                    "write OUT/results.md (mean ± std over seeds), OUT/results.csv and PNG plots."))
    add_run_arguments(p, grid=True)
    p.set_defaults(rule="bp,frfb,urfb")
    p.add_argument("--layers", default="tied", help="tied, untied or tied,untied (default tied)")
    p.add_argument("--seed", default="0,1,2", help="seeds, comma-separated (default 0,1,2)")
    p.add_argument("--jobs", type=positive, default=1, help="runs trained at once, in separate processes")
    p.add_argument("--study", choices=["depth"], default=None,
                   help="depth: dense networks of --depths hidden layers of --width units (ignores --net)")
    p.add_argument("--depths", default="2,3,4,6,8", help="hidden layers for --study depth (default 2,3,4,6,8)")
    p.add_argument("--width", type=positive, default=100, help="units per hidden layer for --study depth")
    p.add_argument("--out", default="runs/compare", help="output folder (default runs/compare)")
    elsewhere = p.add_mutually_exclusive_group()  # beyond one machine: hebbref.experiments.distributed
    elsewhere.add_argument("--scheduler", default=None, metavar="ADDRESS",
                           help="run each run as a task on the Dask cluster at tcp://HOST:PORT (OUT on storage the "
                                "workers share), or on a new local one of N one-thread workers with local:N "
                                "(pip install 'hebbref[distributed]')")
    elsewhere.add_argument("--emit-commands", action="store_true",
                           help="train nothing: print one `hebbref train ... --resume` line per run (for a Slurm "
                                "job array, GNU parallel or xargs)")
    elsewhere.add_argument("--summarise-only", action="store_true",
                           help="train nothing: write results.md, results.csv and the plots of the runs that have "
                                "finished, naming the others")
    p.set_defaults(func=run_compare)


# --- hebbref demo ------------------------------------------------------------------------------
def run_demo_command(args):
    print(run_demo(out=args.out, epochs=args.epochs, train_size=args.train_size, jobs=args.jobs,
                   backend=args.backend, seeds=range(args.seed, args.seed + args.seeds)))
    return 0


def add_demo_command(subparsers):
    p = _one_line_errors(subparsers.add_parser(
        "demo", help="bp vs frfb vs urfb on the embedded fashion-mnist-mini, in about three minutes",
        formatter_class=argparse.RawDescriptionHelpFormatter, description=DEMO_DESCRIPTION))
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--epochs", type=count, default=None,
                   help="epochs of every run (default: " + ", ".join(
                       f"{n.epochs} for {n.label}" for n in NETWORKS) + ")")
    p.add_argument("--train-size", type=positive, default=None,
                   help="train every run on the first N training images (default: " + ", ".join(
                       f"{n.train_size} for {n.label}" for n in NETWORKS) + ")")
    p.add_argument("--seeds", type=positive, default=len(SEEDS),
                   help=f"seeds per network and rule (default {len(SEEDS)}: SEED, SEED+1, ...)")
    p.add_argument("--jobs", type=positive, default=2, help="runs trained at once (default 2)")
    p.add_argument("--backend", default=None, help="numpy or a compiled backend (default: the library's)")
    p.add_argument("--seed", type=count, default=0, help="the first seed (default 0)")
    p.set_defaults(func=run_demo_command)


DEMO_DESCRIPTION = f"""\
The three rules (bp, frfb, urfb) on three networks of the embedded fashion-mnist-mini:
simple with its convolution tied, simple untied (locally connected), and six dense hidden
layers; {len(SEEDS)} seeds each, so that the table shows mean ± std and says which
differences are larger than the spread. Prints the table and writes OUT/summary.png (one
figure: accuracy and the feedback's angle to back-propagation's error against SGD steps),
accuracy.png, alignment.png, results.md, results.csv and demo.md.

Settings: batch {DEMO.batch_size}, η = {DEMO.lr}, hinge loss, a few thousand images for one epoch
(simple) or six (dense), measured on the first {DEMO.curve_size} test images {DEMO.evals_per_epoch} times per epoch.

A finding, not a failure: at η = {DEMO.lr} the six-layer network's accuracy dips for a few dozen
steps and recovers (the earlier one-seed demo: urfb 45.6 % after epoch 3, 22.8 % after epoch 4).
scripts/urfb_collapse.py logs every step (numbers for seeds 0-2, 8 epochs). It is not the
feedback running away: urfb's ‖R‖/‖W‖ stays within 0.99-1.17. It is the noise of SGD at a large step
in a deep ramp network, and bp has it too: within 10 steps bp's held-out accuracy fell by up
to 12.4 points at η = 0.3 and 19.1 at η = 0.2, urfb's by 13.6-24.9 and 11.4-16.3. urfb's
swings are somewhat larger (mean change per 10 steps 4.1-4.7 points against bp's 3.1-3.8)
because the error it sends down is larger (at η = 0.3, mean norm reaching the lowest layer
0.055-0.064 against bp's 0.047), so its lower layers take larger steps (largest ‖ηG‖/‖W‖ of a
layer below the output in one step 0.034-0.096 against bp's 0.028). η = 0.1 shrinks the swings (largest drop 5.3 points for urfb, 8.1
for bp) but slows learning (after 8 epochs urfb 53.7 %, bp 61.6 %, against 62.7 % and 73.8 %
at 0.3). The demo keeps η = {DEMO.lr} and draws every run's curve with three seeds, so that a dip
shows as a dip in a band, not as the result.
"""
