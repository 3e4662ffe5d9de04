"""I/O types of a fully quantized .tflite, rewritten without TensorFlow.

ai-edge-quantizer's static recipes give int8 (or int16) graph inputs and
outputs and have no option for anything else. Some apps want float I/O with
int8 inside (the app keeps feeding floats), or uint8 I/O (the camera
pipelines of older Android code). Both are flatbuffer edits:
  add_float_io  QUANTIZE after each quantized input and DEQUANTIZE before
                each quantized output, with ai_edge_litert's flatbuffer
                object API (int8 and int16 alike; same numbers as before)
  to_uint8_io   TFLite's own modify_model_interface (shipped inside
                ai-edge-litert) on a float-I/O file: uint8 in and out.
Python 3.8 syntax.
"""
import copy
import os


def _schema():
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils as fbu
    return fb, fbu


def _opcode_index(fb, model, builtin, version):
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            code.version = max(code.version, version)
            return i
    code = fb.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)  # 127: "look in builtinCode"
    code.version = version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _name(name, default):
    if name is None:
        return default
    return name.encode() if isinstance(name, str) else bytes(name)


def add_float_io(src, dst):
    """Float32 graph I/O around a quantized graph. Returns how many graph
    inputs and outputs were changed (0: nothing was quantized at the ends)."""
    fb, fbu = _schema()
    quantized = (fb.TensorType.INT8, fb.TensorType.INT16, fb.TensorType.UINT8)
    op_version = {fb.TensorType.INT8: 2, fb.TensorType.UINT8: 1, fb.TensorType.INT16: 3}
    model = fbu.read_model(src)
    changed = 0
    for index, graph in enumerate(model.subgraphs):
        sigs = [s for s in (model.signatureDefs or []) if s.subgraphIndex == index]
        if model.signatureDefs and not sigs:
            continue  # only the signatures' entry graphs face the app
        remap, first, last = {}, [], []
        for is_input, ends in ((True, graph.inputs), (False, graph.outputs)):
            for k, ti in enumerate(list(ends)):
                tensor = graph.tensors[ti]
                q = tensor.quantization
                if tensor.type not in quantized or q is None or q.scale is None or len(q.scale) == 0:
                    continue
                outer = copy.deepcopy(tensor)
                outer.type, outer.quantization, outer.buffer = fb.TensorType.FLOAT32, fb.QuantizationParametersT(), 0
                tensor.name = _name(tensor.name, b"io") + b"_quantized"
                graph.tensors.append(outer)
                fi = len(graph.tensors) - 1
                op = fb.OperatorT()
                if is_input:
                    op.opcodeIndex = _opcode_index(fb, model, fb.BuiltinOperator.QUANTIZE, op_version[tensor.type])
                    op.inputs, op.outputs = [fi], [ti]
                    op.builtinOptionsType, op.builtinOptions = fb.BuiltinOptions.QuantizeOptions, fb.QuantizeOptionsT()
                    first.append(op)
                else:
                    op.opcodeIndex = _opcode_index(fb, model, fb.BuiltinOperator.DEQUANTIZE, op_version[tensor.type])
                    op.inputs, op.outputs = [ti], [fi]
                    op.builtinOptionsType = fb.BuiltinOptions.DequantizeOptions
                    op.builtinOptions = fb.DequantizeOptionsT()
                    last.append(op)
                ends[k] = fi
                remap[ti] = fi
        graph.operators = first + list(graph.operators) + last
        for sig in sigs:
            for entry in list(sig.inputs or []) + list(sig.outputs or []):
                if entry.tensorIndex in remap:
                    entry.tensorIndex = remap[entry.tensorIndex]
        changed += len(remap)
    fbu.write_model(model, dst)
    return changed


def to_uint8_io(src, dst):
    """A float-I/O, fully quantized file -> uint8 I/O. The C++ tool crashes
    on a missing file and silently does nothing on int8 I/O: checked here."""
    from ai_edge_litert import _pywrap_modify_model_interface as mmi

    if not os.path.isfile(src):
        raise IOError("%s: no such file" % src)
    uint8 = 3  # TensorType.UINT8 in the schema
    code = mmi.modify_model_interface(src, dst, uint8, uint8)
    if code != 0:
        raise RuntimeError("modify_model_interface returned %d" % code)
