"""The quantize steps on every mode_spec, run as stages in their real local
venvs on small models (a CNN and a transformer-ish MLP, converted by the
real litert-torch convert stage; a SavedModel for TFLiteConverter), below
the host: each file loads and runs in LiteRT, its outputs are written like
any mode's, its tensors facts prove the mode (int8 weights in a dynamic
file, float16 in fp16, int4 in the int4 modes), sizes follow the weights'
bits, and the int8 contract holds with layers kept float (named and auto)
on the litert-quantizer path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from convertctl.config import modes
from convertctl.config.catalog import load_catalog
from quant_stage import BASE, litert_fp32, quantizer_of, run_stage
from stage_envs import run_in

pytestmark = pytest.mark.acceptance
MODES = {m.name: m.spec() for m in modes.MODES_TABLE}  # what the host sends
LITERT = "litert-quantizer 0.11.0"
TF = load_catalog().get("quantize-tf2.21").pins["tensorflow-cpu"]  # the TF its TFLiteConverter is
LIGHT = ("weight-only-int4", "dynamic-int4")  # int4 weights: the loosest outputs


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("quant")
    run_in("litert-torch0.10", "quant_models.py", out)
    for model in ("cnn", "mlp"):
        litert_fp32(out, model)
    return out


def litert_request(model: str, mode: str, **extra) -> dict:
    return {
        **BASE,
        "mode": mode,
        "mode_spec": {**MODES.get(mode, {}), "name": mode},
        "tflite": f"convert-{model}/model_fp32.tflite",
        "input_sets": {"samples": f"{model}_samples.npz"},
        "layout": {"inputs": {}, "outputs": {}},
        "calibration": f"{model}_calib.npz",
        "debug_samples": 4,
        **extra,
    }


def quantize(run_dir: Path, work: str, request: dict) -> tuple[int, dict]:
    return run_stage(quantizer_of("litert-torch0.10"), run_dir, work, request)


@pytest.fixture(scope="module")
def made(run_dir) -> dict:
    """{(model, mode): artifact} for every mode the host names, on both models."""
    out = {}
    for model in ("cnn", "mlp"):
        for mode in MODES:
            code, result = quantize(run_dir, f"{model}-{mode}", litert_request(model, mode))
            assert code == 0, result.get("error") or result["_log"]
            out[(model, mode)] = result["artifact"]
    return out


def outputs(run_dir: Path, work: str) -> np.ndarray:
    with np.load(run_dir / work / "outputs_samples.npz") as data:
        return data["output"].astype(np.float64)


def cosine(a, b) -> float:
    a, b = a.ravel(), b.ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def weights(art: dict) -> dict:
    """{dtype: count} over every weighted op."""
    out: dict = {}
    for per_op in art["tensors"]["weights"].values():
        for dtype, n in per_op.items():
            out[dtype] = out.get(dtype, 0) + n
    return out


@pytest.mark.parametrize("model", ["cnn", "mlp"])
def test_every_mode_spec_makes_a_file_that_runs_and_proves_its_mode(run_dir, made, model):
    arts = {mode: made[(model, mode)] for mode in MODES}
    ref = outputs(run_dir, f"{model}-fp32")
    assert ref.shape == (8, 1, 10)
    for mode, art in arts.items():
        assert art["quantizer"] == LITERT and art["mode_spec"]["name"] == mode
        if (model, mode) == ("mlp", "int16x8"):
            # LayerNorm's SQUARED_DIFFERENCE has no int16 kernel: left float, and the contract says so
            assert art["status"] == "failed" and "SQUARED_DIFFERENCE" in art["error"]
        else:
            assert art["status"] == "ok", (mode, art.get("error"))
        got = outputs(run_dir, f"{model}-{mode}")
        assert got.shape == ref.shape and cosine(ref, got) >= (0.95 if mode in LIGHT else 0.99), mode

    tensors = {mode: art["tensors"] for mode, art in arts.items()}
    assert set(weights(arts["fp32"])) == {"float32"} and set(tensors["fp32"]["activations"]) == {"float32"}
    # fp16: every weight stored float16, dequantized before its op
    assert set(weights(arts["fp16"])) == {"float16"}
    assert sum(tensors["fp16"]["weights_dequantized"].values()) == weights(arts["fp16"])["float16"]
    # dynamic: int8 weights fed to the ops as they are, float activations
    assert set(weights(arts["dynamic"])) == {"int8"} and tensors["dynamic"]["weights_dequantized"] == {}
    assert set(tensors["dynamic"]["activations"]) == {"float32"}
    # int8 / int16x8: integer activations everywhere
    assert set(weights(arts["int8"])) == {"int8"} and set(tensors["int8"]["activations"]) == {"int8"}
    if model == "cnn":
        assert set(tensors["int16x8"]["activations"]) == {"int16"}
    # weight-only int8: int8 weights dequantized, float compute
    assert set(weights(arts["weight-only-int8"])) == {"int8"}
    assert sum(tensors["weight-only-int8"]["weights_dequantized"].values()) == weights(arts["weight-only-int8"])["int8"]
    assert set(tensors["weight-only-int8"]["activations"]) == {"float32"}
    # int4: int4 weights on FULLY_CONNECTED and CONV_2D (a depthwise conv keeps float32 weights)
    for mode in LIGHT:
        per_op = tensors[mode]["weights"]
        assert per_op["FULLY_CONNECTED"] == {"int4": per_op["FULLY_CONNECTED"]["int4"]}
        assert set(per_op.get("CONV_2D", {"int4": 1})) == {"int4"}
        assert per_op.get("DEPTHWISE_CONV_2D", {"float32": 1}) == {"float32": 1}
    assert tensors["dynamic-int4"]["weights_dequantized"] == {}
    assert "per-channel" in arts["weight-only-int4"]["granularity_note"]  # no blockwise weight-only int4
    # sizes follow the weights' bits
    size = {mode: art["size_bytes"] for mode, art in arts.items()}
    assert size["weight-only-int4"] < size["weight-only-int8"] < size["fp16"] < size["fp32"]
    assert size["dynamic-int4"] < size["dynamic"] < size["fp32"]
    stored = {m: tensors[m]["constant_bytes"] for m in ("fp32", "weight-only-int8", "weight-only-int4")}
    assert stored["weight-only-int4"]["int4"] * 1.9 < stored["weight-only-int8"]["int8"] < stored["fp32"]["float32"] / 3


def test_blockwise_int4_where_the_quantizer_has_it(run_dir):
    spec = {**MODES["dynamic-int4"], "name": "dynamic-int4", "granularity": "block", "block_size": 32}
    for model, expect in (("mlp", {"block": 6}), ("cnn", {"block": 1, "channel": 4})):
        code, result = quantize(run_dir, f"{model}-int4-b32", litert_request(model, "dynamic-int4", mode_spec=spec))
        art = result["artifact"]
        assert code == 0 and art["status"] == "ok", result.get("error")
        assert art["tensors"]["weight_granularity"] == expect  # blockwise FULLY_CONNECTED, per-channel CONV_2D
        assert "blockwise (32) on FULLY_CONNECTED and EMBEDDING_LOOKUP" in art["granularity_note"]


def test_a_request_without_mode_spec_fails_saying_so(run_dir):
    request = litert_request("cnn", "dynamic")
    del request["mode_spec"]
    code, result = quantize(run_dir, "cnn-legacy", request)
    assert code != 0 and "comes without a mode_spec" in result["error"]


def test_a_spec_the_quantizer_cannot_make_fails_saying_why(run_dir):
    spec = {"name": "odd", "weights": "float32", "activations": "int8", "calibrated": True}
    code, result = quantize(run_dir, "cnn-odd", litert_request("cnn", "odd", mode_spec=spec))
    assert code == 2 and result["error"].startswith(
        f"{LITERT} cannot make weights float32 with activations int8 (odd): quantized activations need"
    )


def test_layers_kept_float_by_name_on_the_litert_path(run_dir, made):
    ranked = made[("cnn", "int8")]["layer_errors"]
    assert ranked["metric"].startswith("rmse/scale added") and ranked["samples"] == 4
    rows = ranked["layers"]
    assert rows[0]["rmse_scale"] >= rows[-1]["rmse_scale"] and ranked["total"] >= len(rows)
    output_layer = next(r["name"] for r in rows if r["op"] == "FULLY_CONNECTED")
    names = [r["name"] for r in rows if r["name"] != output_layer][:2]
    for io, dtype in (("int8", "int8"), ("float", "float32"), ("uint8", "uint8")):
        request = litert_request("cnn", "int8", float_layers=names, int8_io=io)
        code, result = quantize(run_dir, f"cnn-named-{io}", request)
        art = result["artifact"]
        assert code == 0 and art["status"] == "ok", result.get("error")
        sel = art["selective"]
        assert (sel["requested"], sel["float_layers"], sel["asked"]) == ("names", names, names)
        assert [r["tflite"] for r in sel["layers"]] == names  # as rows naming each layer three ways
        assert {t["dtype"] for t in art["inputs"] + art["outputs"]} == {dtype}
        kept = [f for f in art["ops"]["float_op_list"] if f["op"] not in ("QUANTIZE", "DEQUANTIZE")]
        assert sorted(f["output"] for f in kept) == sorted(names)
        assert art["float_ops"]["float_ops"] == 2 and art["float_ops"]["chosen"] == 2
    # The layer making the model's output would leave a float output: said, with the way out.
    code, result = quantize(run_dir, "cnn-named-out", litert_request("cnn", "int8", float_layers=[output_layer]))
    assert code == 2 and "makes the model's output" in result["error"] and "--int8-io float" in result["error"]
    code, result = quantize(run_dir, "cnn-named-bad", litert_request("cnn", "int8", float_layers=["no-such-layer"]))
    assert code == 2 and "no quantized layer or PyTorch module named 'no-such-layer'" in result["error"]


def test_auto_search_keeps_layers_float_on_the_litert_path(run_dir):
    with np.load(run_dir / "cnn-fp32" / "outputs_samples.npz") as data:
        np.savez(run_dir / "labels.npz", y=data["output"].reshape(8, -1).argmax(1))
    search = {"set": "samples", "labels": "labels.npz", "target": 101.0}  # out of reach: every step is tried
    code, result = quantize(run_dir, "cnn-auto", litert_request("cnn", "int8", float_layers="auto", search=search))
    art = result["artifact"]
    assert code == 0 and art["status"] == "ok", result.get("error")
    sel = art["selective"]
    assert sel["requested"] == "auto" and not sel["met"] and sel["stopped"].startswith("target not met")
    assert sel["set"] == "samples" and sel["samples"] == 8 and sel["target"] == 101.0
    counts = [p["float_layers"] for p in sel["curve"]]
    assert counts[0] == 0 and counts == sorted(counts) and len(counts) >= 3
    assert all((run_dir / p["file"]).is_file() and p["accuracy"] == 100.0 for p in sel["curve"])
    assert sel["chosen"]["names"] == sel["float_layers"] and len(sel["float_layers"]) == counts[-1]
    assert art["float_ops"]["float_ops"] == len(sel["float_layers"])  # the contract allowed exactly those


@pytest.fixture(scope="module")
def tf_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tfquant")
    run_in(quantizer_of("onnx2tf-tf2.21"), "quant_savedmodel.py", out)
    return out


def tf_request(mode: str) -> dict:
    return {
        **BASE,
        "mode": mode,
        "mode_spec": {**MODES[mode], "name": mode},
        "saved_model": "tfnet",
        "input_sets": {"samples": "tfnet_samples.npz"},
        "layout": {"inputs": {}, "outputs": {}},
        "calibration": "tfnet_calib.npz",
        "debug_samples": 0,
    }


def test_the_tf_step_reads_mode_spec_and_names_its_quantizer(tf_dir):
    variant = quantizer_of("onnx2tf-tf2.21")
    arts = {}
    for mode in ("fp16", "dynamic", "int8"):
        code, result = run_stage(variant, tf_dir, mode, tf_request(mode))
        assert code == 0, result.get("error") or result["_log"]
        arts[mode] = result["artifact"]
        assert arts[mode]["quantizer"] == f"TFLiteConverter (tensorflow {TF})" and arts[mode]["status"] == "ok"
    assert weights(arts["fp16"]) == {"float16": 2}
    assert set(arts["int8"]["tensors"]["activations"]) == {"int8"} and weights(arts["int8"]) == {"int8": 2}
    # Dynamic range quantizes the 20480-weight dense layer, and leaves the 216-weight
    # convolution float: TFLiteConverter's fixed 1024-element minimum, shown in the facts.
    dyn = arts["dynamic"]["tensors"]["weights"]
    assert dyn["FULLY_CONNECTED"] == {"int8": 1} and dyn["CONV_2D"] == {"float32": 1}
    for mode, why in (("weight-only-int8", "no weight-only int8"), ("dynamic-int4", "no int4 weights")):
        code, result = run_stage(variant, tf_dir, mode, tf_request(mode))
        assert code == 2 and result["error"].startswith(f"TFLiteConverter (tensorflow {TF}) cannot make weights")
        assert why in result["error"], result["error"]
    assert json.loads((tf_dir / "dynamic" / "result.json").read_text())["versions"]["tensorflow"] == TF
