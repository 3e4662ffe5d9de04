"""The stored dtypes of a .tflite file, read from its flatbuffer: the facts a
mode's signature is judged on (see tflite_run's docstring for the fields).

Read from the file rather than the interpreter: the interpreter shows int4
tensors as int8 and cannot tell a stored weight from a computed tensor.
Uses the flatbuffer schema module of the environment (ai_edge_litert's, or
TensorFlow's), without copying the weights. Python 3.8 syntax.
"""

# Weighted ops and the input that holds the weights (TRANSPOSE_CONV's input 0
# is the output shape; EMBEDDING_LOOKUP's input 0 the ids).
WEIGHT_INPUT = {
    "CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1, "TRANSPOSE_CONV": 1,
    "CONV_3D": 1, "CONV_3D_TRANSPOSE": 1, "BATCH_MATMUL": 1, "EMBEDDING_LOOKUP": 1,
}
GLUE = ("QUANTIZE", "DEQUANTIZE")


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def _names(enum_class):
    return dict((v, k) for k, v in vars(enum_class).items() if not k.startswith("_") and isinstance(v, int))


def _root(schema, blob):
    model = schema.Model
    get = getattr(model, "GetRootAs", None) or getattr(model, "GetRootAsModel")
    return get(blob, 0)


def _has_data(model, index):
    if index <= 0 or index >= model.BuffersLength():
        return False
    buf = model.Buffers(index)
    # A large model keeps weights after the flatbuffer (offset > 1) instead of inside it.
    offset = getattr(buf, "Offset", lambda: 0)()
    return buf.DataLength() > 0 or offset > 1


def _stored_bytes(model, index):
    buf = model.Buffers(index)
    return buf.DataLength() or int(getattr(buf, "Size", lambda: 0)())


def _granularity(tensor, block):
    q = tensor.Quantization()
    if q is None:
        return None
    if q.DetailsType() == block:  # the scales live in a tensor of their own (float16 constants)
        return "block"
    if q.ScaleLength() == 0:
        return None
    return "channel" if q.ScaleLength() > 1 else "tensor"


def _add(table, key, n=1):
    table[key] = table.get(key, 0) + n


def tensor_dtypes(blob):
    """{"weights", "weights_dequantized", "weight_granularity", "constants",
    "constant_bytes", "activations"} of a .tflite file's bytes."""
    schema = _schema()
    types = _names(schema.TensorType)
    builtins = _names(schema.BuiltinOperator)
    block = getattr(getattr(schema, "QuantizationDetails", None), "BlockwiseQuantization", -1)
    model = _root(schema, blob)
    opnames = []
    for k in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(k)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode()
        opnames.append(custom.decode() if custom else builtins.get(builtin, "OP_%d" % builtin))
    facts = {"weights": {}, "weights_dequantized": {}, "weight_granularity": {}, "constants": {},
             "constant_bytes": {}, "activations": {}}
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        tensors = [graph.Tensors(i) for i in range(graph.TensorsLength())]
        dtype = [types.get(t.Type(), "type%d" % t.Type()).lower() for t in tensors]
        constant = [_has_data(model, t.Buffer()) for t in tensors]
        for i, t in enumerate(tensors):
            if constant[i]:
                _add(facts["constants"], dtype[i])
                _add(facts["constant_bytes"], dtype[i], _stored_bytes(model, t.Buffer()))
        ops = [graph.Operators(j) for j in range(graph.OperatorsLength())]
        dequantized_from = {}  # a DEQUANTIZE's output -> the constant it reads
        for op in ops:
            if opnames[op.OpcodeIndex()] == "DEQUANTIZE" and op.InputsLength() and op.OutputsLength():
                src = op.Inputs(0)
                if src >= 0 and constant[src]:
                    dequantized_from[op.Outputs(0)] = src
        for op in ops:
            name = opnames[op.OpcodeIndex()]
            if name not in GLUE and op.OutputsLength() and op.Outputs(0) >= 0:
                _add(facts["activations"], dtype[op.Outputs(0)])
            slot = WEIGHT_INPUT.get(name)
            if slot is None or op.InputsLength() <= slot:
                continue
            w = op.Inputs(slot)
            if w < 0:
                continue
            if w in dequantized_from:
                w = dequantized_from[w]
                _add(facts["weights_dequantized"], name)
            elif not constant[w]:
                continue  # two activations (attention's BATCH_MATMUL): no stored weight
            _add(facts["weights"].setdefault(name, {}), dtype[w])
            kind = _granularity(tensors[w], block)
            if kind and dtype[w] not in ("float32", "float16"):
                _add(facts["weight_granularity"], kind)
    return facts


def tensor_dtypes_of(path):
    with open(path, "rb") as f:
        return tensor_dtypes(bytearray(f.read()))
