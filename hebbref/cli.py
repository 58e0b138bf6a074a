"""The ``hebbref`` command.

Each group of sub-commands lives beside the code it drives and registers itself here
through an ``add_commands(subparsers)`` function; every sub-command sets ``func``.
An error hebbref raises on purpose (a ``HebbrefError``) becomes one readable line on
standard error and exit status 2, never a traceback.
"""
import argparse
import importlib
import sys

from . import __version__
from .errors import HebbrefError

# modules that add sub-commands; one that is missing (not built yet) is skipped
COMMAND_MODULES = (
    "hebbref.datasets.cli",
    "hebbref.experiments.cli",
    "theory.cli",
    "hebbref.runtime",
)


def make_parser():
    parser = argparse.ArgumentParser(
        prog="hebbref",
        description="Deep learning with asymmetric feedback weights and Hebbian updates (Amit 2019).",
    )
    parser.add_argument("--version", action="version", version=f"hebbref {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name is not None and name.startswith(error.name):
                continue
            raise
        module.add_commands(subparsers)
    return parser


def main(argv=None):
    parser = make_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except HebbrefError as error:
        print(f"hebbref {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hebbref {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
