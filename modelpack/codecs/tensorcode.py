"""Lossless coding of one tensor's data bytes, alone or against an old tensor.

Modes (the encoder tries every one that applies and keeps the smallest):

* ``SAME``: identical to an old tensor; costs its index.
* ``XOR``: same size as the old tensor; the XOR of old and new element bit
  patterns, split into byte planes (for float32: sign/exponent byte, then
  the mantissa bytes) and entropy-coded plane by plane. Small dense changes
  leave the high planes nearly all zero, so they cost almost nothing.
* ``CODEBOOK_MAP``: old and new both have at most 256 distinct values and
  every position that shared a value in the old tensor shares one in the new
  (a retrained codebook, Deep Compression style): only the new value of each
  old codebook entry is sent.
* ``CODEBOOK``: at most 256 distinct values (the released SqueezeNet): the
  codebook, then either a dense index stream or, when many entries are zero,
  a gap stream (zero-run lengths) and an index stream of the non-zeros.
* ``PLANES``: anything else: byte planes of the element bit patterns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import zstandard

from modelpack.codecs.container import CorruptEncodingError
from modelpack.codecs.entropy import decode_stream, encode_stream
from modelpack.codecs.wire import Reader, Writer

SAME, XOR, CODEBOOK_MAP, CODEBOOK, PLANES = 0, 1, 2, 3, 4
MODE_NAMES = {SAME: "same", XOR: "xor", CODEBOOK_MAP: "codebook-map", CODEBOOK: "codebook", PLANES: "planes"}
_WORD = {1: np.uint8, 2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<u8")}
MAX_CODEBOOK = 256
_SPARSE_MIN_ZERO_FRACTION = 0.25
_GAP_ESCAPE = 255


@dataclass(frozen=True)
class OldTensor:
    index: int
    data: bytes
    elem_size: int


def _words(data: bytes, elem: int) -> np.ndarray:
    return np.frombuffer(data, dtype=_WORD[elem])


def _encode_planes(words: np.ndarray, elem: int, w: Writer) -> None:
    planes = words.view(np.uint8).reshape(-1, elem)
    for k in range(elem - 1, -1, -1):  # most significant plane first
        w.raw(encode_stream(planes[:, k]))


def _decode_planes(r: Reader, n: int, elem: int, what: str) -> np.ndarray:
    planes = np.empty((n, elem), dtype=np.uint8)
    for k in range(elem - 1, -1, -1):
        planes[:, k] = decode_stream(r, n, f"{what} plane {k}")
    return planes.reshape(-1).view(_WORD[elem])


def _encode_codebook(words: np.ndarray, elem: int) -> bytes | None:
    values, inverse = np.unique(words, return_inverse=True)
    k = values.size
    if k > MAX_CODEBOOK or words.size == 0:
        return None
    w = Writer()
    w.varint(k)
    # Sorted bit patterns: successive differences are small and compress well.
    deltas = np.diff(values, prepend=values.dtype.type(0))
    w.raw(encode_stream(deltas.view(np.uint8).reshape(-1, elem).T.reshape(-1)))
    inverse = inverse.reshape(-1).astype(np.uint8)
    zeros = int(values[0] == 0) and int(np.count_nonzero(inverse == 0))
    if zeros >= _SPARSE_MIN_ZERO_FRACTION * words.size:
        nz = np.flatnonzero(inverse)
        gaps = np.diff(nz, prepend=-1) - 1
        w.u8(1)
        w.varint(nz.size)
        w.raw(encode_stream(np.minimum(gaps, _GAP_ESCAPE).astype(np.uint8)))
        extra = Writer()
        for g in gaps[gaps >= _GAP_ESCAPE].tolist():
            extra.varint(g - _GAP_ESCAPE)
        w.blob(zstandard.ZstdCompressor(level=19).compress(extra.getvalue()))
        w.raw(encode_stream(inverse[nz] - 1))
    else:
        w.u8(0)
        w.raw(encode_stream(inverse))
    return w.getvalue()


def _decode_codebook(r: Reader, n: int, elem: int, what: str) -> np.ndarray:
    k = r.varint(f"{what} codebook size", MAX_CODEBOOK)
    if k == 0:
        raise CorruptEncodingError(f"{what}: empty codebook")
    raw = decode_stream(r, k * elem, f"{what} codebook")
    if raw.size != k * elem:
        raise CorruptEncodingError(f"{what}: codebook of {raw.size} bytes, expected {k * elem}")
    values = np.cumsum(np.ascontiguousarray(raw.reshape(elem, k).T).reshape(-1).view(_WORD[elem]), dtype=_WORD[elem])
    layout = r.u8(f"{what} index layout")
    if layout == 0:
        idx = decode_stream(r, n, f"{what} indices")
        if idx.size != n or (n and int(idx.max()) >= k):
            raise CorruptEncodingError(f"{what}: index stream does not fit the codebook")
        return values[idx]
    if layout != 1:
        raise CorruptEncodingError(f"{what}: unknown index layout {layout}")
    n_nz = r.varint(f"{what} non-zero count", n)
    gaps = decode_stream(r, n_nz, f"{what} gaps").astype(np.int64)
    extra_z = r.blob(f"{what} long gaps")
    try:
        extra = zstandard.ZstdDecompressor().decompress(extra_z, max_output_size=10 * n_nz + 16)
    except zstandard.ZstdError as exc:
        raise CorruptEncodingError(f"{what}: long-gap stream damaged ({exc})") from exc
    esc = np.flatnonzero(gaps == _GAP_ESCAPE)
    er = Reader(extra, f"{what} long gaps")
    for i in esc.tolist():
        gaps[i] += er.varint("gap", n)
    er.expect_end()
    idx = decode_stream(r, n_nz, f"{what} non-zero indices")
    if gaps.size != n_nz or idx.size != n_nz:
        raise CorruptEncodingError(f"{what}: gap/index streams disagree with the non-zero count")
    pos = np.cumsum(gaps + 1) - 1
    if n_nz and (int(pos[-1]) >= n or int(idx.max()) + 1 >= k):
        raise CorruptEncodingError(f"{what}: sparse positions or indices out of range")
    out = np.zeros(n, dtype=_WORD[elem])  # index 0 is the all-zero pattern
    if values[0] != 0:
        raise CorruptEncodingError(f"{what}: sparse layout needs a zero codebook entry")
    out[pos] = values[idx.astype(np.int64) + 1]
    return out


def _codebook_map(old: np.ndarray, new: np.ndarray, elem: int) -> bytes | None:
    values, first, inverse = np.unique(old, return_index=True, return_inverse=True)
    if values.size > MAX_CODEBOOK:
        return None
    inverse = inverse.reshape(-1)
    mapped = new[first]
    if not np.array_equal(mapped[inverse], new):
        return None
    return encode_stream((values ^ mapped).view(np.uint8).reshape(-1, elem).T.reshape(-1))


def encode_tensor(new: bytes, elem: int, old: OldTensor | None, same: int | None) -> tuple[int, bytes]:
    """Smallest encoding of one tensor's bytes; returns (mode, record)."""
    if same is not None:
        w = Writer()
        w.u8(SAME)
        w.varint(same)
        return SAME, w.getvalue()
    if len(new) % elem:
        elem = 1
    words = _words(new, elem)
    candidates: list[tuple[int, bytes]] = []
    has_old = old is not None and len(old.data) == len(new) and old.elem_size == elem
    if has_old:
        assert old is not None
        old_words = _words(old.data, elem)
        cm = _codebook_map(old_words, words, elem)
        if cm is not None:
            # At most 256 values: nothing else comes close, skip the rest.
            w = Writer()
            w.u8(CODEBOOK_MAP)
            w.varint(old.index)
            w.u8(elem)
            w.raw(cm)
            return CODEBOOK_MAP, w.getvalue()
        w = Writer()
        w.u8(XOR)
        w.varint(old.index)
        w.u8(elem)
        _encode_planes(old_words ^ words, elem, w)
        candidates.append((XOR, w.getvalue()))
    cb = _encode_codebook(words, elem)
    if cb is not None:
        candidates.append((CODEBOOK, bytes((CODEBOOK, elem)) + cb))
    if cb is None or len(cb) > words.size * elem // 2:
        # Index coding beats raw planes unless nearly every value is distinct
        # (e.g. a small bias), so planes are only tried then.
        w = Writer()
        w.u8(PLANES)
        w.u8(elem)
        _encode_planes(words, elem, w)
        candidates.append((PLANES, w.getvalue()))
    return min(candidates, key=lambda c: len(c[1]))


def decode_tensor(r: Reader, length: int, olds: list[bytes], what: str) -> bytes:
    """Read one tensor record and return exactly ``length`` bytes."""
    mode = r.u8(f"{what} mode")
    if mode == SAME:
        i = r.varint(f"{what} base tensor", len(olds) - 1) if olds else None
        if i is None or len(olds[i]) != length:
            raise CorruptEncodingError(f"{what}: refers to a base tensor that does not fit")
        return olds[i]
    old = None
    if mode in (XOR, CODEBOOK_MAP):
        if not olds:
            raise CorruptEncodingError(f"{what}: delta record but no base tensors")
        old = olds[r.varint(f"{what} base tensor", len(olds) - 1)]
        if len(old) != length:
            raise CorruptEncodingError(f"{what}: base tensor is {len(old)} bytes, target {length}")
    elif mode not in (CODEBOOK, PLANES):
        raise CorruptEncodingError(f"{what}: unknown tensor mode {mode}")
    elem = r.u8(f"{what} element size")
    if elem not in _WORD or length % elem:
        raise CorruptEncodingError(f"{what}: element size {elem} does not divide {length} bytes")
    n = length // elem
    if mode == PLANES:
        return _decode_planes(r, n, elem, what).tobytes()
    if mode == CODEBOOK:
        return _decode_codebook(r, n, elem, what).tobytes()
    assert old is not None
    old_words = _words(old, elem)
    if mode == XOR:
        return (old_words ^ _decode_planes(r, n, elem, what)).tobytes()
    values, inverse = np.unique(old_words, return_inverse=True)
    raw = decode_stream(r, values.size * elem, f"{what} codebook map")
    if raw.size != values.size * elem:
        raise CorruptEncodingError(f"{what}: codebook map of {raw.size} bytes, expected {values.size * elem}")
    mapped = values ^ np.ascontiguousarray(raw.reshape(elem, -1).T).reshape(-1).view(_WORD[elem])
    return mapped[inverse.reshape(-1)].tobytes()
