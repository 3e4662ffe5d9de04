"""A fake runtime: the one seam where unit tests replace real stages. It
honours the run-directory contract (reads request.json, writes result.json
and npz outputs), computing "model outputs" with numpy, and can be told to
break a stage or a mode the way real conversions break."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
from convertctl.run.protocol import CONTRACT_VERSION
from convertctl.runtimes.base import Prepared, Runtime, StageRun, read_result, write_request

WEIGHTS = np.random.default_rng(42).standard_normal((3, 10)).astype(np.float32)


def torchscript_file(path: Path) -> Path:
    """A file with the layout torch.jit.save writes (what the host reads to
    tell formats apart); the fake stages never load it."""
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("net/code/__torch__.py", "def forward(self, x): return x\n")
        z.writestr("net/version", "3\n")
    return path


def model_bytes(request) -> bytes:
    """The model file's bytes: what the fake "converts" carries them along,
    so a changed model changes every file made from it."""
    return Path(request["model"]).read_bytes()


def model(x: np.ndarray) -> np.ndarray:
    """(N, 1, 3, H, W) -> (N, 1, 10) class scores."""
    return (x.mean(axis=(3, 4)) @ WEIGHTS).astype(np.float32)


class FakeRuntime(Runtime):
    """The one fake: a Runtime whose stages are numpy functions of the inputs."""

    name = "fake"

    @classmethod
    def create(cls, settings, say, options, flag=""):
        return cls()

    def __init__(
        self,
        noise: dict | None = None,
        fake_int8: bool = False,
        crash: str = "",
        flex: bool = False,
        nhwc: bool = False,
        float_layer_gain: dict | None = None,
        latency: dict | None = None,
    ):
        super().__init__()
        self.noise = noise or {}  # mode -> stddev of the error added to its outputs
        self.fake_int8 = fake_int8  # int8 mode yields float32 io, as the tutorial's recipe does
        self.crash = crash  # a stage that dies without writing a result
        self.flex = flex
        self.nhwc = nhwc  # TFLite input laid out NHWC while PyTorch's is NCHW
        # int8 with k layers kept float: the int8 noise is scaled by gain[k] (default 1/(1+k))
        self.float_layer_gain = float_layer_gain or {}
        self.latency = latency or {}  # float layers kept -> ms (XNNPACK, 1 thread)
        self.calls: list = []
        self.requests: list = []
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
        judging = step.script.endswith("judge.py")  # LiteRT's run of a made file, in the measure environment
        label = f"judge:{request['mode']}" if judging else variant.stage
        self.calls.append(f"quantize:{request['mode']}" if variant.stage == "quantize" else label)
        self.requests.append(request)
        if self.crash in (variant.stage, f"quantize:{request.get('mode')}"):
            return StageRun(variant.stage, variant, 139, {}, 0.1, ["Segmentation fault"])
        result = {"contract": CONTRACT_VERSION, "status": "ok", "stage": variant.stage, "versions": {"fake": "1"}}
        sets = {name: dict(np.load(run_dir / rel)) for name, rel in request.get("input_sets", {}).items()}
        stage = (
            "judge"
            if step.script.endswith("judge.py")
            else "reference"
            if step.script.endswith("reference.py")
            else variant.stage
        )
        getattr(self, stage)(run_dir / step.work, request, sets, result, run_dir)
        (run_dir / step.work / "result.json").write_text(json.dumps(result))
        code = 0 if result["status"] == "ok" else 2
        return StageRun(variant.stage, variant, code, read_result(run_dir, step.work), 0.1, [])

    def export(self, work, request, sets, result, run_dir=None):
        for name, arrays in sets.items():
            if request.get("reference", True):
                np.savez(work / f"reference_{name}.npz", output=model(arrays["input"]))
            if request.get("opset"):
                np.savez(work / f"onnx_{name}.npz", output=model(arrays["input"]))
        result.update(output_names=["output"], outputs=[{"name": "output", "shape": [1, 10], "dtype": "float32"}])
        if request.get("opset"):
            (work / "model.onnx").write_bytes(b"ONNX" + model_bytes(request))
            result["onnx"] = {"opset": request["opset"], "nodes": 3, "file": f"{request['work']}/model.onnx"}

    def convert(self, work, request, sets, result, run_dir=None):
        if "onnx" not in request:  # a family that reads the PyTorch model: a .tflite, no intermediate model
            (work / "model_fp32.tflite").write_bytes(b"TFL3" + model_bytes(request))
            result.update(tflite=f"{request['work']}/model_fp32.tflite", layout={"inputs": {}, "outputs": {}})
            return
        for name, arrays in sets.items():
            np.savez(work / f"outputs_{name}.npz", output=model(arrays["input"]))
        (work / "saved_model" / "variables").mkdir(parents=True)
        onnx = work.parent.parent / request["onnx"] if request.get("onnx") else None
        (work / "saved_model" / "saved_model.pb").write_bytes(b"SM" + (onnx.read_bytes() if onnx else b""))
        (work / "saved_model" / "variables" / "variables.index").write_bytes(b"index")
        result.update(saved_model=f"{request['work']}/saved_model", layout={"inputs": {}, "outputs": {}})

    def _outputs(self, mode, arrays, float_layers=0):
        rng = np.random.default_rng(1)
        out = model(arrays["input"])
        gain = self.float_layer_gain.get(float_layers, 1.0 / (1 + float_layers))
        return out + rng.standard_normal(out.shape).astype(np.float32) * self.noise.get(mode, 0.0) * gain

    def _search(self, work, request, sets, run_dir):
        """The quantize step's auto search, as the contract describes it:
        layers kept float in doubling steps until the target holds."""
        spec = request["search"]
        labels = np.load(run_dir / spec["labels"])["y"]
        (work / "candidates").mkdir(exist_ok=True)
        curve, names = [], [f"layer{i}" for i in range(8)]
        for k in (0, 1, 2, 4, 8):
            (work / "candidates" / f"k{k:03d}.tflite").write_bytes(b"TFL3" + bytes([k]))
            scores = self._outputs("int8", sets[spec["set"]], k).reshape(len(labels), -1)
            acc = float(np.mean(scores.argmax(1) == labels) * 100)
            curve.append(
                {
                    "float_layers": k,
                    "accuracy": acc,
                    "size_bytes": 8 + k,
                    "file": f"{request['work']}/candidates/k{k:03d}.tflite",
                    "names": names[:k],
                }
            )
            if acc >= spec["target"]:
                break
        chosen = curve[-1]
        return {
            "requested": "auto",
            "float_layers": names[: chosen["float_layers"]],
            "target": spec["target"],
            "met": chosen["accuracy"] >= spec["target"],
            "stopped": "target met",
            "set": spec["set"],
            "samples": len(labels),
            "chosen": chosen,
            "curve": curve,
        }

    def quantize(self, work, request, sets, result, run_dir=None):
        mode = request["mode"]
        io_asked = request.get("int8_io", "int8")
        dtype = {"int8": io_asked if io_asked != "float" else "float32", "int16x8": "int16"}.get(mode, "float32")
        dtype = "float32" if self.fake_int8 and mode == "int8" else dtype
        saved_model = work.parent.parent.parent / request.get("saved_model", "-") / "saved_model.pb"
        saved = saved_model.read_bytes() if saved_model.is_file() else b""
        (work / "model.tflite").write_bytes(b"TFL3" + mode.encode() + saved)
        selective = None
        if mode == "int8" and request.get("float_layers") == "auto":
            selective = self._search(work, request, sets, run_dir)
        elif mode == "int8" and request.get("float_layers"):
            selective = {"requested": "names", "float_layers": list(request["float_layers"])}
        kept = len(selective["float_layers"]) if selective else 0
        for name, arrays in sets.items():
            np.savez(work / f"outputs_{name}.npz", output=self._outputs(mode, arrays, kept))
        quantized = dtype in ("int8", "uint8", "int16")
        io = {"dtype": dtype, "scale": 0.1 if quantized else 0.0, "zero_point": 0}
        in_shape = list(sets["samples"]["input"].shape[1:])
        if self.nhwc:
            in_shape = [in_shape[0], in_shape[2], in_shape[3], in_shape[1]]
        spec = request["mode_spec"]
        info = {
            "mode": mode,
            "status": "ok",
            "quantizer": f"fake-{variant_kind(request)}",
            "tensors": {  # what the file stores, as a real quantize step reads it back: the mode's own spec
                "weights": {"CONV_2D": {spec["weights"]: 3}, "FULLY_CONNECTED": {spec["weights"]: 1}},
                "weights_dequantized": {"CONV_2D": 3, "FULLY_CONNECTED": 1}
                if spec["weights"] != "float32" and spec["activations"] == "float32"
                else {},
                "activations": {"float32" if spec["activations"] in ("float32", "dynamic") else spec["activations"]: 8},
            },
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
        if mode == "int8" and not self.fake_int8:
            info["io"] = io_asked
            info["ops"]["float_ops"] = kept
            info["layer_errors"] = {
                "metric": "rmse/scale",
                "samples": 16,
                "total": 8,
                "layers": [
                    {
                        "name": f"layer{i}",
                        "op": "CONV_2D",
                        "rmse_scale": 2.0 / (1 + i),
                        "max_abs_error": 0.1,
                        "scale": 0.02,
                        "elements": 64,
                    }
                    for i in range(8)
                ],
            }
            if selective:
                info["selective"] = selective
                info["float_ops"] = {"chosen": kept, "float_ops": kept, "glue_ops": kept, "total_ops": 1 + 2 * kept}
        if mode == "int8" and self.fake_int8:
            info.update(status="failed", problems=["int8 mode produced input tensor 'input' of type float32, not int8"])
            info["error"] = info["problems"][0]
        result["artifact"] = info

    def judge(self, work, request, sets, result, run_dir=None):
        """LiteRT's run of the file a quantize step made: the same outputs and facts
        (the fake interpreters agree), said to be LiteRT's."""
        made = json.loads((work.parent / "result.json").read_text())
        if "artifact" not in made:  # the metadata step's file: the quantize step's facts are a folder up
            made = json.loads((work.parent.parent / "result.json").read_text())
        made = made["artifact"]
        kept = len(request.get("float_layers") or [])
        for name, arrays in sets.items():  # the same outputs the maker computed, on whatever set it is asked
            np.savez(work / f"outputs_{name}.npz", output=self._outputs(request["mode"], arrays, kept))
        keys = ("inputs", "outputs", "ops", "tensors", "problems", "error", "status")
        result["artifact"] = {
            **{k: made[k] for k in keys if k in made},
            "mode": request["mode"],
            "judged_by": "fake-litert",
        }

    def metadata(self, work, request, sets, result, run_dir=None):
        """The file with b"META" after it; the metadata said read back as asked."""
        blob = (run_dir / request["tflite"]).read_bytes() + b"META"
        (work / "model.tflite").write_bytes(blob)
        labels = (run_dir / request["labels"]).read_text().splitlines()
        norm = {"input": request["image_input"], "mean": request["mean"], "std": request["std"]}
        result.update(file=f"{request['work']}/model.tflite", size_bytes=len(blob))
        result["metadata"] = {
            "labels": len(labels),
            "labels_file": "labels.txt",
            "labels_output": request["labels_output"],
            "normalization": norm if request.get("image_input") else None,
            "written_by": "fake",
        }

    def measure(self, work, request, sets, result, run_dir=None):
        """Latency by file: the float layers kept (candidates) or 1 ms."""
        result.update(runtime={"name": "ai-edge-litert", "version": "fake"}, cpu_count=2, measurements={})
        result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        for item in request["files"]:
            found = re.search(r"/k(\d+)\.tflite$", item["file"])  # a search candidate: its float layers
            k = int(found.group(1)) if found else None
            ms = self.latency.get(k, 1.0)
            configs = [
                {
                    "xnnpack": x,
                    "threads": t,
                    "runs": request["runs"],
                    "median_ms": ms * t**-0.5 * (1 if x else 3),
                    "p90_ms": ms * 1.1,
                    "min_ms": ms,
                    "nodes": 3,
                    "delegate_partitions": int(x),
                }
                for x in request["xnnpack"]
                for t in request["threads"]
            ]
            result["measurements"][item["name"]] = {"file": item["file"], "configs": configs}


def variant_kind(request) -> str:
    return "litert-quantizer" if "tflite" in request else "tflite-converter"


def options(model, out, shapes=None, modes=None, **kw):
    """A run's Options in the words older tests used (shapes, modes, an
    Int8Options, Paths): the option table's spelling is what Options takes."""
    from dataclasses import fields as dc_fields

    from convertctl.config.options import Options

    renames = {"tolerances": "tolerance", "max_drop": "max_accuracy_drop", "code_dir": "code"}
    values = {"model": str(model), "out": str(out), "input_shape": [tuple(s) for s in shapes or [(1, 3, 8, 8)]]}
    values["quant"] = list(modes or ["fp32"])
    int8 = kw.pop("int8", None)
    if int8 is not None:
        values.update(int8_float_layers=int8.float_layers, int8_io=int8.io, max_int8_latency_cost=int8.max_latency_cost)
    for spec in kw.pop("inputs", []):  # InputSpecs back to --input text
        rng = f":{spec.low:g}..{spec.high:g}" if spec.low is not None else ""
        values.setdefault("input", []).append(
            f"{spec.name}:{','.join(map(str, spec.shape))}:{spec.dtype or 'float32'}{rng}"
        )
        values["input_shape"] = []
    for key, value in kw.items():
        key = renames.get(key, key)
        values[key] = str(value) if isinstance(value, Path) else value
    known = {f.name for f in dc_fields(Options)}
    assert set(values) <= known, set(values) - known
    return Options(**values)
