"""Quantize stage: SavedModel -> the .tflite of one mode, inspected and run.

One mode per process, so that a native crash while making one mode (an
abort in the calibrator, say) loses that mode only. Runs inside a TensorFlow
environment. Request fields (relative paths):
  saved_model   the SavedModel directory from the convert stage
  mode, mode_spec  what to make (common/modes.py). TFLiteConverter makes:
                weights float32 or float16 with float32 activations; int8
                weights with dynamic activations (dynamic range), int8
                activations (full integer) or int16 activations (16x8);
                per-channel or per-tensor weights. Anything else (int4,
                weight-only int8, blockwise) is a StageFailure saying why.
  calibration   npz of stacked inputs for calibrated specs (representative
                data; integer inputs such as token ids keep their type)
  int8_io       int8 (default) | uint8 | float: I/O type of an int8 file
                (int16x8: int16 unless float)
  debug_samples, float_layers, search, modules
                per-layer error and layers kept float (int8), layers named by
                PyTorch module path: see selective.py
  allow_flex    allow SELECT_TF_OPS (Flex) ops; off by default
  input_sets    {set name: npz of stacked sample inputs}
  layout        {"inputs": {name: perm}, "outputs": {name: perm}}: how the
                model's tensors are laid out against PyTorch's (none: same)
  latency_runs, threads
Writes, in its WORK folder, model.tflite and outputs_<set>.npz (float
outputs, dequantized with the model's own scale and zero point, laid out as
PyTorch's); the artifact names the tool: quantizer "TFLiteConverter
(tensorflow X)", and the mode_spec made, with tflite_run's facts.

Dynamic range leaves weights under 1024 elements float: the MLIR quantizer's
minimum_elements_for_weights is fixed at 1024 and no converter option (TF
2.8 to 2.19) sets it, so a small model's "dynamic" file may hold no int8
weight at all; its tensors facts say so and the host's signature check
judges it.

The tutorial's int8 recipe overrides supported_ops with SELECT_TF_OPS, which
silently yields a float model of Flex ops, and its calibration generator
reads the same image every time. Here int8 means builtin int8 ops with int8
input and output (or the I/O asked for), calibrated on every sample, and no
float op but those chosen to stay float; that is checked after conversion
rather than trusted.

The contract any family's quantize step keeps (onnx-tf and onnx2tf use this
script; litert-torch its own with litert-quantizer): read mode_spec, int8_io,
debug_samples, float_layers and search from the request; write the artifact
with io, layer_errors (worst first, metric named) and, when layers were kept
float, selective {requested, float_layers, curve, target, met, stopped};
the op facts then let tflite_run.contract_problems accept exactly those.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))

import contract  # noqa: E402
import dynamic_errors  # noqa: E402
import modes  # noqa: E402
import selective  # noqa: E402
import tflite_canon  # noqa: E402
import tflite_run  # noqa: E402
from contract import StageFailure, in_run, log  # noqa: E402

def quantizer_name(tf):
    return "TFLiteConverter (tensorflow %s)" % tf.__version__


def check(tf, spec):
    """Raise modes.cannot(...) for a spec TFLiteConverter cannot make."""
    w, a = spec["weights"], spec["activations"]
    why = None
    if w == "int4":
        why = "its post-training quantization has no int4 weights"
    elif spec["granularity"] == "block":
        why = "its post-training quantization has no blockwise weights"
    elif w == "float16" and a != "float32":
        why = "float16 is a weight cast with float32 activations"
    elif w == "float32" and a != "float32":
        why = "quantized activations need quantized weights"
    elif w == "int8" and a == "float32":
        why = ("its post-training quantization has no weight-only int8: int8 weights either feed "
               "dynamic-range kernels (activations dynamic) or a full-integer graph")
    if why:
        raise modes.cannot(quantizer_name(tf), spec, why)


def make_converter(tf, np, saved_model, spec, calib, input_names, allow_flex, layout=None, io="int8"):
    conv = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    flex = [tf.lite.OpsSet.SELECT_TF_OPS] if allow_flex else []
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if not modes.is_float(spec):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if spec["weights"] == "float16":
        conv.target_spec.supported_types = [tf.float16]
    if spec["weights"] == "int8" and spec["granularity"] == "tensor":
        conv._experimental_disable_per_channel = True  # per-tensor weights, as asked
    if spec["calibrated"]:
        conv.representative_dataset = tflite_run.representative_dataset(np, calib, input_names, layout)
    if spec["activations"] == "int8":
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = selective.io_dtype(tf, io)
    if spec["activations"] == "int16":
        # 16-bit activations, 8-bit weights; no float fallback (TFLITE_BUILTINS
        # would let unsupported ops run in float and still call it int16x8).
        ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        kind = tf.float32 if io == "float" else tf.int16
        conv.inference_input_type = conv.inference_output_type = kind
    conv.target_spec.supported_ops = ops + flex
    return conv


def one_mode(tf, np, run_dir, request, spec, calib, sets):
    mode = request["mode"]
    info = {"mode": mode, "mode_spec": spec, "quantizer": quantizer_name(tf), "status": "failed"}
    input_names = request["input_names"]
    layout = request.get("layout") or {}
    io = request.get("int8_io", "int8")
    conv = make_converter(tf, np, in_run(run_dir, request["saved_model"]), spec, calib,
                          input_names, bool(request.get("allow_flex")), layout, io)
    try:
        if spec["activations"] == "int8":
            blob, record = selective.int8(tf, np, conv, run_dir, request, calib, sets)
            info.update(record)
        else:
            blob = conv.convert()
            if spec["activations"] == "int16":
                info["io"] = "float" if io == "float" else "int16"
            errors = None
            if spec["activations"] == "dynamic" and int(request.get("debug_samples", 0)) > 0:
                errors = dynamic_record(tf, np, run_dir, request, blob, sets)
            if errors:
                info["layer_errors"] = errors
    except StageFailure:
        raise
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


def dynamic_record(tf, np, run_dir, request, blob, sets):
    """Per-layer error of a dynamic-range file against the fp32 file of the
    same SavedModel (converted here too), on the first sample inputs."""
    count = int(request["debug_samples"])
    try:
        float_blob = tf.lite.TFLiteConverter.from_saved_model(in_run(run_dir, request["saved_model"])).convert()
        rows = dynamic_errors.dynamic_layer_errors(tf, np, float_blob, blob, sets["samples"], request, count)
        names = selective.layer_names(tf, run_dir, request, blob)
        names.annotate(rows)
    except Exception as exc:  # noqa: BLE001 - a diagnosis: the file is made either way
        log("dynamic: no per-layer error (%s: %s)" % (type(exc).__name__, str(exc).splitlines()[0][:200]))
        return None
    log("worst dynamic-range layers (added RMSE/scale): " + ", ".join(
        "%s %.2f" % (r["op"], r["added"]) for r in rows[:3]))
    return {"metric": "rmse/scale, accumulated; ranked by what each layer adds", "samples": min(
        count, contract.sample_count(sets["samples"])), "total": len(rows), "modules": names.summary(rows),
        "layers": rows[:selective.TOP]}


def body(run_dir, request, result):
    import numpy as np
    import tensorflow as tf

    result["versions"] = {"tensorflow": tf.__version__, "numpy": np.__version__}
    spec = modes.mode_spec(request)
    check(tf, spec)
    mode = spec["name"]
    sets = contract.load_sets(run_dir, request, np)
    calib = None
    if spec["calibrated"]:
        with np.load(in_run(run_dir, request["calibration"])) as data:
            calib = dict((k, data[k]) for k in data.files)
    info = one_mode(tf, np, run_dir, request, spec, calib, sets)
    result["artifact"] = info
    log("%s: %s%s" % (mode, info["status"], (" - " + info["error"]) if info.get("error") else ""))
    if info["status"] != "ok" and "file" not in info:
        raise StageFailure(info["error"])


if __name__ == "__main__":
    sys.exit(contract.run_stage("quantize", body))
