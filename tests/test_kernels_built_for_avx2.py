"""The kernels as a CPU with AVX2 alone gets them, compiled here in one process of its own.  # SPEC §2, §3, §5

Numba takes the CPU it compiles for when it starts, so a process that compiles for
Haswell's features (``kernel_checks.run_built_for_avx2``: 8-lane vectors, 16 vector
registers) runs the parts of ``built_elsewhere`` one after the other, into an empty Numba
cache, and reports on each; the tests read its report. The whole is skipped where this
CPU builds 8-lane vectors already (the other test files run that build) or cannot run
AVX2 code. ``test_kernels_built_for_sse4.py`` runs the same parts for a CPU without AVX.
"""
import json

import pytest

from built_elsewhere import program
from kernel_checks import run_built_for_avx2


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """{part: "ok" or its traceback}, from one process that compiles for AVX2 (its last line of output)."""
    return json.loads(run_built_for_avx2(program(8), tmp_path_factory.mktemp("avx2")).strip().splitlines()[-1])


def test_the_row_kernels_compiled_for_avx2_compute_the_reference(report):
    """Vectors of 8 lanes and groups of four or eight channels: the conv layer's three equations."""
    assert report["conv rows"] == "ok", report["conv rows"]


def test_the_untied_register_path_compiled_for_avx2_equals_images_last(report):
    """Vectors of 8 lanes, pieces of 16 images, groups of four and eight channels: the same bits as ``images-last``."""
    assert report["untied registers"] == "ok", report["untied registers"]


def test_the_kept_dense_path_compiled_for_avx2_computes_the_reference(report):
    """Vectors of 8 lanes, blocks of 12 vectors of outputs: a dense layer's products over the inputs dropout kept."""
    assert report["drop dense"] == "ok", report["drop dense"]


def test_winograd_compiled_for_avx2_computes_the_reference(report):
    """Products in vector registers where the output channels fill whole blocks of 16, gemm's where not."""
    assert report["winograd"] == "ok", report["winograd"]


def test_the_kernels_compiled_for_avx2_fuse_their_multiply_adds_and_call_no_fmaf(report):
    """A CPU with FMA: every multiply-add one fused instruction, none a call."""
    assert report["multiply-adds"] == "ok", report["multiply-adds"]
    assert report["no fmaf"] == "ok", report["no fmaf"]


def test_the_kernels_compiled_for_avx2_hold_no_masked_loads_or_stores(report):
    """Every kernel the parts compiled (rows, untied paths, pools, ramps, blocks) reads before it selects."""
    assert report["pools and blocks"] == "ok", report["pools and blocks"]
    assert report["masked moves"] == "ok", report["masked moves"]


def test_the_kernels_16_registers_take_by_default_compiled_for_avx2_keep_their_sums_in_registers(report):
    """No loop of multiply-adds of theirs stores a sum to the stack and loads it again."""
    assert report["sums on the stack"] == "ok", report["sums on the stack"]
