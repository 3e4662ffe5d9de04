"""Bad input through the real CLI: one message naming the file and the
problem, a distinct non-zero exit code, no traceback, nothing lost."""

from __future__ import annotations

import zipfile

import pytest
from conftest import convertctl
from convertctl.errors import EXIT_USAGE


@pytest.fixture
def fake_model(tmp_path):
    path = tmp_path / "net.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("net/code/__torch__.py", "")
    return path


def assert_one_clear_error(proc, *needles):
    assert proc.returncode == EXIT_USAGE, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in proc.stderr.replace("\n", " ")


def test_missing_model(tmp_path):
    proc = convertctl("run", tmp_path / "missing.pt", "--input-shape", "1,3,8,8", "--runtime", "local")
    assert_one_clear_error(proc, "missing.pt: no such file")


def test_not_torchscript(tmp_path):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"not a model")
    proc = convertctl("run", path, "--input-shape", "1,3,8,8", "--runtime", "local")
    assert_one_clear_error(proc, "weights.pth: not a model file convertctl reads")


def test_unknown_mode(fake_model):
    proc = convertctl("run", fake_model, "--input-shape", "1,3,8,8", "--quant", "int4", "--runtime", "local")
    assert_one_clear_error(proc, "--quant int4: unknown mode")


def test_bad_shape(fake_model):
    proc = convertctl("run", fake_model, "--input-shape", "1,3,x", "--runtime", "local")
    assert_one_clear_error(proc, "--input-shape '1,3,x'")


def test_missing_shape(fake_model):
    proc = convertctl("run", fake_model, "--runtime", "local")
    assert_one_clear_error(proc, "--input-shape is required")


def test_unwritable_out(fake_model):
    out = "/proc/convertctl-out"  # not writable, not even for root (CI runs as root)
    proc = convertctl("run", fake_model, "--input-shape", "1,3,8,8", "--out", out, "--runtime", "local")
    assert_one_clear_error(proc, f"--out {out}: cannot write there")


def test_out_that_is_a_file(fake_model, tmp_path):
    out = tmp_path / "file"
    out.write_text("precious")
    proc = convertctl("run", fake_model, "--input-shape", "1,3,8,8", "--out", out, "--runtime", "local")
    assert_one_clear_error(proc, f"--out {out}: exists and is not a directory")
    assert out.read_text() == "precious"


def test_missing_calibration_folder(fake_model, tmp_path):
    proc = convertctl(
        "run",
        fake_model,
        "--input-shape",
        "1,3,8,8",
        "--quant",
        "int8",
        "--calib",
        tmp_path / "nocalib",
        "--runtime",
        "local",
    )
    assert_one_clear_error(proc, "nocalib: calibration data not found")


def test_bad_config_file(fake_model):
    (fake_model.parent / "convertctl.toml").write_text("input_shap = '1,3,8,8'\n")
    proc = convertctl("run", fake_model, "--runtime", "local")
    assert_one_clear_error(proc, "convertctl.toml: unknown setting(s) input_shap")


def test_report_show_rejects_other_json(tmp_path):
    path = tmp_path / "other.json"
    path.write_text("{}")
    proc = convertctl("report", "show", path)
    assert_one_clear_error(proc, "other.json: not a convertctl report")


def test_debug_shows_the_traceback(tmp_path):
    proc = convertctl("--debug", "run", tmp_path / "missing.pt", "--input-shape", "1,3,8,8", "--runtime", "local")
    assert proc.returncode == EXIT_USAGE and "Traceback" in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    "setting",
    [
        'input_shape = "1,3,8,8"',
        "input_shape = [1, 3, 8, 8]",
        'input_shape = ["1,3,8,8"]',
        "input_shape = [[1, 3, 8, 8]]",
    ],
)
def test_config_shapes_in_every_spelling_reach_the_model_check(tmp_path, setting):
    """Each spelling parses; the run then stops at the (deliberately) unreadable model."""
    model = tmp_path / "net.pt"
    model.write_bytes(b"junk")
    (tmp_path / "convertctl.toml").write_text(setting + '\nquant = "fp16"\n')
    proc = convertctl("run", model, "--runtime", "local")
    assert_one_clear_error(proc, "net.pt: not a model file convertctl reads")
