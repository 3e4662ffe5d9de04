"""Judge stage: a quantize step's file run by LiteRT, the interpreter phones
ship, on every input set, and held to its mode's promises there. The file
is judged where it will run, not in the TensorFlow that wrote it: the two
interpreters disagreed both ways (an onnx2tf fp16 ConvNeXt file failed to
prepare in TF 2.19's interpreter yet runs correctly in LiteRT; an onnx-tf
int8 GoogLeNet file did the reverse).

Runs in the measure environment (ai-edge-litert and numpy). Request fields
(paths relative to the run directory):
  tflite        the file a quantize step made
  mode, mode_spec, input_names, input_sets, layout, allow_flex, int8_io,
  float_layers  as the quantize request had them (tflite_run reads them)
Writes, in its WORK folder, model.tflite (a copy of what it judged) and
outputs_<set>.npz; result["artifact"]: the file's I/O, ops, tensors,
problems and status, as LiteRT sees them, and "judged_by".
"""
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))

import contract  # noqa: E402
import tflite_run  # noqa: E402
from contract import in_run, log  # noqa: E402


def body(run_dir, request, result):
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    version = _version("ai-edge-litert")
    result["versions"] = {"ai_edge_litert": version, "numpy": np.__version__}
    shutil.copyfile(in_run(run_dir, request["tflite"]), contract.work_path(run_dir, request, "model.tflite"))
    info = {"mode": request["mode"], "status": "failed", "judged_by": "ai-edge-litert %s" % version}
    if request.get("float_layers"):
        info["selective"] = {"float_layers": list(request["float_layers"])}
    sets = contract.load_sets(run_dir, request, np)
    try:
        info = tflite_run.inspect_and_run(Interpreter, np, run_dir, dict(request, latency_runs=0, judge=""), info, sets)
    except Exception as exc:  # noqa: BLE001 - a file LiteRT cannot load or prepare: that is the verdict
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        info["error"] = "LiteRT %s cannot run the file: %s" % (version, lines[0][:300] if lines else type(exc).__name__)
        info["problems"] = [info["error"]]
    info.pop("selective", None)
    result["artifact"] = info
    log("%s: %s in LiteRT %s" % (request["mode"], info["status"], version))


def _version(dist):
    try:
        from importlib import metadata
        return metadata.version(dist)
    except Exception:  # noqa: BLE001
        return "unknown"


if __name__ == "__main__":
    sys.exit(contract.run_stage("quantize", body))
