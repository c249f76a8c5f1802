"""Find the tensor data inside serialised ONNX bytes without re-serialising.

The tensor codecs must rebuild the *exact* bytes TUF signed. Re-serialising a
parsed ``ModelProto`` is not guaranteed to reproduce a file written by another
protobuf version or tool, so instead this walks the protobuf wire format and
records where each initializer's data bytes lie. A model is then "skeleton"
(every byte outside those ranges, kept verbatim) plus tensor payloads, and
splicing them back together is byte-identical by construction.

Only the fields needed are understood: ``ModelProto.graph`` (7),
``GraphProto.initializer`` (5), and in ``TensorProto`` the dims (1), data type
(2), name (8) and the fixed-width data fields ``raw_data`` (9), packed
``float_data`` (4) and packed ``double_data`` (10).
"""

from __future__ import annotations

from dataclasses import dataclass

# ONNX TensorProto.DataType -> bytes per element (for fixed-width types)
ELEM_SIZE: dict[int, int] = {
    1: 4,
    2: 1,
    3: 1,
    4: 2,
    5: 2,
    6: 4,
    7: 8,
    9: 1,
    10: 2,
    11: 8,
    12: 4,
    13: 8,
    16: 2,
}
_FLOAT_TYPES = {1, 10, 11, 16}


class NotOnnxError(ValueError):
    """The bytes are not a well-formed serialised ONNX model."""


@dataclass(frozen=True)
class TensorSlot:
    """Where one initializer's data lies in the file."""

    name: str
    data_type: int
    dims: tuple[int, ...]
    offset: int
    length: int
    elem_size: int

    @property
    def end(self) -> int:
        return self.offset + self.length

    @property
    def is_float(self) -> bool:
        return self.data_type in _FLOAT_TYPES


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        if pos >= end:
            raise NotOnnxError(f"truncated varint at offset {pos}")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise NotOnnxError(f"varint too long at offset {pos}")


def _fields(buf: bytes, start: int, end: int):
    """Yield (field number, wire type, value or start, end) for one message."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise NotOnnxError(f"field number 0 at offset {pos}")
        if wire == 0:
            value, pos = _varint(buf, pos, end)
            yield field, wire, value, pos
        elif wire == 1:
            if pos + 8 > end:
                raise NotOnnxError(f"truncated fixed64 at offset {pos}")
            yield field, wire, pos, pos + 8
            pos += 8
        elif wire == 2:
            n, pos = _varint(buf, pos, end)
            if pos + n > end:
                raise NotOnnxError(
                    f"length-delimited field {field} at offset {pos} runs {pos + n - end} bytes past its message"
                )
            yield field, wire, pos, pos + n
            pos += n
        elif wire == 5:
            if pos + 4 > end:
                raise NotOnnxError(f"truncated fixed32 at offset {pos}")
            yield field, wire, pos, pos + 4
            pos += 4
        else:
            raise NotOnnxError(f"unsupported wire type {wire} at offset {pos}")


def _tensor(buf: bytes, start: int, end: int) -> list[TensorSlot]:
    name = ""
    data_type = 0
    dims: list[int] = []
    data: list[tuple[int, int, int]] = []  # (field, start, end)
    for field, wire, a, b in _fields(buf, start, end):
        if field == 8 and wire == 2:
            name = bytes(buf[a:b]).decode("utf-8", "replace")
        elif field == 2 and wire == 0:
            data_type = a
        elif field == 1 and wire == 0:
            dims.append(a)
        elif field == 1 and wire == 2:
            p = a
            while p < b:
                d, p = _varint(buf, p, b)
                dims.append(d)
        elif field in (9, 4, 10) and wire == 2 and b > a:
            data.append((field, a, b))
    slots = []
    for field, a, b in data:
        elem = {4: 4, 10: 8}.get(field, ELEM_SIZE.get(data_type, 1))
        if (b - a) % elem:
            elem = 1
        slots.append(TensorSlot(name, data_type, tuple(dims), a, b - a, elem))
    return slots


def find_tensors(model: bytes) -> list[TensorSlot]:
    """Every initializer's data range in a serialised ONNX model, in file order.

    Raises ``NotOnnxError`` if the bytes are not a well-formed ModelProto with
    a graph.
    """
    end = len(model)
    slots: list[TensorSlot] = []
    graphs = 0
    for field, wire, a, b in _fields(model, 0, end):
        if field == 7 and wire == 2:
            graphs += 1
            for gfield, gwire, ga, gb in _fields(model, a, b):
                if gfield == 5 and gwire == 2:
                    slots.extend(_tensor(model, ga, gb))
    if graphs == 0:
        raise NotOnnxError("no graph field: not a serialised ONNX ModelProto")
    return slots


def split(model: bytes, slots: list[TensorSlot]) -> bytes:
    """The skeleton: every byte of ``model`` outside the tensor ranges."""
    parts = []
    pos = 0
    for s in slots:
        parts.append(model[pos : s.offset])
        pos = s.end
    parts.append(model[pos:])
    return b"".join(parts)
