"""A .tflite file's inputs and outputs, read on the host without TensorFlow
or LiteRT: a TFLite model is a FlatBuffer (schema.fbs), and the few fields
needed here (the main subgraph's input and output tensors: name, type,
shape, shape signature; the signature's names) take a small reader. Every
offset is checked against the buffer: a damaged or hostile file is a
NotTflite naming what is wrong, never an IndexError."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

IDENTIFIER = b"TFL3"
# TensorType (schema.fbs) -> numpy name, for the types an input or output can have here.
TYPES = {
    0: "float32",
    1: "float16",
    2: "int32",
    3: "uint8",
    4: "int64",
    5: "string",
    6: "bool",
    7: "int16",
    9: "int8",
    10: "float64",
    16: "uint32",
    17: "int4",
}
MAX_ITEMS = 1 << 20  # no model has more tensors than this; a larger count is a damaged file


class NotTflite(ValueError):
    """The bytes are not a TFLite FlatBuffer this reader follows."""


@dataclass
class Tensor:
    name: str
    dtype: str
    shape: list = field(default_factory=list)  # int, or None for a free (-1) dimension


@dataclass
class TfliteInfo:
    version: int
    inputs: list  # [Tensor]
    outputs: list  # [Tensor]
    subgraphs: int


class _Buf:
    def __init__(self, data: bytes):
        self.data = data

    def u32(self, at: int) -> int:
        if at < 0 or at + 4 > len(self.data):
            raise NotTflite(f"an offset ({at}) runs past the end of the file")
        return struct.unpack_from("<I", self.data, at)[0]

    def i32(self, at: int) -> int:
        return struct.unpack_from("<i", self.data, self._check(at, 4))[0]

    def _check(self, at: int, size: int) -> int:
        if at < 0 or at + size > len(self.data):
            raise NotTflite(f"a field at {at} runs past the end of the file")
        return at

    def table(self, at: int) -> _Table:
        vtable = at - self.i32(at)
        vsize = struct.unpack_from("<H", self.data, self._check(vtable, 4))[0]
        self._check(vtable, vsize)
        return _Table(self, at, vtable, vsize)


class _Table:
    def __init__(self, buf: _Buf, at: int, vtable: int, vsize: int):
        self.buf, self.at, self.vtable, self.vsize = buf, at, vtable, vsize

    def _field(self, index: int) -> int:
        """Offset of field `index` in the table, or 0 when absent."""
        slot = 4 + 2 * index
        if slot + 2 > self.vsize:
            return 0
        off = struct.unpack_from("<H", self.buf.data, self.vtable + slot)[0]
        return self.at + off if off else 0

    def scalar(self, index: int, fmt: str, default: int = 0) -> int:
        at = self._field(index)
        return struct.unpack_from(fmt, self.buf.data, self.buf._check(at, struct.calcsize(fmt)))[0] if at else default

    def _vector(self, index: int) -> tuple[int, int]:
        at = self._field(index)
        if not at:
            return 0, 0
        start = at + self.buf.u32(at)
        count = self.buf.u32(start)
        if count > MAX_ITEMS:
            raise NotTflite(f"a list of {count} items: not a model")
        return start + 4, count

    def ints(self, index: int) -> list[int]:
        start, count = self._vector(index)
        self.buf._check(start, 4 * count)
        return list(struct.unpack_from(f"<{count}i", self.buf.data, start)) if count else []

    def tables(self, index: int) -> list[_Table]:
        start, count = self._vector(index)
        return [self.buf.table(start + 4 * i + self.buf.u32(start + 4 * i)) for i in range(count)]

    def string(self, index: int) -> str:
        at = self._field(index)
        if not at:
            return ""
        start = at + self.buf.u32(at)
        size = self.buf.u32(start)
        raw = self.buf.data[self.buf._check(start + 4, size) : start + 4 + size]
        return raw.decode("utf-8", "replace")


def is_tflite(head: bytes) -> bool:
    return len(head) >= 8 and head[4:8] == IDENTIFIER


def _tensor(t: _Table) -> Tensor:
    shape = t.ints(0)
    signature = t.ints(7)
    dims = [None if s == -1 else d for d, s in zip(shape, signature)] if len(signature) == len(shape) else shape
    return Tensor(t.string(3), TYPES.get(t.scalar(1, "<b"), f"type {t.scalar(1, '<b')}"), dims)


def parse(data: bytes) -> TfliteInfo:
    """The main subgraph's inputs and outputs (named as the signature names
    them, when the file has a signature)."""
    if not is_tflite(data[:8]):
        raise NotTflite("no TFL3 identifier")
    buf = _Buf(data)
    try:
        model = buf.table(buf.u32(0))
        subgraphs = model.tables(2)
        if not subgraphs:
            raise NotTflite("no subgraph")
        main = subgraphs[0]
        tensors = main.tables(0)

        def pick(indices: list[int]) -> list[Tensor]:
            if any(i < 0 or i >= len(tensors) for i in indices):
                raise NotTflite("an input or output names a tensor the subgraph does not have")
            return [_tensor(tensors[i]) for i in indices]

        inputs, outputs = pick(main.ints(1)), pick(main.ints(2))
        signatures = model.tables(7)
        if signatures:  # the names an app calls them by: the signature's, not the tensors'
            sig = signatures[0]
            by_index = {m.scalar(1, "<I"): m.string(0) for m in sig.tables(0)}
            for pos, i in enumerate(main.ints(1)):
                inputs[pos].name = by_index.get(i, inputs[pos].name)
            by_index = {m.scalar(1, "<I"): m.string(0) for m in sig.tables(1)}
            for pos, i in enumerate(main.ints(2)):
                outputs[pos].name = by_index.get(i, outputs[pos].name)
        return TfliteInfo(model.scalar(0, "<I"), inputs, outputs, len(subgraphs))
    except struct.error as exc:
        raise NotTflite(f"a damaged FlatBuffer ({exc})") from None
