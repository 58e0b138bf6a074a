"""What to read to follow one training step: the functions of hebbref it runs, file by file.

``hebbref reading-list --net simple --rule urfb --backend readable`` builds the network,
takes one training step under ``sys.setprofile``, and lists every function of the
``hebbref`` package that the step called, grouped by file, files and functions in the
order the step first met them, with how many times each was called (building the
network is left out). Comprehensions, generator
expressions and lambdas count as part of the function they are written in.

The step runs in a process of its own with Numba's compiler switched off
(``NUMBA_DISABLE_JIT=1``), so that the readable tier's compiled loops and the bodies
they call (``hebbref.kernels.readable``) run as the Python they are written in and are
listed like any other function. That is why only the ``numpy`` backend (the reference)
and the ``readable`` backend (the readable tier) can be listed: the tuned tier's kernels
call vector instructions that exist only compiled. The list is the reader's path through
the code for that network and rule, not a profile: a small batch, float64, no timing.
"""
import json
import os
import subprocess
import sys
from collections import OrderedDict

from .errors import ConfigError, HebbrefError

BACKENDS = ("numpy", "readable")
# one example's shape for the presets, as in the paper (SPEC §6): simple on 28×28 images, deep on 32×32 colour
INPUT_SHAPES = {"simple": (1, 28, 28), "deep": (3, 32, 32)}
PACKAGE = os.path.dirname(os.path.abspath(__file__))


def _function_name(frame):
    """The qualified name (``Network.train_step``) of the function running in ``frame``."""
    code = frame.f_code
    return getattr(code, "co_qualname", None) or _qualname_from_class(frame)


def _qualname_from_class(frame):
    """Before Python 3.11 (no ``co_qualname``): a method's name after the class that defines it, found along the MRO
    of its ``self`` or ``cls``; a module's function by its name; a nested function by its name and first line."""
    code = frame.f_code
    owner = frame.f_locals.get("self", frame.f_locals.get("cls")) if code.co_argcount else None
    for klass in (owner if isinstance(owner, type) else type(owner)).__mro__ if owner is not None else ():
        found = klass.__dict__.get(code.co_name)
        functions = ((found.fget, found.fset, found.fdel) if isinstance(found, property)
                     else (getattr(found, "__func__", found),))  # a classmethod's or staticmethod's function
        if any(getattr(function, "__code__", None) is code for function in functions):
            return f"{klass.__qualname__}.{code.co_name}"
    if getattr(frame.f_globals.get(code.co_name), "__code__", None) is code:
        return code.co_name
    return f"{code.co_name} (line {code.co_firstlineno})"


def trace_step(net="simple", rule="urfb", backend="readable", untied=False, batch=2, input_shape=None, seed=0):
    """[(file relative to the package's parent, function, calls)] of one step, in the order first called.

    Runs in this process: Numba's compiler must have been switched off before Numba was
    imported for the readable tier's bodies to be seen (``reading_list`` sees to it).
    """
    import numpy as np

    from .network import build_network

    shape = tuple(input_shape or INPUT_SHAPES.get(net, INPUT_SHAPES["simple"]))
    network = build_network(net, shape, 10, rule=rule, untied=untied, seed=seed, backend=backend)
    rng = np.random.default_rng(seed)
    x, y = rng.random((batch,) + shape), rng.integers(0, 10, size=batch)
    calls = OrderedDict()
    root = os.path.dirname(PACKAGE)

    def profile(frame, event, arg):
        if event != "call":
            return
        code = frame.f_code
        if not code.co_filename.startswith(PACKAGE + os.sep) or code.co_name.startswith("<"):
            return
        key = (os.path.relpath(code.co_filename, root), _function_name(frame))
        calls[key] = calls.get(key, 0) + 1

    sys.setprofile(profile)
    try:
        network.train_step(x, y)
    finally:
        sys.setprofile(None)
    return [(path, name, count) for (path, name), count in calls.items()]


def _child():
    """The traced process: the arguments as JSON in argv[1]; prints the rows, or {"error": message}, as JSON."""
    try:
        print(json.dumps(trace_step(**json.loads(sys.argv[1]))))
    except HebbrefError as error:  # a bad network or rule name: its one line, as the command prints errors
        print(json.dumps({"error": str(error)}))


_CHILD = "from hebbref.reading import _child; _child()"


def reading_list(net="simple", rule="urfb", backend="readable", untied=False, batch=2, input_shape=None, seed=0):
    """``trace_step`` in a fresh process with ``NUMBA_DISABLE_JIT=1``: [(file, function, calls)], first-called order."""
    if backend not in BACKENDS:
        raise ConfigError(f"a reading list can follow the backends {', '.join(BACKENDS)}, not {backend!r}: the tuned "
                          "tier's kernels run only compiled")
    if not (isinstance(batch, int) and batch >= 1):
        raise ConfigError(f"batch must be a whole number of 1 or more, got {batch!r}")
    arguments = dict(net=net, rule=rule, backend=backend, untied=untied, batch=batch,
                     input_shape=list(input_shape) if input_shape else None, seed=seed)
    environment = dict(os.environ, NUMBA_DISABLE_JIT="1")
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(PACKAGE),
                                                              os.environ.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(arguments)], env=environment,
                          capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise ConfigError(f"the traced step failed: {last}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    if isinstance(found, dict):
        raise ConfigError(found["error"])
    return [tuple(row) for row in found]


def by_file(rows):
    """OrderedDict {file: [(function, calls)]}, files in the order first met."""
    files = OrderedDict()
    for path, name, count in rows:
        files.setdefault(path, []).append((name, count))
    return files


def parse_shape(text):
    """"3,32,32" -> (3, 32, 32); a ConfigError for anything but positive whole numbers separated by commas."""
    try:
        shape = tuple(int(n) for n in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise ConfigError(f"--input-shape takes positive whole numbers separated by commas, e.g. 3,32,32; got {text!r}")
    return shape


def print_reading_list(args):
    shape = parse_shape(args.input_shape) if args.input_shape else None
    rows = reading_list(args.net, args.rule, args.backend, args.untied, args.batch, shape)
    files = by_file(rows)
    print(f"One {args.rule} training step of {args.net!r}{' untied' if args.untied else ''} on the {args.backend} "
          f"backend (batch {args.batch}) runs {len(rows)} functions of hebbref in {len(files)} files, "
          "in the order first called (calls in brackets):")
    for path, functions in files.items():
        print(f"\n{path}")
        for name, count in functions:
            print(f"  {name}  [{count}]")
    return 0


def add_commands(subparsers):
    """``hebbref reading-list``: the files and functions one training step runs, in the order a reader meets them."""
    parser = subparsers.add_parser(
        "reading-list", help="the files and functions of hebbref one training step runs, in order",
        description="List every function of hebbref that one training step runs, file by file in the order "
                    "first met, with its number of calls. The step runs with Numba's compiler off, so the readable "
                    "tier's loop bodies are listed too; hence the numpy and readable backends only.")
    parser.add_argument("--net", default="simple", help="a preset (simple, deep) or a description (default simple)")
    parser.add_argument("--rule", default="urfb", help="a learning rule (hebbref rules lists them; default urfb)")
    parser.add_argument("--backend", default="readable", choices=BACKENDS,
                        help="readable (the readable tier, default) or numpy (the reference)")
    parser.add_argument("--untied", action="store_true", help="every conv layer locally connected")
    parser.add_argument("--batch", type=int, default=2, help="examples in the traced step (default 2)")
    parser.add_argument("--input-shape", default=None,
                        help="one example's shape, e.g. 3,32,32 (default: 1,28,28; 3,32,32 for deep)")
    parser.set_defaults(func=print_reading_list)
