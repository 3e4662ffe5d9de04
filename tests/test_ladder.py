"""The convert ladder on the local runtime, with real stages, under
catalogs made for the test (CONVERTCTL_CATALOG: the shipped variants, other
ladders, and one test-only variant):

- a first rung that cannot convert the model hands over to the next, and
  the report lists both rungs: variant, the stage that failed, the error in
  one line, seconds;
- a native crash while making int8 (tests/abort_int8_quantize.py aborts
  inside the calibrator) loses int8 only: the other modes' files and checks
  are kept, the crash is named, and the next rung may still make int8.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from catalogs import catalog_file, variant_table
from conftest import convertctl, load_json
from convertctl.config.catalog import load_catalog
from convertctl.errors import EXIT_CONVERSION, EXIT_OK
from stage_envs import build_zoo

pytestmark = pytest.mark.acceptance
HERE = Path(__file__).resolve().parent
ALL = ["fp32", "dynamic", "int8", "fp16"]
ABORTING = "litert-torch0.10-abort-int8-TEST"


def aborting_variants() -> str:
    """The litert-torch variants again, with a quantize script that aborts in int8's calibration."""
    catalog = load_catalog()
    convert = next(v for v in catalog.variants.values() if v.family == "litert-torch")
    quantize = catalog.quantizers(convert)[0]
    skip = {"name", "pins"}
    c_fields = {k: getattr(convert, k) for k in convert.__dataclass_fields__ if k not in skip}
    q_fields = {k: getattr(quantize, k) for k in quantize.__dataclass_fields__ if k not in skip}
    c_fields["quantize"] = ABORTING + "-quantize"
    q_fields["script"] = str(HERE / "abort_int8_quantize.py")  # absolute: images_dir() / it is itself
    return variant_table(ABORTING, c_fields) + "\n" + variant_table(ABORTING + "-quantize", q_fields)


def run(model, shape, out, catalog, modes):
    args = ["run", model, "--input-shape", shape, "--out", out, "--runtime", "local"]
    proc = convertctl(*args, *[a for m in modes for a in ("-q", m)], env={"CONVERTCTL_CATALOG": str(catalog)})
    reports = sorted(out.glob(".convertctl/runs/*/report.json"))
    report = load_json(out / "report.json") if (out / "report.json").exists() else load_json(reports[-1])
    return proc, report, [e for e in report["ladder"] if e["stage"] == "convert"]


def test_a_first_rung_that_cannot_convert_hands_over_to_the_next(tmp_path):
    """onnx-tf 1.10 cannot convert an ONNX GRU (linear_before_reset); litert-torch can."""
    build_zoo(tmp_path, "gru")
    catalog = catalog_file(tmp_path, ["convert-tf2.15", "litert-torch0.10"])
    proc, report, rungs = run(tmp_path / "gru.pt", "1,20,16", tmp_path / "out", catalog, ["fp32", "fp16"])
    assert proc.returncode == EXIT_OK, proc.stdout[-4000:]

    assert [e["variant"] for e in rungs] == ["convert-tf2.15", "litert-torch0.10"]
    first, second = rungs
    assert (first["status"], first["failed_stage"]) == ("failed", "convert")
    assert "GRU" in first["error"] and "linear_before_reset" in first["error"], first["error"]
    assert "\n" not in first["error"] and first["seconds"] > 0
    assert second["status"] == "used" and second["modes"] == {"fp32": "ok", "fp16": "ok"} and second["seconds"] > 0
    assert {a["mode"]: a["variant"] for a in report["artifacts"]} == {
        "fp32": "litert-torch0.10",
        "fp16": "litert-torch0.10",
    }
    # The first rung's ONNX came with the reference run; both rungs are rendered.
    assert [e.get("purpose") for e in report["ladder"] if e["stage"] == "export"] == ["reference + ONNX opset 11"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "convert-tf2.15 (onnx-tf): failed at convert" in md
    assert "litert-torch0.10 (litert-torch): made fp32, fp16" in md


def test_an_int8_crash_loses_int8_only(smallcnn, tmp_path):
    catalog = catalog_file(tmp_path, [ABORTING], aborting_variants())
    proc, report, rungs = run(smallcnn, "1,3,64,64", tmp_path / "out", catalog, ALL)
    assert proc.returncode == EXIT_CONVERSION, proc.stdout[-4000:]
    (rung,) = rungs
    assert rung["modes"]["int8"].startswith("the quantize stage crashed (SIGABRT"), rung["modes"]
    assert {m: rung["modes"][m] for m in ("fp32", "dynamic", "fp16")} == {"fp32": "ok", "dynamic": "ok", "fp16": "ok"}
    assert "int8" in report["failure"] and "SIGABRT" in report["failure"]
    # The other modes' files and checks are kept (in the run directory: the run failed).
    kept = {a["mode"]: a for a in report["artifacts"]}
    for mode in ("fp32", "dynamic", "fp16"):
        assert Path(kept[mode]["path"]).stat().st_size == kept[mode]["size_bytes"] > 1000
        assert next(c for c in report["checks"] if c["mode"] == mode)["status"] == "passed"
    assert "file" not in kept["int8"] and "SIGABRT" in kept["int8"]["error"]
    assert "this test fixture aborts" in "\n".join(report_stage(report, "int8")["log_tail"])


def test_a_mode_lost_on_one_rung_comes_from_the_next(smallcnn, tmp_path):
    catalog = catalog_file(tmp_path, [ABORTING, "convert-tf2.15"], aborting_variants())
    proc, report, rungs = run(smallcnn, "1,3,64,64", tmp_path / "out", catalog, ALL)
    assert proc.returncode == EXIT_OK, proc.stdout[-4000:]
    assert [(e["variant"], e["status"]) for e in rungs] == [(ABORTING, "used"), ("convert-tf2.15", "used")]
    assert "SIGABRT" in rungs[0]["modes"]["int8"] and rungs[1]["modes"] == {"int8": "ok"}
    made = {a["mode"]: a["variant"] for a in report["artifacts"]}
    assert made == {"fp32": ABORTING, "dynamic": ABORTING, "fp16": ABORTING, "int8": "convert-tf2.15"}
    for mode in ALL:
        assert (tmp_path / "out" / f"smallcnn_{mode}.tflite").is_file()


def report_stage(report: dict, mode: str) -> dict:
    return next(s for s in report["stages"] if s["stage"] == "quantize" and s.get("mode") == mode)
