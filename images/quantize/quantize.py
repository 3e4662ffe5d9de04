"""Quantize stage: SavedModel -> the .tflite of one mode, inspected and run.

One mode per process, so that a native crash while making one mode (an
abort in the calibrator, say) loses that mode only. Runs inside a TensorFlow
environment. Request fields (relative paths):
  saved_model   the SavedModel directory from the convert stage
  mode          one of fp32, dynamic, int8, fp16
  calibration   npz of stacked inputs for int8 (representative data; integer
                inputs such as token ids keep their type)
  allow_flex    allow SELECT_TF_OPS (Flex) ops; off by default
  input_sets    {set name: npz of stacked sample inputs}
  layout        {"inputs": {name: perm}, "outputs": {name: perm}}: how the
                model's tensors are laid out against PyTorch's (none: same)
  latency_runs, threads
Writes, in its WORK folder, model.tflite and outputs_<set>.npz (float
outputs, dequantized with the model's own scale and zero point, laid out as
PyTorch's).

The tutorial's int8 recipe overrides supported_ops with SELECT_TF_OPS, which
silently yields a float model of Flex ops, and its calibration generator
reads the same image every time. Here int8 means builtin int8 ops with int8
input and output, calibrated on every sample, and that is checked after
conversion rather than trusted.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))

import contract  # noqa: E402
import tflite_canon  # noqa: E402
import tflite_run  # noqa: E402
from contract import StageFailure, in_run, log  # noqa: E402

MODES = ("fp32", "dynamic", "int8", "fp16")


def make_converter(tf, np, saved_model, mode, calib, input_names, allow_flex, layout=None):
    conv = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    flex = [tf.lite.OpsSet.SELECT_TF_OPS] if allow_flex else []
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if mode != "fp32":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "fp16":
        conv.target_spec.supported_types = [tf.float16]
    if mode == "int8":
        conv.representative_dataset = tflite_run.representative_dataset(np, calib, input_names, layout)
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    conv.target_spec.supported_ops = ops + flex
    return conv


def one_mode(tf, np, run_dir, request, calib, sets):
    mode = request["mode"]
    info = {"mode": mode, "status": "failed"}
    input_names = request["input_names"]
    layout = request.get("layout") or {}
    conv = make_converter(tf, np, in_run(run_dir, request["saved_model"]), mode, calib,
                          input_names, bool(request.get("allow_flex")), layout)
    try:
        blob = conv.convert()
    except Exception as exc:  # noqa: BLE001 - the converter raises many types
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        info["error"] = "TFLite converter failed for %s: %s" % (mode, lines[-1] if lines else type(exc).__name__)
        return info
    try:  # the same graph, the same bytes: the converter's order may change from run to run
        blob = tflite_canon.canonical(blob)
        info["canonical"] = True
    except Exception as exc:  # noqa: BLE001 - keep the converter's bytes, and say so
        info["canonical"] = False
        log("%s: kept the converter's byte order (%s: %s)" % (mode, type(exc).__name__, exc))
    with open(contract.work_path(run_dir, request, "model.tflite"), "wb") as f:
        f.write(blob)
    info.update({"file": contract.work_rel(request, "model.tflite"), "size_bytes": len(blob)})
    log("%s: %d bytes written; loading it" % (mode, len(blob)))
    return tflite_run.inspect_and_run(tf.lite.Interpreter, np, run_dir, request, info, sets)


def body(run_dir, request, result):
    import numpy as np
    import tensorflow as tf

    result["versions"] = {"tensorflow": tf.__version__, "numpy": np.__version__}
    mode = request["mode"]
    if mode not in MODES:
        raise StageFailure("unknown mode %s; known: %s" % (mode, ", ".join(MODES)))
    sets = contract.load_sets(run_dir, request, np)
    calib = None
    if mode == "int8":
        with np.load(in_run(run_dir, request["calibration"])) as data:
            calib = dict((k, data[k]) for k in data.files)
    info = one_mode(tf, np, run_dir, request, calib, sets)
    result["artifact"] = info
    log("%s: %s%s" % (mode, info["status"], (" - " + info["error"]) if info.get("error") else ""))
    if info["status"] != "ok" and "file" not in info:
        raise StageFailure(info["error"])


if __name__ == "__main__":
    sys.exit(contract.run_stage("quantize", body))
