"""``hebbref theory [--quick] [--out DIR] [--jobs N]`` and ``python -m theory``: the linear-case report.

Runs the identity checks along trajectories, the gradient-flow ensembles (theory.ensemble)
and discrete SGD through hebbref's Dense layers (theory.sgd), and writes report.md, PNG
plots and summary.json into DIR (default ``theory-report``). ``--quick`` uses fewer
instances and finishes in under 2 minutes on 2 cores; ``--jobs N`` runs N settings at
once, in separate processes (the same numbers as one after another).
"""
import argparse
import sys
from pathlib import Path

from hebbref.errors import ConfigError
from hebbref.experiments.cli import positive
from hebbref.experiments.train import prepare_out

DESCRIPTION = "Linear-case theory of bp, frfb and urfb (SPEC §8): identities, ensembles, SGD; writes a report."


def add_arguments(parser):
    parser.add_argument("--quick", action="store_true",
                        help="fewer instances (under 2 minutes on 2 cores)")
    parser.add_argument("--out", default="theory-report", metavar="DIR",
                        help="folder for report.md, *.png and summary.json (default: theory-report)")
    parser.add_argument("--jobs", type=positive, default=1, metavar="N",
                        help="settings run at once, in separate processes (default 1; the numbers do not change)")
    return parser


def run(args):
    """Write the report; returns the exit code."""
    from .report import write_report

    if not args.out or not args.out.strip():
        raise ConfigError("--out must name a folder")
    check_out_folder(args.out)
    command = "hebbref theory" + (" --quick" if args.quick else "") + f" --out {args.out}"
    try:
        write_report(args.out, quick=args.quick, command=command, jobs=args.jobs,
                     progress=lambda message: print(message, file=sys.stderr))
    except OSError as error:  # the disk filled up, the folder was removed, ...
        raise ConfigError(f"cannot write the report into {args.out}: {error.strerror or error}") from None
    return 0


def check_out_folder(out):
    """Create the report's folder, or raise one ConfigError line saying why it cannot be (before any work)."""
    if Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; name a folder for the report")
    prepare_out(out)


def add_commands(subparsers):
    """Add ``theory`` to the ``hebbref`` command."""
    parser = subparsers.add_parser("theory", help=DESCRIPTION, description=DESCRIPTION)
    add_arguments(parser)
    parser.set_defaults(func=run)


def main(argv=None):
    parser = add_arguments(argparse.ArgumentParser(prog="python -m theory", description=DESCRIPTION))
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ConfigError as error:
        print(f"python -m theory: error: {error}", file=sys.stderr)
        return 2
