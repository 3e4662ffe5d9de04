"""Layer names users recognise, on real conversions: an int8 MobileNet with
torchvision's module names converted by each family (onnx2tf and onnx-tf
from TorchScript through ONNX, litert-torch from an ExportedProgram) names
its per-layer errors by PyTorch module path with the TFLite tensor name
beside them, and --int8-float-layers features.1.conv.0 (a module above the
depthwise convolution it holds) keeps exactly that op float: the int8
contract check, run by LiteRT, allows that one op and its QUANTIZE glue.
The TFLite spelling of the same layer does the same. Local runtime; real
venvs (tests/names_model.py builds the model in the export venv)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import convertctl, load_json
from convertctl.config.catalog import load_catalog
from stage_envs import run_in

pytestmark = pytest.mark.acceptance
DEPTHWISE = "features.1.conv.0.0"  # features.1.conv.0 is ConvBNReLU: its Conv2d, BatchNorm and ReLU6 make one op


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("names")
    run_in(load_catalog().ladder("local", "export")[0].name, "names_model.py", out)
    return out


def run_int8(model: Path, out: Path, converter: str, *extra) -> dict:
    proc = convertctl(
        "run", model, "--input", "x:1,3,32,32", "-q", "int8", "--converter", converter, "--runtime", "local",
        "--latency-runs", "0", "--out", out, *extra,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = load_json(out / "report.json")
    return next(a for a in report["artifacts"] if a["mode"] == "int8")


def check_names(art: dict) -> None:
    layers = art["layer_errors"]["layers"]
    named = [r for r in layers if r["module"]]
    assert all(r["name"] == (r["module"] or r["tflite"]) for r in layers)
    assert {r["module"] for r in named} >= {"features.0.0", DEPTHWISE, "features.3", "classifier.1"}
    assert all(re.fullmatch(r"(features\.\d(\.conv\.\d(\.0)?|\.0)?|classifier\.1)", r["module"]) for r in named)
    dw = [r for r in layers if r["module"] == DEPTHWISE and r["op"] == "DEPTHWISE_CONV_2D"]
    assert len(dw) == 1 and dw[0]["tflite"] != DEPTHWISE  # the TFLite name beside it
    said = art["layer_errors"]["modules"]  # counted over every layer; the record keeps the worst 20
    assert said["named"] + said["unnamed"] == art["layer_errors"]["total"] and said["named"] >= len(named)
    assert said["unnamed"] >= len(layers) - len(named)


def check_kept(art: dict, asked: str) -> str:
    """The one depthwise op stayed float and the int8 check allowed exactly it."""
    sel = art["selective"]
    assert sel["asked"] == [asked]
    kept = [r for r in sel["layers"] if r["module"] == DEPTHWISE]
    assert len(kept) == 1, sel
    tensor = kept[0]["tflite"]
    floats = [f for f in art["ops"]["float_op_list"] if f["op"] not in ("QUANTIZE", "DEQUANTIZE")]
    assert [f["op"] for f in floats] == ["DEPTHWISE_CONV_2D"] and tensor in (floats[0]["output"], floats[0]["as"])
    assert art["float_ops"]["float_ops"] == 1 and art["judged_by"].startswith("ai-edge-litert")
    return tensor


@pytest.mark.parametrize(("converter", "model"), [("onnx2tf", "mobilenet.pt"), ("convert-tf2.15", "mobilenet.pt"),
                                                  ("litert-torch", "mobilenet.pt2")])  # fmt: skip
def test_each_family_names_layers_by_module_and_keeps_one_float(models, tmp_path, converter, model):
    art = run_int8(models / model, tmp_path / "kept", converter, "--int8-float-layers", "features.1.conv.0")
    check_names(art)
    tensor = check_kept(art, "features.1.conv.0")
    md = (tmp_path / "kept" / "report.md").read_text()
    assert f"| `{DEPTHWISE}` |" in md and f"- `{DEPTHWISE}` (" in md
    html = (tmp_path / "kept" / "report.html").read_text()
    assert f"<td><code>{DEPTHWISE}</code></td>" in html
    if converter == "onnx2tf":  # the TFLite spelling of the same layer keeps the same op
        again = run_int8(models / model, tmp_path / "by-tensor", converter, "--int8-float-layers", tensor)
        assert check_kept(again, tensor) == tensor
