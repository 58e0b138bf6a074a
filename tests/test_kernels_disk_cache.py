"""Numba's compiled kernels on disk follow the kernels' source, across files (hebbref/kernels/disk_cache.py).

Numba reloads a cached kernel while the kernel's own file is unchanged, even when a
function it inlines from another file has changed. ``disk_cache.keep_in_step`` drops a
module's cached kernels when the recorded fingerprint of the whole folder differs.
"""
import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from hebbref.kernels import disk_cache

ROOT = Path(__file__).resolve().parents[1]

# one cached kernel of tuned_pooling, called once: prints whether it came from the disk
CALL = """
import json
from hebbref.kernels import tuned_pooling
tuned_pooling.windows_holding(3, 3, 2, 1, 14)
stats = tuned_pooling.windows_holding.stats
print(json.dumps([sum(stats.cache_hits.values()), sum(stats.cache_misses.values()), stats.cache_path]))
"""


def _call(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", CALL], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    hits, misses, folder = json.loads(out.stdout.strip().splitlines()[-1])
    return hits, misses, Path(folder)


def test_a_kernel_compiled_from_another_source_is_compiled_again(tmp_path):
    hits, misses, folder = _call(tmp_path)
    assert (hits, misses) == (0, 1)  # an empty cache: compiled, then saved
    assert _call(tmp_path)[:2] == (1, 0)  # the same source: loaded from the disk
    record = folder / disk_cache.FINGERPRINT_FILE
    recorded = json.loads(record.read_text())
    assert recorded["hebbref.kernels.tuned_pooling"] == disk_cache.fingerprint()
    # as if the kernels had been compiled from another version of the folder (an edit of another file)
    recorded["hebbref.kernels.tuned_pooling"] = "another source"
    record.write_text(json.dumps(recorded))
    assert _call(tmp_path)[:2] == (0, 1)  # dropped, compiled again
    assert json.loads(record.read_text())["hebbref.kernels.tuned_pooling"] == disk_cache.fingerprint()
    assert _call(tmp_path)[:2] == (1, 0)  # and saved again
    # hebbref info says which were dropped
    recorded["hebbref.kernels.tuned_pooling"] = "another source"
    record.write_text(json.dumps(recorded))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    info = [sys.executable, "-m", "hebbref", "info", "--backend", "numba"]
    out = subprocess.run(info, env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert f"cache folder {folder}: dropped in this process, their source changed: hebbref.kernels.tuned_pooling\n" in out
    out = subprocess.run(info, env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert f"cache folder {folder}: none dropped" in out


def test_the_fingerprint_follows_every_file_of_the_folder(tmp_path):
    folder = tmp_path / "kernels"
    shutil.copytree(disk_cache.KERNELS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    before = disk_cache.fingerprint(folder)
    assert disk_cache.fingerprint(folder) == before
    pooling = folder / "tuned_pooling.py"
    pooling.write_text(pooling.read_text() + "# an edit\n")
    assert disk_cache.fingerprint(folder) != before
    pooling.unlink()
    assert disk_cache.fingerprint(folder) != before


def test_every_kernel_module_with_cached_kernels_is_kept_in_step():
    """A new module with cached kernels must join ``CACHED_MODULES`` in hebbref/kernels/__init__.py."""
    import hebbref.kernels as kernels

    for path in disk_cache.KERNELS.glob("*.py"):
        if path.stem in ("__init__", "readable_cuda"):  # readable_cuda: numba.cuda, imported only on a GPU
            continue
        module = __import__(f"hebbref.kernels.{path.stem}", fromlist=["_"])
        if disk_cache.cached_kernels(module):
            assert module in kernels.CACHED_MODULES, f"{module.__name__} is not in CACHED_MODULES"
    assert disk_cache.cached_kernels(kernels.tuned_pooling)  # the test sees the cached kernels at all


# the direct path's increment and the conv block's, whose loops are written once
# (tuned_conv_direct.planes_increment), and the channel path's kernels and block, built for each span from
# bodies written once (tuned_conv_channels.correlate_group, increment_group): prints every cached kernel's
# hits and misses in the process
SECOND_PROCESS = """
import json
import numpy as np
import hebbref.kernels as kernels
from hebbref.kernels import disk_cache, tuned_conv_block, tuned_conv_channels, tuned_conv_direct
rng = np.random.default_rng(0)
x, W = rng.standard_normal((2, 2, 6, 6)), rng.standard_normal((3, 2, 3, 3))
h, cache = tuned_conv_direct.forward(x, W)
tuned_conv_direct.weight_increment(rng.standard_normal(h.shape), cache)
y, _, _, block = tuned_conv_block.forward_direct_path(x, W, 2, 2, 0.5)
tuned_conv_block.backward_direct_path(rng.standard_normal(y.shape), block, 0.5)
x, W = x.astype(np.float32), W.astype(np.float32)
for span in (8, 6):
    h, cache = tuned_conv_channels.forward(x, W, span)
    tuned_conv_channels.weight_increment(h, cache)
    y, _, _, block = tuned_conv_block.forward_channels_path(x, W, 2, 2, 0.5, span)
    tuned_conv_block.backward_channels_path(y, block, 0.5)
counts = {}
for module in kernels.CACHED_MODULES:
    for name, kernel in disk_cache.cached_kernels(module):
        stats = kernel.stats
        if stats.cache_hits or stats.cache_misses:
            counts[module.__name__ + "." + name] = [sum(stats.cache_hits.values()), sum(stats.cache_misses.values())]
print(json.dumps(counts))
"""


def test_a_second_process_finds_every_kernel_the_first_compiled(tmp_path):
    """No kernel is compiled again by the next process (a kernel that took a function as an argument was)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    runs = [json.loads(subprocess.run([sys.executable, "-c", SECOND_PROCESS], env=env, cwd=ROOT, capture_output=True,
                                      text=True, check=True).stdout.strip().splitlines()[-1]) for _ in range(2)]
    first, second = runs
    channels = [f"tuned_conv_channels.{kernel}" for kernel in ("correlate_channels", "increment_channels",
                                                                "pool_of_correlation", "increment_from_winners")]
    for name in ["tuned_conv_direct.increment_of_planes", "tuned_conv_block.increment_from_winners"] + channels:
        assert first[f"hebbref.kernels.{name}"] == [0, 1], name  # an empty cache: compiled once, then saved
        assert second[f"hebbref.kernels.{name}"] == [1, 0], name  # loaded
    missed = {name: count for name, count in second.items() if count[1]}
    assert not missed, f"compiled again in a second process: {missed}"


def _decorated_cached(function):
    """Whether ``function`` (an ast.FunctionDef) is decorated ``njit(..., cache=True, ...)``."""
    for decorator in function.decorator_list:
        if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", None) == "njit":
            if any(k.arg == "cache" and getattr(k.value, "value", None) is True for k in decorator.keywords):
                return True
    return False


def test_no_cached_kernel_calls_a_function_it_is_given():
    """A kernel given a function as an argument is compiled again by every process: its type names the address.

    The static form of the test above, for every cached kernel of the folder: none calls one
    of its own arguments. (A body that does, like ``tuned_conv_direct.planes_increment``,
    is inlined into cached kernels that name the function themselves.)
    """
    # a ctypes function pointer is typed by its signature, not its address: the cache finds it
    ctypes_pointers = {"tuned_conv_shifted.py::gemm calls its argument blas"}  # SciPy's gemm, blas_for
    found, kernels_read = [], 0
    for path in sorted(disk_cache.KERNELS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and _decorated_cached(node):
                kernels_read += 1
                arguments = {a.arg for a in node.args.args}
                called = {c.func.id for c in ast.walk(node) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}
                found += [f"{path.name}::{node.name} calls its argument {name}" for name in sorted(arguments & called)]
    assert set(found) == ctypes_pointers, sorted(set(found) - ctypes_pointers)
    assert kernels_read > 50  # the check sees the kernels at all (99 when it was written)
