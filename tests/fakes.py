"""A fake runtime: the one seam where unit tests replace real stages. It
honours the run-directory contract (reads request.json, writes result.json
and npz outputs), computing "model outputs" with numpy, and can be told to
break a stage or a mode the way real conversions break."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from convertctl.runtimes.base import Prepared, StageRun, read_result, write_request

WEIGHTS = np.random.default_rng(42).standard_normal((3, 10)).astype(np.float32)


def model_bytes(request) -> bytes:
    """The model file's bytes: what the fake "converts" carries them along,
    so a changed model changes every file made from it."""
    return Path(request["model"]).read_bytes()


def model(x: np.ndarray) -> np.ndarray:
    """(N, 1, 3, H, W) -> (N, 1, 10) class scores."""
    return (x.mean(axis=(3, 4)) @ WEIGHTS).astype(np.float32)


class FakeRuntime:
    name = "fake"

    def __init__(
        self,
        noise: dict | None = None,
        fake_int8: bool = False,
        crash: str = "",
        flex: bool = False,
        nhwc: bool = False,
    ):
        self.noise = noise or {}  # mode -> stddev of the error added to its outputs
        self.fake_int8 = fake_int8  # int8 mode yields float32 io, as the tutorial's recipe does
        self.crash = crash  # a stage that dies without writing a result
        self.flex = flex
        self.nhwc = nhwc  # TFLite input laid out NHWC while PyTorch's is NCHW
        self.calls: list = []
        self.env_version = "1"  # part of every environment's identity: change it to change them all

    def identity(self, variant):
        return {"runtime": "fake", "variant": variant.name, "version": self.env_version}

    def freeze(self, variant):
        return {"pip_freeze": [f"fake-{variant.stage}=={self.env_version}"]}

    def prepare(self, variants, say):
        return [Prepared(v, f"fake:{v.name}", created=False) for v in variants]

    def run(self, step, run_dir: Path, say) -> StageRun:
        variant, request = step.variant, dict(step.request, work=step.work)
        write_request(run_dir, step.work, step.request)
        self.calls.append(variant.stage if variant.stage != "quantize" else f"quantize:{request['mode']}")
        if self.crash in (variant.stage, f"quantize:{request.get('mode')}"):
            return StageRun(variant.stage, variant, 139, {}, 0.1, ["Segmentation fault"])
        result = {"status": "ok", "stage": variant.stage, "versions": {"fake": "1"}}
        sets = {name: dict(np.load(run_dir / rel)) for name, rel in request.get("input_sets", {}).items()}
        getattr(self, variant.stage)(run_dir / step.work, request, sets, result)
        (run_dir / step.work / "result.json").write_text(json.dumps(result))
        code = 0 if result["status"] == "ok" else 2
        return StageRun(variant.stage, variant, code, read_result(run_dir, step.work), 0.1, [])

    def export(self, work, request, sets, result):
        for name, arrays in sets.items():
            if request.get("reference", True):
                np.savez(work / f"reference_{name}.npz", output=model(arrays["input"]))
            if request.get("opset"):
                np.savez(work / f"onnx_{name}.npz", output=model(arrays["input"]))
        result.update(output_names=["output"], outputs=[{"name": "output", "shape": [1, 10], "dtype": "float32"}])
        if request.get("opset"):
            (work / "model.onnx").write_bytes(b"ONNX" + model_bytes(request))
            result["onnx"] = {"opset": request["opset"], "nodes": 3, "file": f"{request['work']}/model.onnx"}

    def convert(self, work, request, sets, result):
        if "onnx" not in request:  # a family that reads the PyTorch model: a .tflite, no intermediate model
            result.update(tflite=f"{request['work']}/model_fp32.tflite", layout={"inputs": {}, "outputs": {}})
            return
        for name, arrays in sets.items():
            np.savez(work / f"outputs_{name}.npz", output=model(arrays["input"]))
        (work / "saved_model" / "variables").mkdir(parents=True)
        onnx = work.parent.parent / request["onnx"] if request.get("onnx") else None
        (work / "saved_model" / "saved_model.pb").write_bytes(b"SM" + (onnx.read_bytes() if onnx else b""))
        (work / "saved_model" / "variables" / "variables.index").write_bytes(b"index")
        result.update(saved_model=f"{request['work']}/saved_model", layout={"inputs": {}, "outputs": {}})

    def quantize(self, work, request, sets, result):
        rng = np.random.default_rng(1)
        mode = request["mode"]
        dtype = "int8" if mode == "int8" and not self.fake_int8 else "float32"
        saved_model = work.parent.parent.parent / request.get("saved_model", "-") / "saved_model.pb"
        saved = saved_model.read_bytes() if saved_model.is_file() else b""
        (work / "model.tflite").write_bytes(b"TFL3" + mode.encode() + saved)
        for name, arrays in sets.items():
            out = model(arrays["input"])
            out = out + rng.standard_normal(out.shape).astype(np.float32) * self.noise.get(mode, 0.0)
            np.savez(work / f"outputs_{name}.npz", output=out)
        io = {"dtype": dtype, "scale": 0.1 if dtype == "int8" else 0.0, "zero_point": 0}
        in_shape = list(sets["samples"]["input"].shape[1:])
        if self.nhwc:
            in_shape = [in_shape[0], in_shape[2], in_shape[3], in_shape[1]]
        info = {
            "mode": mode,
            "status": "ok",
            "file": f"{request['work']}/model.tflite",
            "size_bytes": 8,
            "inputs": [{**io, "name": "input", "shape": in_shape}],
            "outputs": [{**io, "name": "output", "shape": [1, 10]}],
            "ops": {
                "histogram": {"CONV_2D": 1},
                "flex_ops": ["FlexConv2D"] if self.flex else [],
                "total": 1,
                "transposes": 0,
                "float_ops": 0 if dtype == "int8" else 1,
            },
        }
        if mode == "int8" and self.fake_int8:
            info.update(status="failed", problems=["int8 mode produced input tensor 'input' of type float32, not int8"])
            info["error"] = info["problems"][0]
        result["artifact"] = info
