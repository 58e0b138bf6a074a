"""The sub-commands ``hebbref train``, ``hebbref compare`` and ``hebbref demo``.

Every bad argument is one readable line on stderr and exit status 2: names (net,
rule, loss, ...) are checked by the library, which raises a ``HebbrefError``, and
argparse's own errors (a number that is not one) are shortened to one line too.
"""
import argparse
import re

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
    parser.add_argument("--rule", default=DEFAULTS.rule, help=f"bp, frfb or urfb{many}; default {DEFAULTS.rule}")
    parser.add_argument("--init", default=DEFAULTS.init, help=f"random or symmetric{many}; default {DEFAULTS.init}")
    parser.add_argument("--loss", default=DEFAULTS.loss, help=f"hinge, softmax or squared{many}; default {DEFAULTS.loss}")
    parser.add_argument("--mu", type=float, default=DEFAULTS.mu, help="hinge off-class factor μ (default 1)")
    parser.add_argument("--data", default=DEFAULTS.data,
                        help="fashion-mnist, fashion-mnist-mini, mnist, cifar10, cifar100, or an .npz file "
                             f"(default {DEFAULTS.data})")
    parser.add_argument("--data-dir", default=None, help="where the dataset files are (default: the library's)")
    parser.add_argument("--train-size", type=positive, default=None,
                        help="train on the first N training images only (default: all)")
    parser.add_argument("--epochs", type=count, default=DEFAULTS.epochs, help=f"default {DEFAULTS.epochs}")
    parser.add_argument("--batch-size", type=positive, default=DEFAULTS.batch_size,
                        help=f"default {DEFAULTS.batch_size} (SPEC §6)")
    parser.add_argument("--lr", type=float, default=DEFAULTS.lr, help=f"step η, default {DEFAULTS.lr} (SPEC §6)")
    parser.add_argument("--dtype", default=DEFAULTS.dtype, help=f"float32 or float64 (default {DEFAULTS.dtype})")
    parser.add_argument("--no-dropout", dest="dropout", action="store_false", help="leave out every dropout layer")
    parser.add_argument("--probe-size", type=count, default=DEFAULTS.probe_size,
                        help="images in the fixed probe batch (0: no probes)")
    parser.add_argument("--backend", default=None, help="numpy or a compiled backend (default: the library's fastest)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")


def default_out(args):
    slug = re.sub(r"[^A-Za-z0-9.]+", "_", args.net).strip("_")[:40]
    tied = "untied" if args.untied else "tied"
    return f"runs/{slug}-{tied}-{args.rule}-{args.init}-{args.loss}-seed{args.seed}"


def config_from_args(args):
    return TrainConfig(
        net=args.net, rule=args.rule, init=args.init, loss=args.loss, mu=args.mu, untied=args.untied,
        data=args.data, data_dir=args.data_dir, train_size=args.train_size, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, dtype=args.dtype, dropout=args.dropout,
        probe_size=args.probe_size, backend=args.backend, out=args.out or default_out(args),
        quiet=args.quiet,
    )


def run_train(args):
    train(config_from_args(args), resume=args.resume)
    return 0


def add_commands(subparsers):
    """Add ``train``, ``compare`` and ``demo`` to the ``hebbref`` command."""
    p = _one_line_errors(subparsers.add_parser(
        "train", help="train one network; log, checkpoints, resume",
        description="Train one network with bp, frfb or urfb. Writes DIR/log.jsonl (one JSON line "
                    "per epoch) and DIR/checkpoint.npz after every epoch."))
    add_run_arguments(p)
    p.add_argument("--untied", action="store_true", help="locally connected layers instead of conv (SPEC §5)")
    p.add_argument("--seed", type=count, default=DEFAULTS.seed, help="default 0")
    p.add_argument("--out", default=None, help="output folder (default runs/NET-TIED-RULE-INIT-LOSS-seedS)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz if there is one")
    p.set_defaults(func=run_train)
