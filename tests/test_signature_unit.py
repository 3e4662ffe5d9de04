"""A file proves its mode by what it stores (checks/signature.py), and a
rung whose file does not is a failure of that rung: the ladder goes on."""

from __future__ import annotations

import pytest
from convertctl.checks import signature
from convertctl.config import modes
from convertctl.config.catalog import load_catalog
from convertctl.run.pipeline import Pipeline
from fakes import FakeRuntime, options, torchscript_file


def art(weights: dict, dequantized: dict | None = None, **extra) -> dict:
    return {"tensors": {"weights": weights, "weights_dequantized": dequantized or {}}, **extra}


def test_a_dynamic_file_without_int8_weights_is_not_dynamic():
    # What onnx2tf's "dynamic" small CNN held: TFLite left every weight under 1024 elements float.
    found = signature.problems(
        modes.get("dynamic"), art({"CONV_2D": {"float32": 3}, "FULLY_CONNECTED": {"float32": 1}})
    )
    assert found == [
        "signature: dynamic stores weights as int8, but 0 of 4 weighted ops do (4 float32; at least 90% must)"
    ]
    partly = art({"CONV_2D": {"int8": 2, "float32": 2}, "FULLY_CONNECTED": {"int8": 2, "float32": 1}})
    assert "4 of 7 weighted ops" in signature.problems(modes.get("dynamic"), partly)[0]


def test_one_small_float_convolution_among_many_int8_ones_is_still_dynamic():
    # MobileNetV2: its first 3x3x3x32 convolution (864 elements) stays float in TFLite's dynamic recipe.
    assert (
        signature.problems(
            modes.get("dynamic"), art({"CONV_2D": {"int8": 51, "float32": 1}, "FULLY_CONNECTED": {"int8": 1}})
        )
        == []
    )


@pytest.mark.parametrize(
    "mode,weights,dequantized,says",
    [
        ("fp32", {"CONV_2D": {"float32": 3, "int8": 1}}, {}, "3 of 4 weighted ops"),
        ("fp16", {"CONV_2D": {"float16": 4}}, {"CONV_2D": 1}, "3 quantized weight(s) feed an op directly"),
        ("weight-only-int8", {"CONV_2D": {"int8": 4}}, {}, "4 quantized weight(s) feed an op directly"),
        ("dynamic", {"CONV_2D": {"int8": 4}}, {"CONV_2D": 4}, "4 weight(s) are dequantized"),
        ("dynamic-int4", {"FULLY_CONNECTED": {"int8": 2}}, {}, "stores weights as int4, but 0 of 2"),
    ],
)
def test_a_file_that_is_another_mode_fails_naming_what_it_holds(mode, weights, dequantized, says):
    found = signature.problems(modes.get(mode), art(weights, dequantized))
    assert found and says in found[0], found


@pytest.mark.parametrize(
    "mode,weights,dequantized",
    [
        ("fp32", {"CONV_2D": {"float32": 4}}, {}),
        ("fp16", {"CONV_2D": {"float16": 4}}, {"CONV_2D": 4}),
        ("weight-only-int8", {"CONV_2D": {"int8": 4}}, {"CONV_2D": 4}),
        ("weight-only-int4", {"CONV_2D": {"int4": 3}, "DEPTHWISE_CONV_2D": {"float32": 2}}, {"CONV_2D": 3}),
        ("dynamic-int4", {"FULLY_CONNECTED": {"int4": 2}}, {}),
        ("int8", {"CONV_2D": {"int8": 4}}, {}),
        ("int16x8", {"CONV_2D": {"int8": 4}}, {}),
    ],
)
def test_a_file_of_its_mode_passes(mode, weights, dequantized):
    assert signature.problems(modes.get(mode), art(weights, dequantized)) == []


def test_layers_kept_float_by_the_user_keep_float_weights():
    kept = art({"CONV_2D": {"int8": 6, "float32": 2}}, selective={"float_layers": ["a", "b"]})
    assert signature.problems(modes.get("int8"), kept) == []
    assert signature.problems(modes.get("int8"), art({"CONV_2D": {"int8": 6, "float32": 2}}))


def test_a_file_whose_tensors_were_not_reported_proves_nothing():
    assert "cannot prove it is int8" in signature.problems(modes.get("int8"), {})[0]
    assert (
        "(no flatbuffer)" in signature.problems(modes.get("int8"), {"tensors": {"tensors_error": "no flatbuffer"}})[0]
    )


class FloatDynamic(FakeRuntime):
    """The first family's "dynamic" file keeps every weight float (what TFLite's converter does to a small model)."""

    def quantize(self, work, request, sets, result, run_dir=None):
        super().quantize(work, request, sets, result, run_dir)
        if request["mode"] == "dynamic" and "saved_model" in request and "onnx2tf" in request["work"]:
            result["artifact"]["tensors"]["weights"] = {"CONV_2D": {"float32": 3}, "FULLY_CONNECTED": {"float32": 1}}


def test_a_file_that_is_not_its_mode_hands_the_mode_to_the_rungs_next_quantizer(tmp_path):
    model = torchscript_file(tmp_path / "net.pt")
    fake = FloatDynamic()
    fake.name = "local"
    opts = options(model, tmp_path / "out", modes=["fp32", "dynamic"], latency_runs=0)
    report = Pipeline(opts, fake, load_catalog(), lambda _: None).run()
    assert report.status == "passed", report.failure
    tried = [c for c in report.checks if c["stage"] == "tflite" and c["mode"] == "dynamic"]
    assert "signature: dynamic stores weights as int8, but 0 of 4" in tried[0]["failures"][0]
    assert tried[-1]["status"] == "passed"
    dynamic = next(a for a in report.artifacts if a["mode"] == "dynamic")
    assert dynamic["variant"].startswith("onnx2tf") and dynamic["quantizer"] == "fake-litert-quantizer"


class NothingIsDynamic(FloatDynamic):
    """No quantizer of the first family makes a true dynamic file."""

    def quantize(self, work, request, sets, result, run_dir=None):
        super().quantize(work, request, sets, result, run_dir)
        if request["mode"] == "dynamic" and "onnx2tf" in request["work"]:
            result["artifact"]["tensors"]["weights"] = {"CONV_2D": {"float32": 3}, "FULLY_CONNECTED": {"float32": 1}}


def test_a_rung_none_of_whose_files_is_its_mode_hands_the_mode_to_the_next_rung(tmp_path):
    model = torchscript_file(tmp_path / "net.pt")
    fake = NothingIsDynamic()
    fake.name = "local"
    opts = options(model, tmp_path / "out", modes=["fp32", "dynamic"], latency_runs=0)
    report = Pipeline(opts, fake, load_catalog(), lambda _: None).run()
    assert report.status == "passed", report.failure
    first = next(e for e in report.ladder if e["stage"] == "convert")
    assert first["variant"].startswith("onnx2tf") and first["modes"]["fp32"] == "ok"
    assert "signature: dynamic stores weights as int8, but 0 of 4" in first["modes"]["dynamic"]
    made = {a["mode"]: a["variant"] for a in report.artifacts}
    assert made["fp32"].startswith("onnx2tf") and not made["dynamic"].startswith("onnx2tf")
