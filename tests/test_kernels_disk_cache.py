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
import time
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


# --- several processes, one cache folder ------------------------------------------------------------------------
TOY = """
from numba import njit


@njit(cache=True)
def plus_one(x):
    return x + 1
"""

# compiles plus_one for one argument type with its kernels under hebbref's lock (``disk_cache.share_safely``), when
# the file ``go`` appears; Numba's index write slowed down by a second, so that the other process's call comes while
# this one's save is under way. Prints when it called the function, and when its index and data writes began and ended
SAVE_AT_ONCE = """
import json, os, sys, time
import numba.core.caching as caching
from hebbref.kernels import disk_cache
import toy

argument, folder = {"int": 3, "float": 3.0}[sys.argv[1]], sys.argv[2]
times = {}
save_index, save_data = caching.IndexDataCacheFile._save_index, caching.IndexDataCacheFile._save_data

def slow_index(self, overloads):
    times["written from"] = time.time()
    time.sleep(1.0)
    save_index(self, overloads)

def timed_data(self, name, data):
    save_data(self, name, data)
    times["written to"] = time.time()

caching.IndexDataCacheFile._save_index = slow_index
caching.IndexDataCacheFile._save_data = timed_data
disk_cache.share_safely([toy])
open(os.path.join(folder, "ready-" + sys.argv[1]), "w").close()
while not os.path.exists(os.path.join(folder, "go")):
    time.sleep(0.002)
times["called"] = time.time()
toy.plus_one(argument)
print(json.dumps(times))
"""

LOAD_BOTH = """
import json
import toy
results = [repr(toy.plus_one(3)), repr(toy.plus_one(3.0))]
print(json.dumps([results, sum(toy.plus_one.stats.cache_hits.values())]))
"""


def test_two_processes_saving_builds_of_one_kernel_at_once_keep_both(tmp_path):
    """Two processes save builds of one cached function at the same moment; a third loads each build for its own
    signature.

    Numba alone gives both builds the same data file, and the third process then ran one
    build's machine code for the other's signature (an int64 argument returned a float).
    Under the cache folder's lock (``disk_cache.share_safely``) the second process waits
    for the first's save (its own first look into the cache, a load, waits already): the
    test holds that the second called the function before the first's save was done, that
    their writes did not overlap, and that both builds load and compute.
    """
    source = tmp_path / "source"
    source.mkdir()
    (source / "toy.py").write_text(TOY)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=os.pathsep.join([str(source), str(ROOT)]))
    savers = {kind: subprocess.Popen([sys.executable, "-c", SAVE_AT_ONCE, kind, str(tmp_path)], env=env, cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for kind in ("int", "float")}
    while not all((tmp_path / f"ready-{kind}").exists() for kind in savers):
        assert all(p.poll() is None for p in savers.values()), [p.communicate() for p in savers.values()]
        time.sleep(0.01)
    (tmp_path / "go").touch()
    times = {}
    for kind, process in savers.items():
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        times[kind] = json.loads(out.strip().splitlines()[-1])
    first, second = sorted(times.values(), key=lambda t: t["written from"])
    assert second["called"] < first["written to"]  # the second was compiling while the first was saving
    assert second["written from"] >= first["written to"]  # and saved after it
    out = subprocess.run([sys.executable, "-c", LOAD_BOTH], env=env, cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    results, hits = json.loads(out.strip().splitlines()[-1])
    assert results == ["4", "4.0"]
    assert hits == 2  # both builds were found on the disk


def test_every_cached_kernel_loads_and_saves_under_the_lock():
    import hebbref.kernels as kernels

    guarded = 0
    for module in kernels.CACHED_MODULES:
        for name, kernel in disk_cache.cached_kernels(module):
            files = getattr(kernel._cache, "_cache_file", None)
            if files is not None:  # a kernel Numba caches (not one compiled with cache=False)
                assert isinstance(files, disk_cache.LockedCacheFiles), f"{module.__name__}.{name}"
                guarded += 1
    assert guarded > 50  # the test sees the kernels at all (118 when it was written)


# step 1: a build for float64 saved, then the index emptied (as ``keep_in_step`` empties it when the source changes:
# the data file stays); step 2: a build for int64 saved, its data written 1.5 s after its index (it takes the freed
# name), the file ``indexed`` made in between; step 3: once ``indexed`` is there, the int64 build loaded
STALE_STEP = """
import json, os, sys, time
import numba.core.caching as caching
from hebbref.kernels import disk_cache
import toy

step, folder = sys.argv[1], sys.argv[2]
disk_cache.share_safely([toy])
if step == "1":
    toy.plus_one(3.0)
    toy.plus_one._cache.flush()
elif step == "2":
    save_index, save_data = caching.IndexDataCacheFile._save_index, caching.IndexDataCacheFile._save_data

    def marked_index(self, overloads):
        save_index(self, overloads)
        open(os.path.join(folder, "indexed"), "w").close()

    def late_data(self, name, data):
        time.sleep(1.5)
        save_data(self, name, data)

    caching.IndexDataCacheFile._save_index = marked_index
    caching.IndexDataCacheFile._save_data = late_data
    toy.plus_one(3)
else:
    while not os.path.exists(os.path.join(folder, "indexed")):
        time.sleep(0.002)
    print(json.dumps([repr(toy.plus_one(3)), sum(toy.plus_one.stats.cache_hits.values())]))
"""


def test_a_load_during_a_save_waits_for_it(tmp_path):
    """A process that loads a build while another is saving it reads the new build, not the data file of an old one.

    Numba writes a save's index before its data; a data file name freed when an index was
    emptied (the kernels' source changed) still holds the old build until then. Without a
    lock a load between the two writes read the old float64 build for an int64 call.
    """
    source = tmp_path / "source"
    source.mkdir()
    (source / "toy.py").write_text(TOY)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=os.pathsep.join([str(source), str(ROOT)]))

    def step(number, wait=True):
        process = subprocess.Popen([sys.executable, "-c", STALE_STEP, number, str(tmp_path)], env=env, cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return process.communicate(timeout=120) + (process.returncode,) if wait else process

    assert step("1")[2] == 0
    saver, loader = step("2", wait=False), step("3", wait=False)
    for process in (saver, loader):
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    result, hits = json.loads(out.strip().splitlines()[-1])
    assert (result, hits) == ("4", 1)  # the int64 build, from the disk


def test_a_second_thread_waits_for_the_lock_and_the_same_thread_takes_it_again(tmp_path):
    """Within one process: a use inside another in the same thread holds the lock already; another thread waits."""
    import threading

    times, entered = {}, threading.Event()

    def first():
        with disk_cache.folder_lock(tmp_path, exclusive=True):
            with disk_cache.folder_lock(tmp_path, exclusive=True):  # the same thread again: no wait
                entered.set()
                time.sleep(0.5)
            times["first left"] = time.time()

    def second():
        entered.wait()
        with disk_cache.folder_lock(tmp_path, exclusive=False):
            times["second entered"] = time.time()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert times["second entered"] >= times["first left"]
