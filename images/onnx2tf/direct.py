"""Convert stage, onnx2tf 2.x: ONNX -> fp32 .tflite with onnx2tf's default
backend, flatbuffer_direct, which writes the flatbuffer itself: no TensorFlow,
no SavedModel. Like the litert-torch family's convert step, it hands the
quantize step an fp32 file (result field "tflite").

Runs inside the onnx2tf 2.x environment (Python >= 3.12). Request fields
(paths relative to the run directory): onnx, input_names, output_names,
input_sets, layout, as for the onnx2tf 1.29 stage (convert.py beside this).
Writes, in its WORK folder: model.onnx (the copy onnx2tf rewrites in place),
onnx2tf.log, op_coverage.json (onnx2tf's --report_op_coverage) and
model_fp32.tflite. The result's layout gives, per input and output, the perm
from PyTorch's layout to the file's, as convert.py's does (layouts.py).

A pattern flatbuffer_direct cannot lower fails the step with onnx2tf's
reason_code (unsupported_onnx_op, requires_constant_input, ...): in the
result as "reason_code" and at the head of the error. onnx2tf retries such a
node as a CUSTOM op (custom_op_lowered): that fails the step too, since no
TFLite runtime runs those ops.
"""
import contextlib
import itertools
import json
import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))

import contract  # noqa: E402
import convert as v1  # noqa: E402 - the 1.29 stage: its offline guard and ONNX helpers are this one's too
import layouts  # noqa: E402
import tflite_run  # noqa: E402
from contract import StageFailure, in_run, log  # noqa: E402

# What every model gets, as in convert.py: GELU's Erf as builtin ops, RNNs unrolled.
FLAGS = {"replace_to_pseudo_operators": ["erf"], "enable_rnn_unroll": True}
REASON = re.compile(r"reason_code=(\w+)")


def reason_code(exc, coverage):
    """onnx2tf's reason_code for a failure: on the exception or one it was
    raised from, in its text, else the coverage report's most frequent one."""
    seen = exc
    while seen is not None:
        code = getattr(seen, "reason_code", None) or (REASON.search(str(seen)) or [None, None])[1]
        if code:
            return str(code)
        seen = seen.__cause__ or seen.__context__
    counts = (coverage or {}).get("unsupported_reason_counts") or {}
    return max(sorted(counts), key=lambda k: counts[k]) if counts else ""


def failure_text(exc):
    """The innermost message (onnx2tf wraps the real one in 'flatbuffer_direct fast path failed.')."""
    inner = exc
    while inner.__cause__ is not None:
        inner = inner.__cause__
    lines = [ln.strip() for ln in str(inner).splitlines() if ln.strip()]
    return "%s: %s" % (type(inner).__name__, lines[0][:300] if lines else "")


def keep_coverage(folder, into):
    """onnx2tf's op coverage report, kept as op_coverage.json in the step's folder, and read."""
    found = [f for f in os.listdir(folder) if f.endswith("_op_coverage_report.json")] if os.path.isdir(folder) else []
    if not found:
        return None
    shutil.copyfile(os.path.join(folder, found[0]), into)
    with open(into) as f:
        return json.load(f)


def coverage_summary(report):
    if not report:
        return {}
    return {"graph_ops": len(report.get("graph_ops") or []),
            "unsupported_ops": sorted(report.get("graph_unsupported_ops") or []),
            "custom_ops": sorted(report.get("graph_custom_ops") or []),
            "unsupported_reason_counts": report.get("unsupported_reason_counts") or {},
            "opsets": [report.get("target_opset_min"), report.get("target_opset_max")]}


def run_onnx2tf(onnx2tf, request, work_onnx, inputs, out_dir, logfile):
    kwargs = dict(FLAGS)
    kwargs.update(
        input_onnx_file_path=work_onnx,
        output_folder_path=out_dir,
        tflite_backend="flatbuffer_direct",
        report_op_coverage=True,
        output_signaturedefs=True,
        copy_onnx_input_output_names_to_tflite=True,  # the signature carries the request's names
        verbosity="info",
    )
    kept = [name for name, shape in inputs if layouts.keeps_layout(len(shape), request.get("layout"))]
    if kept:
        kwargs["keep_ncw_or_nchw_or_ncdhw_input_names"] = kept
    # tqdm's progress bars go to stderr: into the log with the rest
    with open(logfile, "a") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            onnx2tf.convert(**kwargs)
        except SystemExit as exc:  # onnx2tf still stops some failures by sys.exit(1) after printing them
            raise StageFailure("onnx2tf stopped (exit %r): %s" % (exc.code, v1.last_error(logfile)))
    found = [f for f in os.listdir(out_dir) if f.endswith("_float32.tflite")]
    if not found:
        raise StageFailure("onnx2tf wrote no *_float32.tflite: %s" % v1.last_error(logfile))
    return os.path.join(out_dir, found[0])


def choose_perms(np, runner, input_names, samples, reference, output_names, layout):
    """As convert.choose_perms, for a file: the inputs' perms (the expected
    ones unless the numbers say otherwise), the outputs' as onnx2tf made
    them, and the largest error against onnxruntime on the first sample."""
    shapes = dict((f["name"], f["shape"]) for f in runner.inputs)
    missing = [n for n in input_names if n not in shapes] + [n for n in output_names
                                                           if n not in [f["name"] for f in runner.outputs]]
    if missing:
        raise StageFailure("onnx2tf's file has signature inputs %s and outputs %s; the request names %s"
                           % (sorted(shapes), [f["name"] for f in runner.outputs], missing))
    per_input = []
    for name in input_names:
        x = samples[name][0]
        found = layouts.candidates(list(x.shape), shapes[name], layouts.input_target(x.ndim, layout))
        if not found:
            raise StageFailure("onnx2tf made input %r of shape %s, which no axis order of %s gives"
                               % (name, shapes[name], list(x.shape)))
        per_input.append(found[:4])
    best = None
    for combo in list(itertools.product(*per_input))[:16]:
        got = runner.run(dict((n, samples[n][0].transpose(p)) for n, p in zip(input_names, combo)))
        found = dict((n, layouts.best_perm(np, reference[n], got[n])) for n in output_names)
        err = max([e for _, e in found.values()] or [0.0])
        if best is None or err < best[2]:
            best = (dict(zip(input_names, [list(p) for p in combo])), dict((n, p) for n, (p, _) in found.items()), err)
    missing = [n for n, p in best[1].items() if p is None]
    if missing:
        raise StageFailure("onnx2tf's outputs %s have shapes no axis order of the ONNX outputs gives" % missing)
    return best


def body(run_dir, request, result):
    v1.no_network()
    if shutil.which("onnxsim") is None:  # onnx2tf would only warn, then fail later on unsimplified graphs
        raise StageFailure("the onnxsim command is not on PATH (onnx2tf runs it); PATH=%s" % os.environ.get("PATH"))
    import numpy as np
    import onnx
    import onnx2tf
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    result["versions"] = {"onnx2tf": onnx2tf.__version__, "onnx": onnx.__version__,
                          "onnxruntime": ort.__version__, "numpy": np.__version__,
                          "ai_edge_litert": version_of("ai-edge-litert")}
    layout = request.get("layout")
    src = in_run(run_dir, request["onnx"])
    inputs, outputs = v1.onnx_io(onnx, src)
    input_names, output_names = request["input_names"], request["output_names"]
    if sorted(n for n, _ in inputs) != sorted(input_names) or sorted(n for n, _ in outputs) != sorted(output_names):
        raise StageFailure("the ONNX file's inputs %s and outputs %s are not the request's %s and %s"
                           % ([n for n, _ in inputs], [n for n, _ in outputs], input_names, output_names))
    sets = contract.load_sets(run_dir, request, np)
    samples = sets["samples"]
    reference = v1.reference_outputs(ort, np, src, inputs, samples, output_names)
    work_onnx = contract.work_path(run_dir, request, "model.onnx")
    logfile = contract.work_path(run_dir, request, "onnx2tf.log")
    out_dir = contract.work_path(run_dir, request, "onnx2tf_out")
    shutil.copyfile(src, work_onnx)  # onnx2tf overwrites its input with the simplified graph
    started = time.time()
    try:
        made = run_onnx2tf(onnx2tf, request, work_onnx, inputs, out_dir, logfile)
    except StageFailure:
        raise
    except Exception as exc:  # noqa: BLE001 - flatbuffer_direct raises its own kinds, each with a reason_code
        coverage = keep_coverage(out_dir, contract.work_path(run_dir, request, "op_coverage.json"))
        result["op_coverage"] = coverage_summary(coverage)
        code = reason_code(exc, coverage)
        result["reason_code"] = code
        raise StageFailure("onnx2tf %s flatbuffer_direct: %s%s"
                           % (onnx2tf.__version__, "reason_code=%s: " % code if code else "", failure_text(exc)))
    seconds = time.time() - started
    coverage = keep_coverage(out_dir, contract.work_path(run_dir, request, "op_coverage.json"))
    result["op_coverage"] = coverage_summary(coverage)
    custom = (coverage or {}).get("custom_lowered_nodes") or []
    if custom:  # onnx2tf retries a failed lowering with CUSTOM ops allowed; no TFLite runtime has them
        result["reason_code"] = sorted(set(str(n.get("reason_code")) for n in custom))[0]
        raise StageFailure("onnx2tf %s flatbuffer_direct: reason_code=%s: %s became CUSTOM op(s), which LiteRT "
                           "cannot run" % (onnx2tf.__version__, result["reason_code"],
                                           ", ".join("%s (%s)" % (n.get("onnx_op"), n.get("node_name")) for n in custom)))
    path = contract.work_path(run_dir, request, "model_fp32.tflite")
    shutil.move(made, path)
    shutil.rmtree(out_dir, ignore_errors=True)
    runner = tflite_run.Runner(Interpreter, np, path, 1)
    in_perms, found, err = choose_perms(np, runner, input_names, samples, reference, output_names, layout)
    out_perms = dict((n, layouts.output_target(len(p), p, layout)) for n, p in found.items())
    unmoved = sorted(n for n in output_names if found[n] != out_perms[n])
    if unmoved:  # a flatbuffer cannot be given a Transpose here, as the 1.29 stage's SavedModel can
        raise StageFailure("onnx2tf %s gave output(s) %s in layout %s; --layout %s asks for %s"
                           % (onnx2tf.__version__, unmoved, [found[n] for n in unmoved], layout,
                              [out_perms[n] for n in unmoved]))
    log("onnx2tf %s flatbuffer_direct: %.1f s, max abs error %.3g against onnxruntime, %d bytes"
        % (onnx2tf.__version__, seconds, err, os.path.getsize(path)))
    result["tflite"] = contract.work_rel(request, "model_fp32.tflite")
    result["layout"] = {"inputs": in_perms, "outputs": out_perms}
    result["onnx2tf"] = {"seconds": round(seconds, 2), "backend": "flatbuffer_direct", "flags": sorted(FLAGS),
                         "max_abs_err_onnxruntime": err}


def version_of(dist):
    try:
        from importlib import metadata
        return metadata.version(dist)
    except Exception:  # noqa: BLE001 - the version is nice to have only
        return "unknown"


if __name__ == "__main__":
    sys.exit(contract.run_stage("convert", body))
