"""The pipeline against the fake runtime: report data, exit codes, what
lands in --out and what is kept, all without real stages."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from convertctl.config.catalog import load_catalog
from convertctl.errors import EXIT_CONVERSION, EXIT_OK, EXIT_USAGE, EXIT_VALIDATION, UsageError
from convertctl.report.model import SCHEMA_FILE, load_report
from convertctl.report.render import PLAIN, markdown, rows
from convertctl.run.pipeline import Pipeline
from fakes import FakeRuntime, options, torchscript_file

ALL = ["fp32", "dynamic", "int8", "fp16"]


@pytest.fixture
def model(tmp_path) -> Path:
    return torchscript_file(tmp_path / "net.pt")


def run(model, tmp_path, runtime=None, plan="local", **kw):
    opts = options(
        model=model, shapes=[(1, 3, 8, 8)], modes=kw.pop("modes", ALL), out=tmp_path / "out", latency_runs=0, **kw
    )
    runtime = runtime or FakeRuntime()
    runtime.name = plan  # whose ladders to use
    return Pipeline(opts, runtime, load_catalog(), lambda _: None).run()


def test_passing_run_promotes_every_mode_and_a_valid_report(model, tmp_path):
    report = run(model, tmp_path, converter="onnx-tf")
    assert report.status == "passed" and report.exit_code == EXIT_OK
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == sorted(
        [f"net_{m}.tflite" for m in ALL] + ["net_int8.layer_errors.json", "report.json", "report.md", "report.html"]
    )
    assert not (out / ".convertctl").exists(), "a passed run leaves no run directory behind"
    data = json.loads((out / "report.json").read_text())
    jsonschema.validate(data, json.loads(SCHEMA_FILE.read_text()))
    labels = [(c["stage"], c["mode"]) for c in data["checks"]]
    assert labels == [("onnx", None), ("savedmodel", None)] + [("tflite", m) for m in ALL]
    assert all(c["status"] == "passed" for c in data["checks"])
    assert any("SYNTHETIC" in n for n in data["notices"]), "synthetic calibration must be said loudly"
    assert data["inputs"]["calibration"]["synthetic"] is True


def test_a_rung_that_reads_the_pytorch_model_needs_no_onnx(model, tmp_path):
    fake = FakeRuntime()
    report = run(model, tmp_path, fake, converter="litert-torch")
    assert report.exit_code == EXIT_OK
    assert fake.calls == ["export", "convert"] + [step for m in ALL for step in (f"quantize:{m}", f"judge:{m}")]
    assert [(c["stage"], c["mode"]) for c in report.checks] == [("tflite", m) for m in ALL]
    assert report.ladder[0]["purpose"] == "reference", "no ONNX is exported for it"
    assert {a["family"] for a in report.artifacts} == {"litert-torch"}


def test_tolerance_miss_fails_keeps_artifact_and_says_by_how_much(model, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "net_fp16.tflite").write_bytes(b"an earlier good file")
    report = run(model, tmp_path, FakeRuntime(noise={"fp16": 0.5}))
    assert report.exit_code == EXIT_VALIDATION
    check = next(c for c in report.checks if c["mode"] == "fp16")
    assert check["status"] == "failed"
    assert any("max abs diff" in f and "x the tolerance" in f for f in check["failures"])
    assert check["outputs"][0]["max_abs"] > 0.1
    others = [c for c in report.checks if c["mode"] in ("fp32", "dynamic", "int8")]
    assert all(c["status"] == "passed" for c in others), "one failure must not hide the other results"
    # The failing artifact is kept (in the run directory), the earlier file is untouched.
    art = next(a for a in report.artifacts if a["mode"] == "fp16")
    assert Path(art["path"]).is_file() and ".convertctl/runs" in art["path"]
    assert (tmp_path / "out" / "net_fp16.tflite").read_bytes() == b"an earlier good file"
    assert (Path(report.run_dir) / "report.json").is_file()


def test_fake_int8_is_a_failure_naming_the_mode(model, tmp_path):
    report = run(model, tmp_path, FakeRuntime(fake_int8=True))
    assert report.exit_code == EXIT_VALIDATION
    assert "int8" in report.failure and "float32" in report.failure
    assert Path(next(a for a in report.artifacts if a["mode"] == "int8")["path"]).is_file()


def test_tflite_io_layout_differing_from_pytorch_is_structural(model, tmp_path):
    report = run(model, tmp_path, FakeRuntime(nhwc=True), modes=["fp32"])
    check = next(c for c in report.checks if c["mode"] == "fp32")
    assert check["status"] == "failed" and report.exit_code == EXIT_VALIDATION
    assert check["failures"] == ["structure: TFLite input 'input' has shape [1, 8, 8, 3], want [1, 3, 8, 8]"]


def test_crashed_stage_is_a_conversion_failure_and_stops_the_pipeline(model, tmp_path):
    fake = FakeRuntime(crash="convert")
    report = run(model, tmp_path, fake, converter="convert-tf2.15")
    assert report.exit_code == EXIT_CONVERSION
    assert fake.calls == ["export", "convert"]
    assert "convert stage" in report.failure and "139" in report.failure
    assert not any((tmp_path / "out").glob("*.tflite"))


def test_conversion_failure_outranks_validation_failure(model, tmp_path):
    from convertctl.report.model import Report

    r = Report(model={}, runtime="x", modes=[])
    r.fail(EXIT_VALIDATION, "v")
    r.fail(EXIT_CONVERSION, "c")
    r.fail(EXIT_VALIDATION, "v2")
    assert (r.exit_code, r.failure) == (EXIT_CONVERSION, "c")


def test_accuracy_budget(model, tmp_path):
    import numpy as np
    from fakes import model as fake_model

    x = np.random.default_rng(3).standard_normal((40, 1, 3, 8, 8)).astype(np.float32)
    y = fake_model(x).reshape(40, -1).argmax(1)
    np.savez(tmp_path / "eval.npz", x=x, y=y)
    report = run(
        model,
        tmp_path,
        FakeRuntime(noise={"int8": 3.0}),
        eval_data=tmp_path / "eval.npz",
        tolerances={"int8": {"cosine": -1.0, "top1": 0.0}},
    )
    acc = report.accuracy
    assert acc["pytorch"] == 100.0 and acc["samples"] == 40
    assert acc["modes"]["fp32"]["status"] == "passed"
    assert acc["modes"]["int8"]["drop"] > 2.0 and acc["modes"]["int8"]["status"] == "failed"
    assert report.exit_code == EXIT_VALIDATION and "int8 accuracy" in report.failure


def test_report_renders_the_same_facts_in_markdown_and_reloads(model, tmp_path):
    run(model, tmp_path, FakeRuntime(noise={"fp16": 0.5}))
    path = next((tmp_path / "out" / ".convertctl" / "runs").glob("*/report.json"))
    report = load_report(path)
    md = markdown(report)
    for stage, mode, ok, _ in rows(report):
        assert f"| {stage} | {mode} | {PLAIN[ok]} |" in md
    assert "FAILED (exit 4)" in md


def test_github_step_summary_gets_the_markdown(model, tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    run(model, tmp_path, modes=["fp16"])
    assert "| tflite vs torch | fp16 | ✓ |" in summary.read_text()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"modes": ["int4"]}, "unknown mode"),
        ({"opset": 21}, "--opset 21: expected a whole number from 7 to 20"),
        ({"opset": 17, "converter": "onnx-tf"}, "convert-tf2.15: convert-tf2.15 reads opsets 7-13, --opset 17 given"),
        ({"layout": "nhwc", "converter": "onnx-tf"}, "onnx-tf gives NCHW I/O only, --layout nhwc asked for"),
        ({"tolerances": {"fp16": {"atoll": 1}}}, r"unknown key \(known: atol, cosine, rtol, top1\)"),
        ({"tolerances": {"fp64": {"atol": 1}}}, "unknown mode 'fp64'"),
        ({"max_drop": {"int4": 1.0}}, "unknown mode 'int4'"),
    ],
)
def test_bad_options_are_usage_errors(model, tmp_path, change, message):
    with pytest.raises(UsageError, match=message) as info:
        run(model, tmp_path, **change)
    assert info.value.exit_code == EXIT_USAGE
    assert not (tmp_path / "out").exists(), "nothing is written for bad input"


def test_parity_samples_come_from_real_data_when_given(model, tmp_path):
    import numpy as np

    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).standard_normal((80, 3, 8, 8)).astype(np.float32))
    report = run(model, tmp_path, calib=calib, modes=["int8"])
    # With real data, at least 64 samples (8 would make "88 %" out of 7 of 8).
    assert report.inputs["samples"] == {"count": 64, "source": f"first 64 of {calib}"}
    assert not report.notices
    report = run(model, tmp_path / "second", modes=["fp32"])
    assert report.inputs["samples"]["source"] == "synthetic (seed 0)"


def test_failed_stage_log_tail_is_shown_in_both_renderings(model, tmp_path):
    import io

    from convertctl.report.render import print_report
    from rich.console import Console

    report = run(model, tmp_path, FakeRuntime(crash="export"))
    buf = io.StringIO()
    print_report(report, Console(file=buf, width=200))
    shown = buf.getvalue()
    assert "last lines of the log of the export stage (export-torch2.13):" in shown and "Segmentation fault" in shown
    assert "Segmentation fault" in markdown(report)


def test_an_opset_the_first_export_rung_cannot_write_comes_from_the_next(model, tmp_path):
    """torch 1.7 exports up to opset 12: --opset 13 on Docker takes the ONNX
    file from the current-torch rung, and the reference from the first."""
    fake = FakeRuntime()
    report = run(model, tmp_path, fake, plan="docker", opset=13, modes=["fp32"])
    assert report.exit_code == EXIT_OK, report.failure
    onnx = next(c for c in report.checks if c["stage"] == "onnx")
    assert (onnx["variant"], onnx["opset"]) == ("export-torch2.13", 13)
    exports = [(e["variant"], e["status"], e.get("purpose")) for e in report.ladder if e["stage"] == "export"]
    assert exports == [("export-torch1.7", "used", "reference"), ("export-torch2.13", "used", "ONNX opset 13")]
