"""Inspect and run a .tflite file with the interpreter of this environment.

A TFLite file from a newer TF may not load in an older interpreter, so each
file is run where it was built. Python 3.8 syntax; TF 2.8 and current.
"""
import time

INT_TYPES = ("int8", "uint8", "int16")


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


def tensor_facts(np, detail, name):
    scale, zero = detail.get("quantization", (0.0, 0))
    return {"name": name, "tensor": detail["name"], "dtype": _name(np, detail["dtype"]),
            "shape": [int(d) for d in detail["shape"]],
            "scale": float(scale), "zero_point": int(zero)}


def io_facts(np, interp):
    ins, outs = signature_tensors(interp)
    by_index = dict((d["index"], d) for d in interp.get_input_details() + interp.get_output_details())
    inputs = [tensor_facts(np, by_index[i], n) for n, i in sorted(ins.items(), key=lambda kv: kv[1])]
    outputs = [tensor_facts(np, by_index[i], n) for n, i in sorted(outs.items())]
    return inputs, outputs


def op_facts(np, interp):
    """Op histogram, Flex ops and how many ops still compute in float."""
    try:
        ops = interp._get_ops_details()  # TF >= 2.5
    except AttributeError:
        return None
    dtypes = dict((t["index"], _name(np, t["dtype"])) for t in interp.get_tensor_details())
    histogram = {}
    flex = []
    float_ops = 0
    for op in ops:
        name = op["op_name"]
        histogram[name] = histogram.get(name, 0) + 1
        if name.startswith("Flex"):
            flex.append(name)
        if any(dtypes.get(int(t)) in ("float32", "float16") for t in op["outputs"] if int(t) >= 0):
            float_ops += 1
    return {"histogram": histogram, "flex_ops": sorted(set(flex)), "total": len(ops),
            "transposes": histogram.get("TRANSPOSE", 0), "float_ops": float_ops}


def quantize_input(np, x, facts):
    if facts["dtype"] not in INT_TYPES:
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

    def __init__(self, tf, np, path, threads):
        self.np = np
        self.interp = tf.lite.Interpreter(model_path=path, num_threads=threads)
        self.interp.allocate_tensors()
        self.inputs, self.outputs = io_facts(np, self.interp)
        self.in_index = dict(signature_tensors(self.interp)[0])
        self.out_index = dict(signature_tensors(self.interp)[1])

    def feed(self, sample):
        for facts in self.inputs:
            value = quantize_input(self.np, sample[facts["name"]], facts)
            self.interp.set_tensor(self.in_index[facts["name"]], value)

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
