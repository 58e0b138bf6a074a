"""hebbref/_threads.py: idle OpenBLAS and Numba threads are told to sleep, and nothing else changes.

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
import hebbref
hebbref.get_backend("numba")
from hebbref._threads import applied
print(json.dumps({{"applied": applied, "timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
                  "wait_policy": os.environ.get("OMP_WAIT_POLICY")}}))
"""


def run(before="", **env):
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("OPENBLAS_THREAD_TIMEOUT", "OMP_WAIT_POLICY", "HEBBREF_QUIET_THREADS")}
    environment.update(env)
    out = subprocess.run([sys.executable, "-c", REPORT.format(before=before)], env=environment,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def test_importing_hebbref_first_quiets_both_pools_and_leaves_no_wait_policy_behind():
    report = run()
    assert report["applied"] == {"openblas": True, "numba": True}
    assert report["timeout"] == "4"
    assert report["wait_policy"] is None  # set only while Numba started its threads


def test_numpy_loaded_first_is_reported_as_too_late_for_openblas():
    report = run(before="import numpy")
    assert report["applied"] == {"openblas": False, "numba": True}


@pytest.mark.parametrize("env, expected", [
    ({"HEBBREF_QUIET_THREADS": "0"}, {"openblas": False, "numba": False}),
    ({"OPENBLAS_THREAD_TIMEOUT": "20", "OMP_WAIT_POLICY": "active"}, {"openblas": False, "numba": False}),
])
def test_the_users_settings_win(env, expected):
    report = run(**env)
    assert report["applied"] == expected
    assert report["timeout"] == env.get("OPENBLAS_THREAD_TIMEOUT")
    assert report["wait_policy"] == env.get("OMP_WAIT_POLICY")
