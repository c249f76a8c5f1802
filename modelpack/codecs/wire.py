"""Bounds-checked byte reading and writing for payload formats.

Every read checks that the bytes are there and every count is checked against
a budget before anything is allocated, so a corrupted or hostile payload ends
in a ``CorruptEncodingError`` naming the field, never in an IndexError, a
hang or an enormous allocation.
"""

from __future__ import annotations

from modelpack.codecs.container import CorruptEncodingError


class Writer:
    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def u8(self, value: int) -> None:
        self._parts.append(bytes((value,)))

    def varint(self, value: int) -> None:
        if value < 0:
            raise ValueError(f"varint must be non-negative, got {value}")
        out = bytearray()
        while True:
            byte = value & 0x7F
            value >>= 7
            if value:
                out.append(byte | 0x80)
            else:
                out.append(byte)
                break
        self._parts.append(bytes(out))

    def raw(self, data: bytes) -> None:
        self._parts.append(bytes(data))

    def blob(self, data: bytes) -> None:
        """Length-prefixed bytes."""
        self.varint(len(data))
        self._parts.append(bytes(data))

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class Reader:
    def __init__(self, data: bytes | memoryview, what: str = "payload") -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._what = what

    @property
    def pos(self) -> int:
        return self._pos

    def remaining(self) -> int:
        return len(self._data) - self._pos

    def _fail(self, field: str, why: str) -> CorruptEncodingError:
        return CorruptEncodingError(f"{self._what}: {field} at offset {self._pos}: {why}")

    def u8(self, field: str) -> int:
        if self._pos >= len(self._data):
            raise self._fail(field, "truncated")
        value = self._data[self._pos]
        self._pos += 1
        return value

    def varint(self, field: str, limit: int) -> int:
        """A varint that must not exceed ``limit``."""
        value = 0
        shift = 0
        start = self._pos
        while True:
            if self._pos >= len(self._data):
                self._pos = start
                raise self._fail(field, "truncated varint")
            byte = self._data[self._pos]
            self._pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 63:
                self._pos = start
                raise self._fail(field, "varint too long")
        if value > limit:
            self._pos = start
            raise self._fail(field, f"value {value} exceeds the limit {limit}")
        return value

    def raw(self, n: int, field: str) -> bytes:
        if n > self.remaining():
            raise self._fail(field, f"needs {n} bytes, {self.remaining()} left")
        out = bytes(self._data[self._pos : self._pos + n])
        self._pos += n
        return out

    def blob(self, field: str) -> bytes:
        n = self.varint(field + " length", self.remaining())
        return self.raw(n, field)

    def blob_view(self, field: str) -> memoryview:
        """Like ``blob``, but a view into the data instead of a copy."""
        n = self.varint(field + " length", self.remaining())
        out = self._data[self._pos : self._pos + n]
        self._pos += n
        return out

    def expect_end(self) -> None:
        if self.remaining():
            raise self._fail("end", f"{self.remaining()} unexpected trailing bytes")
