"""Quantize stage of the litert-torch family: the fp32 .tflite -> one mode's
file, inspected and run with LiteRT's interpreter.

One mode per process (a native crash loses that mode only), in the same
environment as the convert stage, without TensorFlow: ai-edge-quantizer
(AEQ) quantizes the fp32 flatbuffer itself. Request fields (relative paths):
  tflite        the fp32 file from the convert stage
  mode          fp32 (a copy), fp16 (float16 weights), dynamic (int8
                weights, float activations), int8 (int8 weights and
                activations, int8 I/O), int16x8 (int16 activations)
  calibration   npz of stacked float inputs (PyTorch's layout), every sample used
  calibration_stat  minmax (default: the absolute range over all samples,
                as TensorFlow's converter does) or ema (AEQ's default moving
                average of per-sample ranges)
  int8_io       int8 (default), float or uint8: the I/O of an int8 file
  input_sets, layout, allow_flex, latency_runs, threads: as for every
                quantize stage (images/quantize/quantize.py)
Writes, in its WORK folder, model.tflite and outputs_<set>.npz.
"""
import os
import shutil
import sys
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))

import contract  # noqa: E402
import tflite_run  # noqa: E402
from contract import StageFailure, in_run, log  # noqa: E402

MODES = ("fp32", "dynamic", "int8", "fp16", "int16x8")
INT8_IO = ("int8", "float", "uint8")
# Float16 weights with an explicit DEQUANTIZE each: AEQ casts the weights of
# FC, CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV and EMBEDDING_LOOKUP.
FP16_RECIPE = [{
    "regex": ".*", "operation": "*", "algorithm_key": "float_casting",
    "op_config": {"weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT"},
                  "compute_precision": "FLOAT", "explicit_dequantize": True},
}]


def recipe_for(mode):
    from ai_edge_quantizer import recipe

    return {"fp16": FP16_RECIPE, "dynamic": recipe.dynamic_wi8_afp32(), "int8": recipe.static_wi8_ai8(),
            "int16x8": recipe.static_wi8_ai16()}[mode]


def calibration_data(np, interpreter_class, run_dir, request, fp32):
    """{signature key: [{input name: one sample in the file's layout and dtype}]}"""
    with np.load(in_run(run_dir, request["calibration"])) as data:
        calib = dict((k, data[k]) for k in data.files)
    interp = interpreter_class(model_path=fp32)
    signatures = interp.get_signature_list()
    key = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
    details = interp.get_signature_runner(key).get_input_details()
    perms = (request.get("layout") or {}).get("inputs", {})
    names = request["input_names"]
    missing = [n for n in names if n not in calib or n not in details]
    if missing:
        raise StageFailure("calibration data or the fp32 file has no input %s" % ", ".join(missing))
    samples = []
    for i in range(contract.sample_count(calib)):  # every sample
        samples.append(dict((n, contract.to_layout(np, calib[n][i], perms.get(n)).astype(details[n]["dtype"]))
                            for n in names))
    return {key: samples}


def quantize(np, interpreter_class, run_dir, request, fp32, out):
    from ai_edge_quantizer import calibrator, quantizer
    from ai_edge_quantizer.utils import qsv_utils

    # The calibrator keeps every tensor on purpose; LiteRT warns about it on every run.
    warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")

    qt = quantizer.Quantizer(fp32, recipe_for(request["mode"]))
    ranges = None
    if qt.need_calibration:
        data = calibration_data(np, interpreter_class, run_dir, request, fp32)
        threads = max(1, min(os.cpu_count() or 1, 4))
        if request.get("calibration_stat", "minmax") == "ema":
            ranges = qt.calibrate(data, num_threads=threads)
        else:  # absolute min/max over every sample; AEQ's public calibrate() has no switch for it
            with open(fp32, "rb") as f:
                cal = calibrator.Calibrator(f.read(), num_threads=threads, qsv_update_func=qsv_utils.min_max_update)
            cal.calibrate(data, qt._recipe_manager)
            ranges = cal.get_model_qsvs()
        log("%s: calibrated on %d samples" % (request["mode"], len(next(iter(data.values())))))
    blob = bytes(qt.quantize(ranges, enable_progress_report=False).quantized_model)
    with open(out, "wb") as f:
        f.write(blob)


def set_int8_io(path, want):
    """AEQ writes int8 I/O; float and uint8 are flatbuffer rewrites."""
    import io_rewrite

    if want == "int8":
        return
    float_io = path + ".float"
    io_rewrite.add_float_io(path, float_io)
    if want == "float":
        os.replace(float_io, path)
    else:
        io_rewrite.to_uint8_io(float_io, path)
        os.remove(float_io)


def one_mode(np, interpreter_class, run_dir, request, sets):
    mode = request["mode"]
    info = {"mode": mode, "status": "failed"}
    fp32 = in_run(run_dir, request["tflite"])
    out = contract.work_path(run_dir, request, "model.tflite")
    try:
        if mode == "fp32":
            shutil.copyfile(fp32, out)
        else:
            quantize(np, interpreter_class, run_dir, request, fp32, out)
        if mode == "int8":
            set_int8_io(out, request.get("int8_io") or "int8")
        elif mode == "int16x8":
            set_int8_io(out, "float")  # int16 I/O is of no use to an app
    except StageFailure:
        raise
    except Exception as exc:  # noqa: BLE001 - AEQ raises many types
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        info["error"] = "ai-edge-quantizer failed for %s: %s: %s" % (mode, type(exc).__name__,
                                                                     lines[-1][:300] if lines else "")
        return info
    size = os.path.getsize(out)
    info.update({"file": contract.work_rel(request, "model.tflite"), "size_bytes": size})
    log("%s: %d bytes written; loading it" % (mode, size))
    return tflite_run.inspect_and_run(interpreter_class, np, run_dir, request, info, sets)


def body(run_dir, request, result):
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    result["versions"] = {"ai_edge_litert": version_of("ai-edge-litert"),
                          "ai_edge_quantizer": version_of("ai-edge-quantizer"), "numpy": np.__version__}
    mode = request["mode"]
    if mode not in MODES:
        raise StageFailure("unknown mode %s; known: %s" % (mode, ", ".join(MODES)))
    if (request.get("int8_io") or "int8") not in INT8_IO:
        raise StageFailure("unknown int8 I/O %s; known: %s" % (request["int8_io"], ", ".join(INT8_IO)))
    sets = contract.load_sets(run_dir, request, np)
    info = one_mode(np, Interpreter, run_dir, request, sets)
    result["artifact"] = info
    log("%s: %s%s" % (mode, info["status"], (" - " + info["error"]) if info.get("error") else ""))
    if info["status"] != "ok" and "file" not in info:
        raise StageFailure(info["error"])


def version_of(dist):
    try:
        from importlib import metadata
        return metadata.version(dist)
    except Exception:  # noqa: BLE001 - the version is nice to have only
        return "unknown"


if __name__ == "__main__":
    sys.exit(contract.run_stage("quantize", body))
