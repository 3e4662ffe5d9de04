"""What a user reads when a stage dies without writing a result."""

from __future__ import annotations

import pytest
from convertctl.config.catalog import load_catalog
from convertctl.runtimes.base import StageRun, crash_signal


@pytest.mark.parametrize(
    "code, name",
    [
        (-11, "SIGSEGV"),
        (139, "SIGSEGV"),
        (134, "SIGABRT"),
        (-9, "SIGKILL"),
        (137, "SIGKILL"),
        (132, "SIGILL"),
        (1, ""),
        (2, ""),
        (0, ""),
        (255, ""),
    ],
)
def test_crash_signal_reads_both_conventions(code, name):
    assert crash_signal(code) == name


def _run(code: int, tail: list) -> StageRun:
    variant = load_catalog().ladder("docker", "export")[0]
    return StageRun("export", variant, code, {}, 1.0, tail)


def test_a_segfault_is_named_with_what_to_try():
    err = _run(139, ["UserWarning: CUDA initialization", "frame #0: c10::foo", "Segmentation fault"]).error
    assert err.startswith("the export stage crashed (SIGSEGV, exit code 139) and wrote no result: ")
    assert "frame #" not in err and "Segmentation fault" in err
    # not "--runtime local": the crash may have been in the local runtime (it was, with NaN calibration data)
    assert "--export-image" in err and "the other --runtime" in err


def test_a_plain_failure_is_not_called_a_crash():
    err = _run(1, ["Traceback", "ValueError: bad"]).error
    assert err == "the export stage exited with code 1 and wrote no result: Traceback | ValueError: bad"


def test_a_result_error_wins_over_the_exit_code():
    run = StageRun("export", load_catalog().ladder("docker", "export")[0], 3, {"status": "failed", "error": "x.pt: no"})
    assert run.error == "x.pt: no" and not run.ok
