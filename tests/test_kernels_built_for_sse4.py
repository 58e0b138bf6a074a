"""The kernels as an x86 CPU without AVX gets them, compiled here in one process of its own.  # SPEC §2, §3, §5

A CPU that stops at SSE4.2 (Intel's before Sandy Bridge, and the Pentiums and Celerons
of later years) has 16 vector registers of 4 float32 numbers and no fused multiply-add:
``tuned_simd`` builds 4-lane vectors there and ``vfma`` a multiply and an add. A process
that compiles for Nehalem's features (``kernel_checks.run_built_for_sse4``) runs the parts
of ``built_elsewhere`` one after the other, into an empty Numba cache, and reports on each;
the tests read its report. Any x86-64 CPU of the last fifteen years runs that build, so the
whole is skipped only where this process builds 4-lane vectors already (or on an older CPU).
"""
import json

import pytest

from built_elsewhere import program
from kernel_checks import run_built_for_sse4


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """{part: "ok" or its traceback}, from one process that compiles for SSE4.2 (its last line of output)."""
    return json.loads(run_built_for_sse4(program(4), tmp_path_factory.mktemp("sse4")).strip().splitlines()[-1])


def test_the_row_kernels_compiled_for_sse4_compute_the_reference(report):
    """Vectors of 4 lanes, blocks of 8 channels, groups of four or eight: the conv layer's three equations."""
    assert report["conv rows"] == "ok", report["conv rows"]


def test_the_untied_register_path_compiled_for_sse4_equals_images_last(report):
    """Vectors of 4 lanes, pieces of 8 images, groups of four and eight channels: the same bits as ``images-last``."""
    assert report["untied registers"] == "ok", report["untied registers"]


def test_the_kept_dense_path_compiled_for_sse4_computes_the_reference(report):
    """Vectors of 4 lanes, blocks of 12 vectors of outputs: a dense layer's products over the inputs dropout kept."""
    assert report["drop dense"] == "ok", report["drop dense"]


def test_winograd_compiled_for_sse4_computes_the_reference(report):
    """Products in vector registers where the output channels fill whole blocks of 8, gemm's where not."""
    assert report["winograd"] == "ok", report["winograd"]


def test_the_kernels_compiled_for_sse4_call_no_fmaf(report):
    """No FMA on the CPU: ``vfma`` a multiply and an add, never the C library's fmaf one number at a time."""
    assert report["pools and blocks"] == "ok", report["pools and blocks"]
    assert report["multiply-adds"] == "ok", report["multiply-adds"]
    assert report["no fmaf"] == "ok", report["no fmaf"]


def test_the_kernels_16_registers_take_by_default_compiled_for_sse4_keep_their_sums_in_registers(report):
    """SSE has 16 vector registers, as AVX2: the same blocks keep their sums in them at 4 lanes, but the row
    increment's group of four, which without FMA needs a 17th (``built_elsewhere.NEEDS_FMA``)."""
    assert report["sums on the stack"] == "ok", report["sums on the stack"]
