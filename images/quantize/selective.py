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
    target holds (then the smallest step that holds is looked for): the
    search every family shares, in common/int8_search.py.

Request fields read here (see quantize.py for the rest):
  int8_io        int8 | uint8 | float: the file's input and output type
  debug_samples  calibration samples the debugger runs (0: no per-layer error)
  float_layers   null, "auto", or [tensor names or PyTorch module paths] to keep float
  modules        the convert step's modules.json (module_names.py): layers named by module path
  search         for "auto": {"set": input set name, "labels": npz with y,
                 "target": accuracy (percent) to reach, "max_layers": cap}
Artifact fields written:
  io, layer_errors {metric, samples, modules, layers: [{name, tflite, module, op, rmse_scale, ...}]},
  selective {requested, float_layers, curve: [{float_layers, accuracy,
  size_bytes, file}], target, met, stopped, set, samples}
"""
import csv
import io as _io

import contract
import int8_search
import module_names
import tflite_run
from contract import StageFailure, log
from int8_search import TOP

IO_TYPES = ("int8", "uint8", "float")


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


def layer_names(tf, run_dir, request, model):
    """The convert step's module paths, with the tensor names of this
    model's signature outputs (which take the output's name, not an op's)."""
    rel = request.get("modules")
    interp = tf.lite.Interpreter(model_content=bytes(model))
    return module_names.Names.load(contract.in_run(run_dir, rel) if rel else None,
                                   tflite_run.output_tensor_names(interp))


def input_order(tf, model, input_names):
    """The signature names of a .tflite's inputs, in its input tensors' order."""
    interp = tf.lite.Interpreter(model_content=bytes(model))
    by_index = dict((index, name) for name, index in tflite_run.signature_tensors(interp)[0].items())
    names = [by_index.get(d["index"]) for d in interp.get_input_details()]
    return names if sorted(n for n in names if n) == sorted(input_names) else list(input_names)


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
        names = layer_names(tf, run_dir, request, plan.calibrated)
        ranking = names.annotate(plan.layer_errors())
        record["layer_errors"] = {"metric": "rmse/scale", "samples": min(n_debug, contract.sample_count(calib)),
                                  "total": len(ranking), "modules": names.summary(ranking), "layers": ranking[:TOP]}
        if ranking:
            log("worst int8 layers (RMSE/scale): " + ", ".join(
                "%s %.2f" % (r["op"], r["rmse_scale"]) for r in ranking[:3]))
    blob, chosen = int8_search.choose(plan, np, tf.lite.Interpreter, run_dir, request, ranking, sets)
    if chosen:
        record["selective"] = chosen
    return blob, record
