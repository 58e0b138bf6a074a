"""hebbref/runtime.py: importing hebbref changes nothing; the tuned backend's process settings, when it loads.

Each case runs in a fresh interpreter, since the settings act when libraries load.
"""
import json
import os
import subprocess
import sys

import pytest

REPORT = """
import json, os, sys
{before}
environment_before = dict(os.environ)
import hebbref
imported = dict(os.environ) == environment_before
hebbref.build_network("conv3:2 ramp out", (1, 4, 4), 2, backend="numpy")
numpy_network = dict(os.environ) == environment_before
hebbref.get_backend("numba")
from hebbref import runtime
import glob, ctypes, scipy
libraries = glob.glob(os.path.join(os.path.dirname(scipy.__file__) + ".libs", "libscipy_openblas*.so*"))
scipy_threads = ctypes.CDLL(libraries[0]).scipy_openblas_get_num_threads() if libraries else None
print(json.dumps({{"imported": imported, "numpy_network": numpy_network,
                  "environment_after": dict(os.environ) == environment_before,
                  "applied": {{change["what"].split(" ")[0]: change["applied"] for change in runtime.CHANGES}},
                  "scipy_threads": scipy_threads}}))
"""
SETTINGS = ("OPENBLAS_THREAD_TIMEOUT", "OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS", "HEBBREF_RUNTIME")


def run(before="", **env):
    environment = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    environment.update(env)
    out = subprocess.run([sys.executable, "-c", REPORT.format(before=before)], env=environment,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def test_importing_hebbref_leaves_the_environment_unchanged():
    """Importing, building a numpy network, and even loading the tuned backend leave os.environ as it was."""
    report = run()
    assert report["imported"] and report["numpy_network"] and report["environment_after"]


def test_the_tuned_backend_applies_its_settings_when_it_loads():
    report = run()
    assert report["applied"] == {"Numba's": True, "SciPy's": True, "glibc": True}
    if report["scipy_threads"] is not None:
        assert report["scipy_threads"] == 1  # the gemm of the shifted products runs on its caller's thread


def test_hebbref_runtime_0_switches_every_setting_off():
    report = run(HEBBREF_RUNTIME="0")
    assert report["applied"] == {"all": False}
    assert report["environment_after"]


def test_scipy_loaded_first_is_reported_as_too_late():
    report = run(before="import scipy.linalg")
    assert report["applied"]["SciPy's"] is False and report["applied"]["Numba's"] is True


@pytest.mark.parametrize("env, expected", [
    ({"OMP_WAIT_POLICY": "active"}, {"Numba's": False, "SciPy's": True, "glibc": True}),
    # the user's OPENBLAS_NUM_THREADS governs NumPy's BLAS; SciPy's, called inside our threads, still gets one
    ({"OPENBLAS_NUM_THREADS": "2"}, {"Numba's": True, "SciPy's": True, "glibc": True}),
])
def test_the_users_settings_win(env, expected):
    report = run(**env)
    assert report["applied"] == expected
    assert report["environment_after"]
    if "OPENBLAS_NUM_THREADS" in env and report["scipy_threads"] is not None:
        assert report["scipy_threads"] == 1


def test_hebbref_info_reports_versions_backend_threads_cpu_and_changes():
    environment = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    out = subprocess.run([sys.executable, "-m", "hebbref", "info", "--backend", "numba"], env=environment,
                         capture_output=True, text=True, check=True).stdout
    for expected in ("versions:", "numba:", "backend: numba", "cpu:", "model:", "Numba compiles for:", "the kernels' vectors:", "threads:",
                     "process settings changed:", "[applied] Numba's OpenMP threads", "compiled kernels:",
                     "cache folder ", "plans:", "of them timed with this kernel source:"):
        assert expected in out, f"{expected!r} missing from hebbref info:\n{out}"
    bad = subprocess.run([sys.executable, "-m", "hebbref", "info", "--backend", "fortran"], env=environment,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown backend" in bad.stderr and "Traceback" not in bad.stderr
