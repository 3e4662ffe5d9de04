"""int8 that keeps accuracy: which layers int8 hurts, and which to keep float.

TensorFlow's own tools, in one process (TF 2.8 and current):
  * calibrate once (the converter's calibrate-only pass);
  * per-layer error from tf.lite.experimental.QuantizationDebugger: every
    quantized op's output against its float op fed the same input, as
    RMSE / scale (1 is one quantization step of error on average);
  * any number of int8 files from that one calibration, with chosen ops
    kept float (the quantizer's denylisted_nodes), the same path the
    converter itself takes for full int8 (mlir_quantize);
  * with "auto", the worst layers by RMSE / scale kept float in growing
    steps, each file judged on the host's labelled set, until the accuracy
    target holds (then the smallest step that holds is looked for).

Request fields read here (see quantize.py for the rest):
  int8_io        int8 | uint8 | float: the file's input and output type
  debug_samples  calibration samples the debugger runs (0: no per-layer error)
  float_layers   null, "auto", or [op output tensor names] to keep float
  search         for "auto": {"set": input set name, "labels": npz with y,
                 "target": accuracy (percent) to reach, "max_layers": cap}
Artifact fields written:
  io, layer_errors {metric, samples, layers: [{name, op, rmse_scale, ...}]},
  selective {requested, float_layers, curve: [{float_layers, accuracy,
  size_bytes, file}], target, met, stopped, set, samples}
"""
import csv
import io as _io
import os

import contract
import tflite_run
from contract import StageFailure, in_run, log

IO_TYPES = ("int8", "uint8", "float")
TOP = 20  # layers kept in the record, worst first
# Transpose, pad, reshape: int8 in, the same int8 out (RMSE/scale ~ 0).
# Keeping one float would add conversions and fix nothing.
MOVES_ONLY = 0.01
PRUNE = 6  # chosen layers tried back in int8 (largest outputs first): one file each


def io_dtype(tf, name):
    return {"int8": tf.int8, "uint8": tf.uint8, "float": tf.float32}[name]


class Plan(object):
    """One calibration, many int8 files."""

    def __init__(self, tf, np, converter, debug_gen):
        from tensorflow.lite.python import convert

        self.tf, self.np, self.convert = tf, np, convert
        self.per_channel_off = bool(getattr(converter, "_experimental_disable_per_channel", False))
        self.debugger = None
        if debug_gen is not None:
            # The debugger calibrates through the converter (calibrate-only)
            # and keeps the calibrated model: one calibration serves both.
            self.debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=debug_gen)
            self.calibrated = self.debugger.calibrated_model
        else:
            converter._experimental_calibrate_only = True
            self.calibrated = converter.convert()

    def quantize(self, io, float_layers):
        kind = io_dtype(self.tf, io)
        blob = self.convert.mlir_quantize(self.calibrated, disable_per_channel=self.per_channel_off,
                                          input_data_type=kind, output_data_type=kind,
                                          denylisted_nodes=list(float_layers) or None)
        try:  # what the converter does after quantizing: shared constant buffers stored once
            from tensorflow.lite.python.lite import _deduplicate_readonly_buffers
            blob = _deduplicate_readonly_buffers(blob)
        except Exception:  # noqa: BLE001 - a size optimisation only
            pass
        return bytes(blob)

    def layer_errors(self):
        """Every quantized layer, worst first: RMSE / scale over the debug samples."""
        if self.debugger is None:
            return []
        self.debugger.run()
        buf = _io.StringIO()
        self.debugger.layer_statistics_dump(buf)
        buf.seek(0)
        rows = []
        for row in csv.DictReader(buf):
            scale = float(row["scale"] or 0.0)
            mse = float(row["mean_squared_error"])
            rows.append({
                "name": row["tensor_name"], "op": row["op_name"],
                "rmse_scale": (mse ** 0.5) / scale if scale > 0 else 0.0,
                "max_abs_error": float(row["max_abs_error"]), "scale": scale,
                "elements": int(float(row["num_elements"])),
            })
        rows.sort(key=lambda r: -r["rmse_scale"])
        return rows


def sample_gen(np, arrays, input_names, layout, count, order=None):
    """Debug samples for the debugger, which feeds them by position into the
    float model's inputs (and resizes each input to the array it gets): a
    list per sample in that model's input order, `order` (a list holding the
    names, filled in once the calibrated model exists), else input_names.
    Token ids keep their integer type."""
    perms = (layout or {}).get("inputs", {})
    n = min(count, contract.sample_count(arrays))
    order = order if order is not None else []

    def gen():
        names = order or input_names
        for i in range(n):
            yield [tflite_run.as_model_input(np, contract.to_layout(np, arrays[name][i], perms.get(name)))
                   for name in names]
    return gen


def input_order(tf, model, input_names):
    """The signature names of a .tflite's inputs, in its input tensors' order."""
    interp = tf.lite.Interpreter(model_content=bytes(model))
    by_index = dict((index, name) for name, index in tflite_run.signature_tensors(interp)[0].items())
    names = [by_index.get(d["index"]) for d in interp.get_input_details()]
    return names if sorted(n for n in names if n) == sorted(input_names) else list(input_names)


def top1_accuracy(np, interpreter_class, path, arrays, labels, request):
    """Top-1 accuracy (percent) of a .tflite file on a labelled input set."""
    layout = request.get("layout") or {}
    in_perms, out_perms = layout.get("inputs", {}), layout.get("outputs", {})
    runner = tflite_run.Runner(interpreter_class, np, path, max(1, int(request.get("threads", 1))))
    hits = 0
    for i in range(len(labels)):
        got = runner.run(dict((n, contract.to_layout(np, arrays[n][i], in_perms.get(n)))
                              for n in request["input_names"]))
        scores = None
        for name in sorted(got):
            value = contract.from_layout(np, got[name], out_perms.get(name))
            dims = [d for d in value.shape if d != 1]
            if len(dims) == 1 and dims[0] >= 2:
                scores = value.reshape(-1)
                break
        if scores is None:
            raise StageFailure("--int8-float-layers auto needs an output of class scores; "
                               "name the layers to keep float instead")
        hits += int(int(scores.argmax()) == int(labels[i]))
    return 100.0 * hits / max(1, len(labels))


def steps(total, max_layers):
    """How many of the worst layers each try keeps float: 0, 1, 2, 4, ... all."""
    limit = min(total, max_layers) if max_layers else total
    out, k = [0], 1
    while k < limit:
        out.append(k)
        k *= 2
    if limit > 0:
        out.append(limit)
    return out


def search(plan, np, interpreter_class, run_dir, request, ranking, sets):
    """Keep the worst layers float, in doubling steps, until the target
    holds; then halve the gap back to the smallest step that holds; then
    give back to int8, costliest first, any of those layers the target holds
    without (the ranking is per layer: some of the worst change nothing at
    the output, and the early ones run on the largest tensors). Every file
    tried is kept (candidates/) with its layers, accuracy and size."""
    spec = request.get("search") or {}
    set_name = spec.get("set", "eval")
    if set_name not in sets:
        raise StageFailure("search set %r is not among the input sets" % set_name)
    with np.load(in_run(run_dir, spec["labels"])) as data:
        labels = data["y"].astype(np.int64).reshape(-1)
    arrays = sets[set_name]
    target = float(spec["target"])
    names = [r["name"] for r in ranking]
    io = request.get("int8_io", "int8")
    os.makedirs(contract.work_path(run_dir, request, "candidates"), exist_ok=True)
    tried = {}  # tuple of ranking indices -> curve point

    def attempt(picks):
        picks = tuple(picks)
        if picks not in tried:
            rel = "candidates/%03d-k%03d.tflite" % (len(tried), len(picks))
            blob = plan.quantize(io, [names[i] for i in picks])
            with open(contract.work_path(run_dir, request, rel), "wb") as f:
                f.write(blob)
            acc = top1_accuracy(np, interpreter_class, contract.work_path(run_dir, request, rel), arrays, labels, request)
            tried[picks] = {"float_layers": len(picks), "accuracy": acc, "size_bytes": len(blob),
                            "file": contract.work_rel(request, rel), "names": [names[i] for i in picks]}
            log("int8 with %d layer(s) float: %.2f%% on %s (target %.2f%%), %d bytes"
                % (len(picks), acc, set_name, target, len(blob)))
        return tried[picks]["accuracy"] >= target

    chosen, stopped, previous = None, "", 0
    for k in steps(len(names), int(spec.get("max_layers") or 0)):
        if attempt(range(k)):
            chosen, stopped = k, "target met"
            break
        previous = k
    if chosen is None:
        keep = tuple(range(max(len(p) for p in tried)))
        stopped = "target not met with %d layer(s) float" % len(keep)
    else:
        lo, hi = previous, chosen  # lo misses, hi holds: bisect for the fewest float layers
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if attempt(range(mid)):
                hi = mid
            else:
                lo = mid
        keep = tuple(range(hi))
        for i in sorted(keep, key=lambda j: -ranking[j].get("elements", 0))[:PRUNE]:
            trial = tuple(j for j in keep if j != i)
            if trial and attempt(trial):
                keep = trial
        if len(keep) < hi:
            stopped += "; %d of the %d worst layers given back to int8" % (hi - len(keep), hi)
    return {
        "requested": "auto", "float_layers": [names[i] for i in keep], "target": target,
        "met": tried[keep]["accuracy"] >= target, "stopped": stopped, "set": set_name,
        "samples": int(len(labels)), "chosen": tried[keep],
        "curve": sorted(tried.values(), key=lambda p: (p["float_layers"], p["file"])),
    }


def int8(tf, np, converter, run_dir, request, calib, sets):
    """The int8 file of this step (bytes), and what to record about it."""
    io = request.get("int8_io", "int8")
    if io not in IO_TYPES:
        raise StageFailure("int8_io %r: choose from %s" % (io, ", ".join(IO_TYPES)))
    want = request.get("float_layers")
    input_names = request["input_names"]
    layout = request.get("layout") or {}
    n_debug = int(request.get("debug_samples", 16))
    order = []  # the calibrated model's input order, once it exists (several inputs only)
    debug_gen = sample_gen(np, calib, input_names, layout, n_debug, order) if n_debug > 0 else None
    record = {"io": io}
    try:
        plan = Plan(tf, np, converter, debug_gen)
    except AttributeError as exc:  # a TF without the calibrate-only pass / debugger
        if want:
            raise StageFailure("this TensorFlow cannot keep chosen layers float (%s)" % exc)
        return converter.convert(), record
    if len(input_names) > 1:
        order.extend(input_order(tf, plan.calibrated, input_names))
    ranking = []
    if debug_gen is not None:
        ranking = plan.layer_errors()
        record["layer_errors"] = {"metric": "rmse/scale", "samples": min(n_debug, contract.sample_count(calib)),
                                  "total": len(ranking), "layers": ranking[:TOP]}
        if ranking:
            log("worst int8 layers (RMSE/scale): " + ", ".join(
                "%s %.2f" % (r["op"], r["rmse_scale"]) for r in ranking[:3]))
    if want == "auto":
        ranking = [r for r in ranking if r["rmse_scale"] > MOVES_ONLY]
        if not ranking:
            raise StageFailure("--int8-float-layers auto needs the per-layer error (debug_samples > 0)")
        selective = search(plan, np, tf.lite.Interpreter, run_dir, request, ranking, sets)
        record["selective"] = selective
        return plan.quantize(io, selective["float_layers"]), record
    if want:
        known = set(r["name"] for r in ranking)
        unknown = [n for n in want if ranking and n not in known]
        if unknown:
            raise StageFailure("--int8-float-layers: no quantized layer named %s (the report lists them)"
                               % ", ".join(repr(n) for n in unknown))
        record["selective"] = {"requested": "names", "float_layers": list(want)}
        return plan.quantize(io, want), record
    return plan.quantize(io, []), record

