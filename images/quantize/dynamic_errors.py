"""Per-layer error of a dynamic-range file (int8 weights, float
activations), which TF's QuantizationDebugger does not cover: see
dynamic_layer_errors. Python 3.8 syntax; TF 2.8 and current."""
import contract
import tflite_run


def dynamic_layer_errors(tf, np, float_blob, quant_blob, arrays, request, count):
    """Dynamic range: activations stay float, so both files can run side by
    side on the same inputs and every op with int8 weights be compared with
    the float file's same op. The error there is accumulated up to the op;
    layers are ranked by what each adds over its input's (the part it is to
    blame for), and RMSE / scale uses the scale int8 would give the tensor
    (its range / 255)."""
    kind = getattr(getattr(tf.lite.experimental, "OpResolverType", None), "BUILTIN_WITHOUT_DEFAULT_DELEGATES", None)
    extra = {"experimental_op_resolver_type": kind} if kind is not None else {}
    interps = []
    for blob in (float_blob, quant_blob):  # delegates would hide the intermediate tensors
        interp = tf.lite.Interpreter(model_content=blob, experimental_preserve_all_tensors=True, **extra)
        interp.allocate_tensors()
        interps.append(interp)
    f, q = interps
    f_names = dict((t["name"], t["index"]) for t in f.get_tensor_details())
    q_details = dict((t["index"], t) for t in q.get_tensor_details())
    watched = []  # (name, op, output name, input name)
    for op in q._get_ops_details():
        ins = [int(i) for i in op["inputs"] if int(i) >= 0]
        outs = [int(i) for i in op["outputs"] if int(i) >= 0]
        if not outs or not any(q_details[i]["dtype"] == np.int8 for i in ins):
            continue  # only ops that got int8 weights
        out = q_details[outs[0]]["name"]
        act = next((q_details[i]["name"] for i in ins if q_details[i]["dtype"] == np.float32), None)
        if out in f_names and (act is None or act in f_names):
            watched.append((out, op["op_name"], act))
    sums = dict((name, [0.0, 0, None, None, 0.0, 0.0]) for name, _, _ in watched)
    n = min(count, contract.sample_count(arrays))
    layout = (request.get("layout") or {}).get("inputs", {})
    for i in range(n):
        for interp in (f, q):
            runner_inputs = tflite_run.signature_tensors(interp)[0]
            for name, index in runner_inputs.items():
                interp.set_tensor(index, contract.to_layout(np, arrays[name][i], layout.get(name)).astype(np.float32))
            interp.invoke()
        for name, _, act in watched:
            ref = f.get_tensor(f_names[name]).astype(np.float64)
            got = q.get_tensor([k for k, t in q_details.items() if t["name"] == name][0]).astype(np.float64)
            s = sums[name]
            s[0] += float(((ref - got) ** 2).sum())
            s[1] += ref.size
            s[2] = float(ref.min()) if s[2] is None else min(s[2], float(ref.min()))
            s[3] = float(ref.max()) if s[3] is None else max(s[3], float(ref.max()))
            s[4] = max(s[4], float(np.abs(ref - got).max()))
            if act is not None:
                a_ref = f.get_tensor(f_names[act]).astype(np.float64)
                a_got = q.get_tensor([k for k, t in q_details.items() if t["name"] == act][0]).astype(np.float64)
                s[5] += float(((a_ref - a_got) ** 2).sum()) / max(1, a_ref.size) * ref.size
    rows = []
    for name, op, act in watched:
        se, size, lo, hi, worst, se_in = sums[name]
        scale = (hi - lo) / 255.0 if hi is not None and hi > lo else 0.0
        rmse = (se / size) ** 0.5 if size else 0.0
        rows.append({"name": name, "op": op, "rmse_scale": rmse / scale if scale else 0.0,
                     "added": (rmse - (se_in / size) ** 0.5) / scale if scale and size else 0.0,
                     "max_abs_error": worst, "scale": scale, "elements": size // max(1, n)})
    rows.sort(key=lambda r: -r["added"])
    return rows
