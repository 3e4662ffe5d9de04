"""Per-layer error of a litert-quantizer int8 (or int16) file, without
TensorFlow's QuantizationDebugger: the float file and the quantized file run
side by side on the same samples (every tensor kept, no delegate), and every
quantized op's output is compared with the float file's tensor of the same
name (litert-quantizer keeps the float file's tensor names).

That error is accumulated from the input up to the op. A layer is ranked by
what it adds: the RMSE at its output in its own quantization steps (RMSE /
scale) less the same at its activation input; moves (transpose, pad,
reshape) add ~0. The name of each row is the op's output tensor name, the
name --int8-float-layers takes back. Python 3.8 syntax.
"""

import tflite_run

METRIC = "rmse/scale added (error at the output less at the input, in quantization steps)"


def _open(interpreter_class, blob):
    from ai_edge_litert.interpreter import OpResolverType

    interp = interpreter_class(
        model_content=blob,
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interp.allocate_tensors()
    return interp


def _feed(np, interp, sample):
    facts = dict((f["name"], f) for f in tflite_run.io_facts(np, interp)[0])
    for name, index in tflite_run.signature_tensors(interp)[0].items():
        interp.set_tensor(index, tflite_run.quantize_input(np, sample[name], facts[name]))
    interp.invoke()


def _value(np, interp, detail):
    x = interp.get_tensor(detail["index"])
    scale, zero = detail["quantization"]
    if scale:
        return (x.astype(np.float64) - zero) * scale
    return x.astype(np.float64)


def ranking(np, interpreter_class, float_blob, quant_blob, samples):
    """Every quantized op of quant_blob, worst first:
    [{name, op, rmse_scale (added), accumulated, max_abs_error, scale, elements}]."""
    f, q = _open(interpreter_class, float_blob), _open(interpreter_class, quant_blob)
    f_index = dict((t["name"], t) for t in f.get_tensor_details())
    q_tensors = dict((t["index"], t) for t in q.get_tensor_details())
    ops = [op for op in q._get_ops_details() if op["op_name"] != "DELEGATE"]
    produced = set(int(t) for op in ops for t in op["outputs"])
    graph_inputs = set(d["index"] for d in q.get_input_details())
    watched = []  # (output detail, op name, activation input detail or None)
    for op in ops:
        outs = [int(t) for t in op["outputs"] if int(t) >= 0]
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE") or not outs:
            continue
        out = q_tensors[outs[0]]
        if not out["quantization"][0] or out["name"] not in f_index:
            continue  # a float op (kept float), or a tensor the float file does not have
        act = next((q_tensors[int(t)] for t in op["inputs"] if int(t) in produced or int(t) in graph_inputs), None)
        if act is not None and (act["name"] not in f_index or not act["quantization"][0]):
            act = None
        watched.append((out, op["op_name"], act))
    sums = dict((out["name"], [0.0, 0, 0.0, 0.0]) for out, _, _ in watched)  # se out, count, se in (scaled), max
    for sample in samples:
        _feed(np, f, sample)
        _feed(np, q, sample)
        for out, _, act in watched:
            ref = f.get_tensor(f_index[out["name"]]["index"]).astype(np.float64)
            diff = ref - _value(np, q, out)
            s = sums[out["name"]]
            s[0] += float((diff**2).sum())
            s[1] += diff.size
            s[3] = max(s[3], float(np.abs(diff).max()) if diff.size else 0.0)
            if act is not None:
                a_diff = f.get_tensor(f_index[act["name"]]["index"]).astype(np.float64) - _value(np, q, act)
                # mean squared error of the input in its own steps, weighted like the output's elements
                s[2] += float((a_diff**2).mean() / act["quantization"][0] ** 2) * diff.size if a_diff.size else 0.0
    rows = []
    for out, op_name, _ in watched:
        se, n, se_in, worst = sums[out["name"]]
        scale = float(out["quantization"][0])
        acc = (se / n) ** 0.5 / scale if n else 0.0
        added = acc - ((se_in / n) ** 0.5 if n else 0.0)
        rows.append(
            {
                "name": out["name"],
                "op": op_name,
                "rmse_scale": added,
                "accumulated": acc,
                "max_abs_error": worst,
                "scale": scale,
                "elements": n // max(1, len(samples)),
            }
        )
    rows.sort(key=lambda r: -r["rmse_scale"])
    return rows
