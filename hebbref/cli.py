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
from .logs import show_messages

# modules that add sub-commands; one that is missing (not built yet) is skipped
COMMAND_MODULES = (
    "hebbref.datasets.cli",
    "hebbref.experiments.cli",
    "theory.cli",
    "hebbref.runtime",
    "hebbref.reading",
)


def make_parser():
    parser = argparse.ArgumentParser(
        prog="hebbref",
        description="Deep learning with asymmetric feedback weights and Hebbian updates (Amit 2019).",
    )
    parser.add_argument("--version", action="version", version=f"hebbref {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    rules = subparsers.add_parser("rules", help="list the learning rules, one line each",
                                  description="The learning rules of hebbref.rules, one line each.")
    rules.set_defaults(func=list_rules)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name is not None and name.startswith(error.name):
                continue
            raise
        module.add_commands(subparsers)
    return parser


def list_rules(args):
    """``hebbref rules``: name and summary of every rule."""
    from .rules import RULES

    for name, rule in RULES.items():
        print(f"{name:5s} {rule.summary}")
    return 0


def main(argv=None):
    parser = make_parser()
    args = parser.parse_args(argv)
    show_messages()  # the library's log messages, one line each, as the command prints them
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except HebbrefError as error:
        print(f"hebbref {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the file system refused (disk full, permissions, a missing file): one line
        where = f" {error.filename}" if error.filename else ""
        print(f"hebbref {args.command}: error: cannot use{where}: {error.strerror or error}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"hebbref {args.command}: error: out of memory; try a smaller --batch-size or network",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hebbref {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
