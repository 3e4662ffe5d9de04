"""An ONNX file's inputs, outputs and opset, read on the host without the
onnx package: a ModelProto is protobuf, and the few fields needed here
(graph inputs/outputs with their types and shapes, initializer names,
opset imports) take a small wire-format reader to get at."""

from __future__ import annotations

from dataclasses import dataclass, field

# TensorProto.DataType -> numpy name, for the types a model input can have here.
ELEM_TYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    16: "bfloat16",
}


class NotOnnx(ValueError):
    """The bytes are not an ONNX ModelProto (or not one this reader follows)."""


@dataclass
class Tensor:
    name: str
    dtype: str = ""
    shape: list = field(default_factory=list)  # int, or a str for a named (dynamic) dimension, or None


@dataclass
class OnnxInfo:
    ir_version: int
    opset: int
    inputs: list  # [Tensor], initializers left out
    outputs: list  # [Tensor]
    nodes: int
    producer: str = ""
    external_data: bool = False


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise NotOnnx("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise NotOnnx("varint too long")


def fields(buf: memoryview):
    """(field number, wire type, value) for each field of one message: an int
    for varints and fixed-width values, a memoryview for length-delimited ones."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise NotOnnx("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise NotOnnx("a field runs past the end of the file")
            value, pos = buf[pos : pos + size], pos + size  # type: ignore[assignment]  # bytes for wire 2
        else:
            raise NotOnnx(f"wire type {wire}")
        if pos > len(buf):
            raise NotOnnx("truncated field")
        yield number, wire, value


def _text(value) -> str:
    try:
        return bytes(value).decode("utf-8")
    except (TypeError, UnicodeDecodeError):
        raise NotOnnx("a name that is not UTF-8 text") from None


def _value_info(buf: memoryview) -> Tensor:
    tensor = Tensor("")
    for number, wire, value in fields(buf):
        if number == 1 and wire == 2:
            tensor.name = _text(value)
        elif number == 2 and wire == 2:  # TypeProto
            for tn, tw, tv in fields(value):
                if tn == 1 and tw == 2:  # tensor_type
                    _tensor_type(tv, tensor)
    return tensor


def _tensor_type(buf: memoryview, tensor: Tensor) -> None:
    for number, wire, value in fields(buf):
        if number == 1 and wire == 0:
            tensor.dtype = ELEM_TYPES.get(value, f"onnx type {value}")
        elif number == 2 and wire == 2:  # TensorShapeProto
            for dn, dw, dv in fields(value):
                if dn == 1 and dw == 2:
                    dim = None
                    for n, w, v in fields(dv):
                        if n == 1 and w == 0:
                            dim = v
                        elif n == 2 and w == 2:
                            dim = _text(v)
                    tensor.shape.append(dim)


def _initializer(buf: memoryview) -> tuple[str, bool]:
    name, external = "", False
    for number, wire, value in fields(buf):
        if number == 8 and wire == 2:
            name = _text(value)
        elif number == 14 and wire == 0 and value == 1:  # data_location: EXTERNAL
            external = True
    return name, external


def parse(data: bytes) -> OnnxInfo:
    buf = memoryview(data)
    ir_version, opsets, graph, producer = None, {}, None, ""
    for number, wire, value in fields(buf):
        if number == 1 and wire == 0:
            ir_version = value
        elif number == 2 and wire == 2:
            producer = _text(value)
        elif number == 7 and wire == 2:
            graph = value
        elif number == 8 and wire == 2:
            domain, version = "", 0
            for n, w, v in fields(value):
                if n == 1 and w == 2:
                    domain = _text(v)
                elif n == 2 and w == 0:
                    version = v
            opsets[domain] = version
    if ir_version is None or graph is None:
        raise NotOnnx("no ir_version or no graph")
    inputs, outputs, initializers, nodes, external = [], [], set(), 0, False
    for number, wire, value in fields(graph):
        if wire != 2:
            continue
        if number == 1:
            nodes += 1
        elif number == 5:
            name, ext = _initializer(value)
            initializers.add(name)
            external = external or ext
        elif number == 11:
            inputs.append(_value_info(value))
        elif number == 12:
            outputs.append(_value_info(value))
    # Before IR 4, initializers were listed as graph inputs too: they are weights, not inputs.
    inputs = [t for t in inputs if t.name not in initializers]
    opset = opsets.get("", opsets.get("ai.onnx", 1 if ir_version < 3 else 0))
    return OnnxInfo(ir_version, opset, inputs, outputs, nodes, producer, external)
