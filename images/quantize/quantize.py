"""Quantize stage: SavedModel -> one .tflite per mode, each inspected and run.

Runs inside a TensorFlow environment. Request fields (relative paths):
  saved_model   the SavedModel directory from the convert stage
  modes         any of fp32, dynamic, int8, fp16
  calibration   npz of stacked float inputs for int8 (representative data)
  allow_flex    allow SELECT_TF_OPS (Flex) ops; off by default
  input_sets    {set name: npz of stacked sample inputs}
  latency_runs, threads
Writes quantize/<mode>.tflite and quantize/<mode>_<set>.npz (float outputs,
dequantized with the model's own scale and zero point).

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
import tflite_run  # noqa: E402
from contract import StageFailure, in_run, log  # noqa: E402

MODES = ("fp32", "dynamic", "int8", "fp16")


def representative_dataset(np, calib, input_names):
    def gen():
        for i in range(contract.sample_count(calib)):
            sample = [calib[n][i].astype(np.float32) for n in input_names]
            if len(sample) == 1:
                yield sample
            else:  # several inputs: by signature name, order-proof
                yield dict(zip(input_names, sample))
    return gen


def make_converter(tf, np, saved_model, mode, calib, input_names, allow_flex):
    conv = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    flex = [tf.lite.OpsSet.SELECT_TF_OPS] if allow_flex else []
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if mode != "fp32":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "fp16":
        conv.target_spec.supported_types = [tf.float16]
    if mode == "int8":
        conv.representative_dataset = representative_dataset(np, calib, input_names)
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    conv.target_spec.supported_ops = ops + flex
    return conv


def contract_problems(mode, inputs, outputs, ops, allow_flex):
    """What makes a converted file not what its mode promises."""
    problems = []
    want = "int8" if mode == "int8" else "float32"
    tensors = [("input", f) for f in inputs] + [("output", f) for f in outputs]
    for kind, facts in tensors:
        if facts["dtype"] != want:
            problems.append("%s mode produced %s tensor %r of type %s, not %s"
                            % (mode, kind, facts["name"], facts["dtype"], want))
    if mode == "int8" and ops is not None and ops["float_ops"]:
        problems.append("int8 mode left %d of %d ops computing in float"
                        % (ops["float_ops"], ops["total"]))
    if ops is not None and ops["flex_ops"] and not allow_flex:
        problems.append("the model uses Flex (SELECT_TF_OPS) ops %s, which need the Flex delegate on "
                        "Android; pass --allow-flex to accept them" % ", ".join(ops["flex_ops"]))
    return problems


def one_mode(tf, np, run_dir, request, mode, calib, sets):
    info = {"mode": mode, "status": "failed"}
    input_names = request["input_names"]
    conv = make_converter(tf, np, in_run(run_dir, request["saved_model"]), mode, calib,
                          input_names, bool(request.get("allow_flex")))
    try:
        blob = conv.convert()
    except Exception as exc:  # noqa: BLE001 - the converter raises many types
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        info["error"] = "TFLite converter failed for %s: %s" % (mode, lines[-1] if lines else type(exc).__name__)
        return info
    rel = "quantize/%s.tflite" % mode
    with open(in_run(run_dir, rel), "wb") as f:
        f.write(blob)
    info.update({"file": rel, "size_bytes": len(blob)})
    runner = tflite_run.Runner(tf, np, in_run(run_dir, rel), int(request.get("threads", 1)))
    info["inputs"], info["outputs"] = runner.inputs, runner.outputs
    info["ops"] = tflite_run.op_facts(np, runner.interp)
    problems = contract_problems(mode, runner.inputs, runner.outputs, info["ops"], request.get("allow_flex"))
    for set_name, arrays in sorted(sets.items()):
        outs = []
        for i in range(contract.sample_count(arrays)):
            outs.append(runner.run(dict((n, arrays[n][i]) for n in input_names)))
        contract.save_outputs(in_run(run_dir, "quantize/%s_%s.npz" % (mode, set_name)), outs, np)
    first = dict((n, sets["samples"][n][0]) for n in input_names)
    runs = int(request.get("latency_runs", 10))
    if runs > 0:
        info["latency_ms"] = {"median": runner.latency_ms(first, runs), "runs": runs,
                              "threads": int(request.get("threads", 1))}
    if problems:
        info["error"] = "; ".join(problems)
        info["problems"] = problems
    else:
        info["status"] = "ok"
    return info


def body(run_dir, request, result):
    import numpy as np
    import tensorflow as tf

    result["versions"] = {"tensorflow": tf.__version__, "numpy": np.__version__}
    unknown = [m for m in request["modes"] if m not in MODES]
    if unknown:
        raise StageFailure("unknown mode(s) %s; known: %s" % (", ".join(unknown), ", ".join(MODES)))
    sets = contract.load_sets(run_dir, request, np)
    calib = None
    if "int8" in request["modes"]:
        with np.load(in_run(run_dir, request["calibration"])) as data:
            calib = dict((k, data[k]) for k in data.files)
    result["modes"] = {}
    for mode in request["modes"]:
        info = one_mode(tf, np, run_dir, request, mode, calib, sets)
        result["modes"][mode] = info
        log("%s: %s%s" % (mode, info["status"], (" - " + info["error"]) if info.get("error") else ""))
    failed = [m for m, i in result["modes"].items() if i["status"] != "ok"]
    if failed:
        raise StageFailure("; ".join("%s: %s" % (m, result["modes"][m]["error"]) for m in failed))


if __name__ == "__main__":
    sys.exit(contract.run_stage("quantize", body))
