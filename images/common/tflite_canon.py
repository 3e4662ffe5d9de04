"""One byte layout per graph for a .tflite file.

TensorFlow's converter can write the same graph in a different order from
one process to the next: TF 2.8 places the DEQUANTIZE ops of fp16 weights,
and numbers their tensors and buffers, in an order that changes between
runs, so two conversions of one model give different bytes. This rewrites a
file in an order that depends on the graph alone:

- ops that compute from constants only (those DEQUANTIZE ops, and ops fed
  only by them) are placed just before their first consumer; every other op
  keeps the converter's order;
- tensors, buffers and operator codes are numbered in order of first use.

The graph, the weights, quantization parameters, signatures and metadata are
unchanged; so is what the file computes. Uses TensorFlow's own flatbuffer
object API (tensorflow.lite.tools.flatbuffer_utils, TF >= 2.3), like the
TFLite metadata tools that repack models. Python 3.8 syntax; TF 2.8 and
current.
"""

# Ops that read or write state: never moved, whatever feeds them.
STATEFUL = ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE", "WHILE", "IF", "CALL")


def canonical(blob):
    """The canonical bytes of a .tflite file (the same file's bytes in, the
    same bytes out, whatever order the converter chose)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(blob))
    stateful = _stateful_codes(schema)
    for index, subgraph in enumerate(model.subgraphs or []):
        subgraph.operators = _ordered_ops(model, subgraph, stateful)
        _number_tensors(model, index, subgraph)
    _number_buffers(model)
    _number_opcodes(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _ints(values):
    return [int(v) for v in values] if values is not None else []


def _builtin(model, op):
    return _builtin_of(model.operatorCodes[op.opcodeIndex])


def _stateful_codes(schema):
    names = dict((v, k) for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_"))
    return set(code for code, name in names.items() if name in STATEFUL)


def _is_constant(model, tensor):
    if tensor.isVariable or not tensor.buffer:
        return False
    data = model.buffers[tensor.buffer].data
    return data is not None and len(data) > 0


def _ordered_ops(model, subgraph, stateful):
    ops = list(subgraph.operators or [])
    producer = {}
    for i, op in enumerate(ops):
        for t in _ints(op.outputs):
            if t >= 0:
                producer[t] = i
    constant = set(t for t, tensor in enumerate(subgraph.tensors or []) if _is_constant(model, tensor))
    # Ops computing from constants only, found whatever order they were listed in.
    derived = set()
    changed = True
    while changed:
        changed = False
        for i, op in enumerate(ops):
            inputs = [t for t in _ints(op.inputs) if t >= 0]
            if i in derived or not inputs or _builtin(model, op) in stateful:
                continue
            if all(t in constant or producer.get(t) in derived for t in inputs):
                derived.add(i)
                changed = True
    order, placed = [], set()

    def place_inputs(i):
        for t in _ints(ops[i].inputs):
            p = producer.get(t)
            if p in derived and p not in placed:
                placed.add(p)
                place_inputs(p)
                order.append(p)

    for i in range(len(ops)):
        if i not in derived:
            place_inputs(i)
            placed.add(i)
            order.append(i)
    names = [t.name or b"" for t in subgraph.tensors or []]
    for i in sorted((i for i in derived if i not in placed), key=lambda i: [names[t] for t in _ints(ops[i].outputs)]):
        if i not in placed:  # consumed by no other op (a constant output): last, by name
            place_inputs(i)
            placed.add(i)
            order.append(i)
    return [ops[i] for i in order]


def _number_tensors(model, index, subgraph):
    tensors = list(subgraph.tensors or [])
    order, seen = [], set()

    def see(values):
        for t in _ints(values):
            if t >= 0 and t not in seen:
                seen.add(t)
                order.append(t)

    see(subgraph.inputs)
    for op in subgraph.operators or []:
        see(op.inputs)
        see(op.outputs)
        see(op.intermediates)
    see(subgraph.outputs)
    rest = [t for t in range(len(tensors)) if t not in seen]
    order += sorted(rest, key=lambda t: (tensors[t].name or b"", t))
    new = dict((old, i) for i, old in enumerate(order))

    def remap(values):
        return [new[t] if t >= 0 else t for t in _ints(values)]

    subgraph.tensors = [tensors[t] for t in order]
    subgraph.inputs, subgraph.outputs = remap(subgraph.inputs), remap(subgraph.outputs)
    for op in subgraph.operators or []:
        op.inputs, op.outputs = remap(op.inputs), remap(op.outputs)
        if op.intermediates is not None:
            op.intermediates = remap(op.intermediates)
    for sig in model.signatureDefs or []:
        if int(getattr(sig, "subgraphIndex", 0) or 0) == index:
            for m in list(sig.inputs or []) + list(sig.outputs or []):
                m.tensorIndex = new[int(m.tensorIndex)]


def _number_buffers(model):
    buffers = list(model.buffers or [])
    order, seen = [], set()

    def see(b):
        b = int(b)
        if b not in seen and 0 <= b < len(buffers):
            seen.add(b)
            order.append(b)

    if buffers:
        see(0)  # buffer 0 is the empty one by convention
    for subgraph in model.subgraphs or []:
        for tensor in subgraph.tensors or []:
            see(tensor.buffer)
    for md in model.metadata or []:
        see(md.buffer)
    for b in _ints(model.metadataBuffer):
        see(b)
    rest = [b for b in range(len(buffers)) if b not in seen]
    order += sorted(rest, key=lambda b: bytes(buffers[b].data if buffers[b].data is not None else b""))
    new = dict((old, i) for i, old in enumerate(order))
    model.buffers = [buffers[b] for b in order]
    for subgraph in model.subgraphs or []:
        for tensor in subgraph.tensors or []:
            tensor.buffer = new[int(tensor.buffer)]
    for md in model.metadata or []:
        md.buffer = new[int(md.buffer)]
    if model.metadataBuffer is not None:
        model.metadataBuffer = [new[b] for b in _ints(model.metadataBuffer)]


def _number_opcodes(model):
    codes = list(model.operatorCodes or [])
    order, seen = [], set()
    for subgraph in model.subgraphs or []:
        for op in subgraph.operators or []:
            if op.opcodeIndex not in seen:
                seen.add(op.opcodeIndex)
                order.append(op.opcodeIndex)

    def key(c):
        code = codes[c]
        return (_builtin_of(code), code.customCode or b"", int(code.version or 0))

    order += sorted((c for c in range(len(codes)) if c not in seen), key=key)
    new = dict((old, i) for i, old in enumerate(order))
    model.operatorCodes = [codes[c] for c in order]
    for subgraph in model.subgraphs or []:
        for op in subgraph.operators or []:
            op.opcodeIndex = new[op.opcodeIndex]


def _builtin_of(code):
    return max(int(getattr(code, "builtinCode", 0) or 0), int(getattr(code, "deprecatedBuiltinCode", 0) or 0))
