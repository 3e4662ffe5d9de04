"""The real pipeline on the local runtime: real venvs, real torch, onnx-tf,
TensorFlow and TFLite, real numbers compared."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import convertctl, load_json
from convertctl.errors import EXIT_OK, EXIT_USAGE

pytestmark = pytest.mark.acceptance
ALL = ["fp32", "dynamic", "int8", "fp16"]


@pytest.fixture(scope="module")
def four_modes(smallcnn, tmp_path_factory):
    out = tmp_path_factory.mktemp("local-out")
    # The onnx-tf family (ONNX, SavedModel and TFLite checked in turn); tests/test_family_litert.py pins litert-torch.
    args = ["run", smallcnn, "--input-shape", "1,3,64,64", "--out", out, "--runtime", "local", "--converter", "onnx-tf"]
    for mode in ALL:
        args += ["--quant", mode]
    proc = convertctl(*args)
    return proc, out, load_json(out / "report.json") if (out / "report.json").exists() else None


def check(report, stage, mode=None):
    return next(c for c in report["checks"] if c["stage"] == stage and c["mode"] == mode)


def test_all_four_modes_pass(four_modes):
    proc, out, report = four_modes
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    assert report["status"] == "passed"
    for mode in ALL:
        assert (out / f"smallcnn_{mode}.tflite").stat().st_size > 1000
    assert "PASSED" in proc.stdout and "tflite vs torch" in proc.stdout


def test_fp32_matches_pytorch_within_1e_4(four_modes):
    report = four_modes[2]
    for stage, mode in (("onnx", None), ("savedmodel", None), ("tflite", "fp32")):
        out = check(report, stage, mode)["outputs"][0]
        assert out["max_abs"] <= 1e-4, (stage, out)
        assert out["top1"] == 1.0


def test_fp16_within_tolerance(four_modes):
    c = check(four_modes[2], "tflite", "fp16")
    assert c["status"] == "passed"
    assert 0 < c["outputs"][0]["max_abs"] <= c["tolerance"]["atol"] + c["tolerance"]["rtol"] * 10
    assert c["outputs"][0]["top1"] == 1.0


def test_int8_is_really_int8(four_modes):
    report = four_modes[2]
    art = next(a for a in report["artifacts"] if a["mode"] == "int8")
    assert [t["dtype"] for t in art["inputs"] + art["outputs"]] == ["int8", "int8"]
    assert all(t["scale"] > 0 for t in art["inputs"] + art["outputs"])
    assert art["ops"]["flex_ops"] == [] and art["ops"]["float_ops"] == 0
    assert not any(name.startswith("Flex") for name in art["ops"]["histogram"])
    c = check(report, "tflite", "int8")
    assert c["outputs"][0]["top1"] >= 0.75 and c["outputs"][0]["cosine"] >= 0.98
    assert report["inputs"]["calibration"]["synthetic"] is True


def test_quantized_files_are_smaller(four_modes):
    sizes = {a["mode"]: a["size_bytes"] for a in four_modes[2]["artifacts"]}
    assert sizes["int8"] < sizes["fp16"] < sizes["fp32"]
    assert sizes["dynamic"] < sizes["fp32"]


def test_second_run_creates_no_environment(smallcnn, four_modes, tmp_path):
    proc = convertctl(
        "run", smallcnn, "--input-shape", "1,3,64,64", "--quant", "fp16", "--out", tmp_path, "--runtime", "local",
        "--converter", "onnx-tf",  # the family four_modes ran
    )  # fmt: skip
    assert proc.returncode == EXIT_OK
    envs = load_json(tmp_path / "report.json")["environments"]
    assert len(envs) == 4 and not any(e["created"] for e in envs)
    assert {e["stage"] for e in envs} == {"export", "convert", "quantize", "measure"}
    assert "creating" not in proc.stdout


def test_shape_the_model_rejects_is_one_clear_message(smallcnn, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier output")
    proc = convertctl("run", smallcnn, "--input-shape", "1,5,64,64", "--out", out, "--runtime", "local")
    assert proc.returncode == EXIT_USAGE
    assert str(smallcnn) in proc.stdout and "rejects inputs of shape input=[1, 5, 64, 64]" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [".convertctl", "keep.txt"]
    assert (out / "keep.txt").read_text() == "earlier output"


def test_real_calibration_data_is_used(smallcnn, tmp_path):
    import numpy as np

    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(5).standard_normal((64, 3, 64, 64)).astype(np.float32))
    proc = convertctl(
        "run",
        smallcnn,
        "--input-shape",
        "1,3,64,64",
        "--quant",
        "int8",
        "--calib",
        calib,
        "--out",
        tmp_path / "o",
        "--runtime",
        "local",
    )
    assert proc.returncode == EXIT_OK
    report = load_json(tmp_path / "o" / "report.json")
    assert report["inputs"]["calibration"] == {"count": 64, "synthetic": False, "source": str(calib)}
    assert not any("SYNTHETIC" in n for n in report["notices"]) and "SYNTHETIC" not in proc.stdout


def test_real_report_matches_the_schema_and_re_renders(four_modes):
    import json

    import jsonschema
    from convertctl.report.model import SCHEMA_FILE

    proc, out, report = four_modes
    jsonschema.validate(report, json.loads(SCHEMA_FILE.read_text()))
    shown = convertctl("report", "show", out / "report.json")
    assert shown.returncode == EXIT_OK
    for mode in ALL:
        assert f"smallcnn_{mode}" in json.dumps(report["artifacts"])
        assert mode in shown.stdout
    md = convertctl("report", "show", "--markdown", out / "report.json")
    assert md.stdout == (out / "report.md").read_text()


def test_a_tolerance_that_cannot_hold_fails_with_numbers_and_keeps_the_artifact(smallcnn, tmp_path):
    model = tmp_path / "smallcnn.pt"
    model.write_bytes(smallcnn.read_bytes())
    (tmp_path / "convertctl.toml").write_text("[tolerance.fp16]\natol = 0.0\nrtol = 0.0\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "smallcnn_fp16.tflite").write_bytes(b"earlier")
    proc = convertctl(
        "run", model, "--input-shape", "1,3,64,64", "-q", "fp32", "-q", "fp16", "--out", out, "--runtime", "local"
    )
    assert proc.returncode == 4
    run_report = next(out.glob(".convertctl/runs/*/report.json"))
    report = load_json(run_report)
    fp16 = next(c for c in report["checks"] if c["mode"] == "fp16")
    assert fp16["status"] == "failed" and fp16["failures"][0].startswith("output: max abs diff")
    assert fp16["outputs"][0]["max_abs"] > 0
    assert next(c for c in report["checks"] if c["mode"] == "fp32")["status"] == "passed"
    assert "tflite:fp16 outside tolerance" in report["failure"]
    kept = next(a for a in report["artifacts"] if a["mode"] == "fp16")["path"]
    assert Path(kept).stat().st_size > 1000
    assert (out / "smallcnn_fp16.tflite").read_bytes() == b"earlier"
    assert "✗" in proc.stdout and "FAILED (exit 4)" in proc.stdout


def test_readme_example_command(tmp_path):
    """The convertctl parts of the README's first command, as written."""
    import shlex

    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    first = readme.split("```bash\n", 1)[1].splitlines()[0]
    steps = [shlex.split(part.strip())[1:] for part in first.split("&&") if "convertctl" in part]
    assert [s[0] for s in steps] == ["example", "run"]
    for step in steps:
        assert convertctl(*step, cwd=tmp_path).returncode == EXIT_OK
    report = load_json(tmp_path / "out" / "report.json")
    assert (tmp_path / "out" / "mobilenetv2_fp16.tflite").stat().st_size > 3_000_000
    fp16 = next(c for c in report["checks"] if c["mode"] == "fp16")
    # fp16 weights may flip a near-tie among 1000 classes on one of the 64 samples, no more.
    out = fp16["outputs"][0]
    assert fp16["status"] == "passed" and out["top1"] >= 63 / 64 and out["cosine"] > 0.999, out


def test_envs_list_and_prune(four_modes):
    from convertctl.config.catalog import load_catalog
    from convertctl.store.envstore import EnvStore

    proc = convertctl("envs", "list")
    assert proc.returncode == EXIT_OK
    store = EnvStore()
    for stage in ("export", "convert"):
        name = store.path_for(load_catalog().ladder("local", stage)[0]).name
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith(name))
        assert "ready" in line and "stale" not in line
    current = [store.path_for(v) for v in load_catalog().environments("local")]
    made = [p for p in current if p.exists()]  # not those whose Python this machine lacks
    assert len(made) >= 4, "the four-mode run's environments at least"
    dry = convertctl("envs", "prune", "--dry-run")
    assert dry.returncode == EXIT_OK and "would remove" in dry.stdout
    assert not any(p.name in dry.stdout for p in current), "the catalog's environments are not stale"
    assert all(p.exists() for p in made)
