"""Inspect and run a .tflite file with the interpreter of this environment,
and check it against what its mode promises.

A TFLite file from a newer TF may not load in an older interpreter, so each
file is run where it was built (TF's interpreter, or LiteRT's where there is
no TensorFlow: both have the same API). Python 3.8 syntax; TF 2.8 and current.

What inspect_and_run records in the artifact, for every file:
  inputs, outputs  [{name, tensor, dtype, shape, scale, zero_point}] of the signature
  ops              {histogram, flex_ops, total, transposes, float_ops,
                   float_op_list: [{op, output, as}]} (ops computing in float)
  tensors          the stored dtypes, for the host to judge a mode's
                   signature against (tflite_tensors.py reads them from the
                   flatbuffer; every subgraph counted):
    weights              {op: {dtype: count}}: per weighted op (CONV_2D,
                         DEPTHWISE_CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV,
                         CONV_3D, CONV_3D_TRANSPOSE, BATCH_MATMUL,
                         EMBEDDING_LOOKUP) the stored dtype of its weight
                         tensor; a weight fed through a DEQUANTIZE counts as
                         the constant that DEQUANTIZE reads (int8, int4,
                         float16). Ops whose both operands are computed
                         (attention's BATCH_MATMUL) have no weight: not counted.
    weights_dequantized  {op: count}: of those, weights dequantized to float
                         before the op (weight-only and fp16 files); the rest
                         feed the op as stored (int8 ops, dynamic-range kernels)
    weight_granularity   {tensor | channel | block: count} of the quantized weights
    constants            {dtype: count} of constant tensors (float32, float16,
                         int8, int4, int32, ...)
    constant_bytes       {dtype: bytes} they take in the file
    activations          {dtype: count}: the dtype every op computes in (its
                         first output's), QUANTIZE/DEQUANTIZE glue left out
  tensors_error    instead of tensors, when the file could not be read for them
"""
import time

import contract
import modes
import tflite_tensors

INT_TYPES = ("int8", "uint8", "int16")
# The I/O type each quantized mode promises, by the request's int8_io.
IO_DTYPES = {"int8": "int8", "uint8": "uint8", "float": "float32", "int16": "int16"}
# Ops that only convert between int8 and float where a float layer or float
# I/O meets the int8 graph: allowed with what they serve, computing nothing.
GLUE_OPS = ("DEQUANTIZE", "QUANTIZE")
# Which I/O and float-op rules a file keeps, by the activations of its mode_spec.
RULES = {"int8": "int8", "int16": "int16x8"}


def _name(np, dtype):
    return np.dtype(dtype).name


def signature_tensors(interp):
    """{input name: tensor index}, {output name: tensor index} of the serving
    signature, falling back to the plain tensor lists when it has none."""
    try:
        sigs = interp._get_full_signature_list()  # TF >= 2.5; private but stable
    except AttributeError:
        sigs = {}
    if sigs:
        sig = sigs.get("serving_default") or sigs[sorted(sigs)[0]]
        return dict(sig["inputs"]), dict(sig["outputs"])
    ins = dict((d["name"], d["index"]) for d in interp.get_input_details())
    outs = dict((d["name"], d["index"]) for d in interp.get_output_details())
    return ins, outs


def output_tensor_names(interp):
    """{tensor name: signature output name} of a file's outputs."""
    names = dict((t["index"], t["name"]) for t in interp.get_tensor_details())
    return dict((names[i], n) for n, i in signature_tensors(interp)[1].items() if i in names)


def tensor_facts(np, detail, name):
    scale, zero = detail.get("quantization", (0.0, 0))
    facts = {"name": name, "tensor": detail["name"], "dtype": _name(np, detail["dtype"]),
             "shape": [int(d) for d in detail["shape"]],
             "scale": float(scale), "zero_point": int(zero)}
    if "shape_signature" in detail:  # -1 where the file leaves a dimension free (TF >= 2.3)
        facts["shape_signature"] = [int(d) for d in detail["shape_signature"]]
    return facts


def io_facts(np, interp):
    ins, outs = signature_tensors(interp)
    by_index = dict((d["index"], d) for d in interp.get_input_details() + interp.get_output_details())
    inputs = [tensor_facts(np, by_index[i], n) for n, i in sorted(ins.items(), key=lambda kv: kv[1])]
    outputs = [tensor_facts(np, by_index[i], n) for n, i in sorted(outs.items())]
    return inputs, outputs


def op_facts(np, interp):
    """Op histogram, Flex ops and the ops that still compute in float (with
    their output tensor names, which is how layers kept float are named)."""
    try:
        ops = interp._get_ops_details()  # TF >= 2.5
    except AttributeError:
        return None
    dtypes = dict((t["index"], _name(np, t["dtype"])) for t in interp.get_tensor_details())
    names = dict((t["index"], t["name"]) for t in interp.get_tensor_details())
    histogram = {}
    flex = []
    floats = []
    total = 0
    # A float op whose result is quantized again hands its name to the
    # QUANTIZE op (and takes a suffixed one): "as" keeps the name it had.
    quantized_as = dict((names.get(int(op["inputs"][0])), names.get(int(op["outputs"][0])))
                        for op in ops if op["op_name"] == "QUANTIZE" and len(op["inputs"]) and len(op["outputs"]))
    for op in ops:
        name = op["op_name"]
        if name == "DELEGATE":  # a delegate's kernel the interpreter added, not an op of the file
            continue
        total += 1
        histogram[name] = histogram.get(name, 0) + 1
        if name.startswith("Flex"):
            flex.append(name)
        outs = [int(t) for t in op["outputs"] if int(t) >= 0]
        if any(dtypes.get(t) in ("float32", "float16") for t in outs):
            out = names.get(outs[0], "") if outs else ""
            final, hops = quantized_as.get(out, ""), 0
            while final in quantized_as and hops < 4:  # int8 then uint8: QUANTIZE after QUANTIZE
                final, hops = quantized_as[final], hops + 1
            floats.append({"op": name, "output": out, "as": final})
    return {"histogram": histogram, "flex_ops": sorted(set(flex)), "total": total,
            "transposes": histogram.get("TRANSPOSE", 0), "float_ops": len(floats), "float_op_list": floats}


def quantize_input(np, x, facts):
    if facts["dtype"] not in INT_TYPES or x.dtype.kind in "iu":
        # float tensors as floats; integer inputs (token ids) as they are, in
        # the integer type the file has (int32 where the converter narrowed int64)
        return x.astype(facts["dtype"])
    info = np.iinfo(facts["dtype"])
    q = np.round(x / facts["scale"]) + facts["zero_point"]
    return np.clip(q, info.min, info.max).astype(facts["dtype"])


def dequantize_output(np, y, facts):
    if facts["dtype"] not in INT_TYPES:
        return y.astype(np.float32)
    return (y.astype(np.float32) - facts["zero_point"]) * facts["scale"]


class Runner(object):
    """Feeds float samples, quantizing int inputs and dequantizing int outputs
    with the model's own scale and zero point."""

    def __init__(self, interpreter_class, np, path, threads):
        self.np = np
        self.interp = interpreter_class(model_path=path, num_threads=threads)
        self.interp.allocate_tensors()
        self.inputs, self.outputs = io_facts(np, self.interp)
        self.in_index = dict(signature_tensors(self.interp)[0])
        self.out_index = dict(signature_tensors(self.interp)[1])

    def feed(self, sample):
        values = dict((f["name"], quantize_input(self.np, sample[f["name"]], f)) for f in self.inputs)
        resized = False
        for detail in self.interp.get_input_details():
            name = next((n for n, i in self.in_index.items() if i == detail["index"]), None)
            if name in values and list(values[name].shape) != [int(d) for d in detail["shape"]]:
                # another batch size: only a file with a free batch dimension takes it
                self.interp.resize_tensor_input(detail["index"], list(values[name].shape), strict=True)
                resized = True
        if resized:
            self.interp.allocate_tensors()
        for name, value in values.items():
            self.interp.set_tensor(self.in_index[name], value)

    def run(self, sample):
        self.feed(sample)
        self.interp.invoke()
        return dict((f["name"], dequantize_output(self.np, self.interp.get_tensor(self.out_index[f["name"]]), f))
                    for f in self.outputs)

    def latency_ms(self, sample, runs, warmup=2):
        self.feed(sample)
        for _ in range(warmup):
            self.interp.invoke()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            self.interp.invoke()
            times.append((time.perf_counter() - start) * 1000.0)
        return float(self.np.median(times))


def as_model_input(np, x):
    """Calibration data as the float model takes it: floats as float32,
    integer inputs (token ids) in their own type."""
    return x if x.dtype.kind in "iu" else x.astype(np.float32)


def representative_dataset(np, calib, input_names, layout=None):
    perms = (layout or {}).get("inputs", {})

    def gen():
        for i in range(contract.sample_count(calib)):  # every sample, not the first one again and again
            sample = [as_model_input(np, contract.to_layout(np, calib[n][i], perms.get(n))) for n in input_names]
            if len(sample) == 1:
                yield sample
            else:  # several inputs: by signature name, order-proof
                yield dict(zip(input_names, sample))
    return gen


def io_dtype_for(mode, io=None):
    """The dtype a mode's file must take and give."""
    if mode == "int8":
        return IO_DTYPES[io or "int8"]
    if mode == "int16x8":
        return "float32" if io == "float" else "int16"
    return "float32"


def contract_problems(mode, inputs, outputs, ops, allow_flex, io=None, float_layers=None):
    """What makes a converted file not what its mode promises. For int8,
    the layers chosen to stay float (and the DEQUANTIZE glue next to them
    or to float I/O) are allowed; any other float op is a problem."""
    problems = []
    want = io_dtype_for(mode, io)
    tensors = [("input", f) for f in inputs] + [("output", f) for f in outputs]
    for kind, facts in tensors:
        if kind == "input" and facts["dtype"] in ("int32", "int64"):
            continue  # token ids and other integer inputs pass through every mode as they are
        if facts["dtype"] != want:
            problems.append("%s mode produced %s tensor %r of type %s, not %s"
                            % (mode, kind, facts["name"], facts["dtype"], want))
    if mode in ("int8", "int16x8") and ops is not None and ops["float_ops"]:
        chosen = set(float_layers or [])
        glue_ok = bool(chosen) or want == "float32"
        extra = [f for f in ops.get("float_op_list", [])
                 if not _chosen(f, chosen) and not (glue_ok and f["op"] in GLUE_OPS)]
        if "float_op_list" not in ops:  # facts from an older record: count only
            extra = [None] * (ops["float_ops"] if not chosen else 0)
        if extra:
            named = ", ".join(sorted(set(f["op"] for f in extra if f)))
            problems.append("%s mode left %d of %d ops computing in float%s%s"
                            % (mode, len(extra), ops["total"], " (%s)" % named if named else "",
                               " beyond the %d chosen to stay float" % len(chosen) if chosen else ""))
    if ops is not None and ops["flex_ops"] and not allow_flex:
        problems.append("the model uses Flex (SELECT_TF_OPS) ops %s, which need the Flex delegate on "
                        "Android; pass --allow-flex to accept them" % ", ".join(ops["flex_ops"]))
    return problems


def _chosen(facts, chosen):
    return facts["output"] in chosen or bool(facts.get("as")) and facts["as"] in chosen


def float_summary(ops, float_layers):
    """How the float ops of an int8 file break down: chosen layers, glue."""
    if ops is None or "float_op_list" not in ops:
        return None
    chosen = set(float_layers or [])
    kept = [f for f in ops["float_op_list"] if _chosen(f, chosen)]
    glue = [f for f in ops["float_op_list"] if not _chosen(f, chosen) and f["op"] in GLUE_OPS]
    return {"chosen": len(chosen), "float_ops": len(kept), "glue_ops": len(glue), "total_ops": ops["total"]}


def inspect_and_run(interpreter_class, np, run_dir, request, info, sets):
    """Load the step's model.tflite, record its I/O and ops, run it on every
    input set (outputs saved in PyTorch's layout) and time it.

    ``info`` is the artifact record: filled in and returned, with "problems"
    when the file breaks its mode's promises."""
    mode = RULES.get(modes.mode_spec(request)["activations"], "fp32")
    input_names = request["input_names"]
    layout = request.get("layout") or {}
    in_perms, out_perms = layout.get("inputs", {}), layout.get("outputs", {})
    if request.get("judge") == "litert":
        # The host runs the file in LiteRT (measure/judge.py), the runtime phones use: this
        # environment's interpreter only makes it, and its verdict (it may fail to prepare a
        # file LiteRT runs, or the reverse) is not the one that counts.
        return inspect_only(run_dir, request, info)
    runner = Runner(interpreter_class, np, contract.work_path(run_dir, request, "model.tflite"),
                    int(request.get("threads", 1)))
    info["inputs"], info["outputs"] = runner.inputs, runner.outputs
    info["ops"] = op_facts(np, runner.interp)
    try:
        info["tensors"] = tflite_tensors.tensor_dtypes_of(contract.work_path(run_dir, request, "model.tflite"))
    except Exception as exc:  # noqa: BLE001 - a schema too old for the file, say: the host then cannot judge it
        info["tensors_error"] = "%s: %s" % (type(exc).__name__, str(exc)[:300])
    float_layers = (info.get("selective") or {}).get("float_layers")
    problems = contract_problems(mode, runner.inputs, runner.outputs, info["ops"], request.get("allow_flex"),
                                 info.get("io") or request.get("int8_io"), float_layers)
    if mode == "int8" and float_layers:
        info["float_ops"] = float_summary(info["ops"], float_layers)
    for set_name, arrays in sorted(sets.items()):
        outs = []
        try:
            for i in range(contract.sample_count(arrays)):
                got = runner.run(dict((n, contract.to_layout(np, arrays[n][i], in_perms.get(n))) for n in input_names))
                outs.append(dict((n, contract.from_layout(np, v, out_perms.get(n))) for n, v in got.items()))
        except (ValueError, RuntimeError) as exc:  # a shape the file does not take (another batch size)
            shapes = ", ".join("%s=%s" % (n, list(arrays[n][0].shape)) for n in input_names)
            lines = [ln for ln in str(exc).splitlines() if ln.strip()]
            problems.append("the file does not run on the %s inputs (%s): %s"
                            % (set_name, shapes, lines[0] if lines else type(exc).__name__))
            continue
        contract.save_outputs(contract.work_path(run_dir, request, "outputs_%s.npz" % set_name), outs, np)
    first = dict((n, contract.to_layout(np, sets["samples"][n][0], in_perms.get(n))) for n in input_names)
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


def inspect_only(run_dir, request, info):
    """What a file stores, read from its flatbuffer (no interpreter): the
    rest is judged by the host in LiteRT."""
    try:
        info["tensors"] = tflite_tensors.tensor_dtypes_of(contract.work_path(run_dir, request, "model.tflite"))
    except Exception as exc:  # noqa: BLE001 - the judge reads it again
        info["tensors_error"] = "%s: %s" % (type(exc).__name__, str(exc)[:300])
    info["status"] = "ok"
    info["judged_by"] = "host"
    return info
