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
* ``SUB``: like ``XOR`` but the wrapped integer difference of the bit
  patterns, zigzag-mapped so small moves either way have small high bytes.
  A relative move of a float changes its mantissa additively, so after a
  dense fine-tune this carries no XOR carry noise and codes closer to the
  information in the change.
* ``CODEBOOK_PREDICT``: old and new both codebook-structured but the
  codebook was re-clustered: the new codebook, then each new index coded as
  its difference from the new entry nearest to the old weight.
* ``QUANT``: an 8-bit tensor that quantises an old float32 tensor (an int8
  release of the fp32 model): the scale and zero point, then each value's
  difference from ``clip(rint(old / scale) + zero_point)``, almost all zero.
* ``CODEBOOK``: at most 256 distinct values (the released SqueezeNet): the
  codebook, then either a dense index stream or, when many entries are zero,
  where the non-zeros are (the smallest of a gap stream of zero-run lengths,
  a bitmap, or one byte per 3×3 kernel mask plus its 9th bits) and an index
  stream of the non-zeros.
* ``PLANES``: anything else: byte planes of the element bit patterns.

Plane and gap layouts live in ``planes``, the codebook modes' coders in ``codebooks``, the ``QUANT``
mode in ``quantised``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from modelpack.codecs.codebooks import (
    MAX_CODEBOOK,
    codebook_map,
    decode_codebook,
    encode_codebook,
    encode_codebook_predict,
    predicted_indices,
    read_codebook,
    remap_words,
)
from modelpack.codecs.container import CorruptEncodingError
from modelpack.codecs.entropy import decode_stream
from modelpack.codecs.planes import (
    WORD,
    add_unzigzag_onto,
    as_words,
    decode_planes,
    encode_planes,
    xor_onto,
    zigzag,
)
from modelpack.codecs.quantised import QUANT, decode_quantised
from modelpack.codecs.wire import Reader, Writer

SAME, XOR, CODEBOOK_MAP, CODEBOOK, PLANES, SUB, CODEBOOK_PREDICT = 0, 1, 2, 3, 4, 5, 6
MODE_NAMES = {
    SAME: "same",
    XOR: "xor",
    CODEBOOK_MAP: "codebook-map",
    CODEBOOK: "codebook",
    PLANES: "planes",
    SUB: "sub",
    CODEBOOK_PREDICT: "codebook-predict",
    QUANT: "quantised",
}


@dataclass(frozen=True)
class OldTensor:
    index: int
    data: bytes
    elem_size: int


def _varint_bytes(value: int) -> bytes:
    w = Writer()
    w.varint(value)
    return w.getvalue()


def encode_tensor(
    new: bytes,
    elem: int,
    old: OldTensor | None,
    same: int | None,
    allow: frozenset[int] | None = None,
) -> tuple[int, bytes]:
    """Smallest encoding of one tensor's bytes; returns (mode, record).
    ``allow`` restricts the modes tried (tests use it to reach every decoder
    branch whatever the encoder would pick)."""
    if same is not None:
        w = Writer()
        w.u8(SAME)
        w.varint(same)
        return SAME, w.getvalue()
    if len(new) % elem:
        elem = 1
    words = as_words(new, elem)
    candidates: list[tuple[int, bytes]] = []
    has_old = old is not None and len(old.data) == len(new) and old.elem_size == elem
    if has_old:
        assert old is not None
        old_words = as_words(old.data, elem)
        cm = codebook_map(old_words, words, elem)
        if cm is not None and (allow is None or CODEBOOK_MAP in allow):
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
        encode_planes(old_words ^ words, elem, w, old_words)
        candidates.append((XOR, w.getvalue()))
        if elem > 1:
            w = Writer()
            w.u8(SUB)
            w.varint(old.index)
            w.u8(elem)
            encode_planes(zigzag(words - old_words, elem), elem, w, old_words)
            candidates.append((SUB, w.getvalue()))
        cp = encode_codebook_predict(old_words, words, elem)
        if cp is not None:
            candidates.append(
                (
                    CODEBOOK_PREDICT,
                    bytes((CODEBOOK_PREDICT,)) + _varint_bytes(old.index) + bytes((elem,)) + cp,
                )
            )
    cb = encode_codebook(words, elem)
    if cb is not None:
        candidates.append((CODEBOOK, bytes((CODEBOOK, elem)) + cb))
    if cb is None or len(cb) > words.size * elem // 2 or (allow is not None and PLANES in allow):
        # Index coding beats raw planes unless nearly every value is distinct
        # (e.g. a small bias), so planes are only tried then.
        w = Writer()
        w.u8(PLANES)
        w.u8(elem)
        encode_planes(words, elem, w)
        candidates.append((PLANES, w.getvalue()))
    if allow is not None:
        candidates = [c for c in candidates if c[0] in allow]
        if not candidates:
            raise ValueError(f"none of the modes {sorted(allow)} applies to this tensor")
    return min(candidates, key=lambda c: len(c[1]))


def _byte_view(words: np.ndarray) -> memoryview:
    """A decoded tensor's bytes without copying them out of its array."""
    return np.ascontiguousarray(words).reshape(-1).view(np.uint8).data


def decode_tensor(
    r: Reader,
    length: int,
    olds: Sequence[bytes | memoryview],
    what: str,
    decoded: Sequence[bytes | memoryview] | None = None,
) -> bytes | memoryview:
    """Read one tensor record and return exactly ``length`` bytes (a base
    tensor itself, possibly a view of the base, for ``SAME``).
    ``decoded``: the new model's tensors decoded so far (for references)."""
    mode = r.u8(f"{what} mode")
    if mode == QUANT:
        return decode_quantised(r, length, olds, what, decoded or [])
    if mode == SAME:
        i = r.varint(f"{what} base tensor", len(olds) - 1) if olds else None
        if i is None or len(olds[i]) != length:
            raise CorruptEncodingError(f"{what}: refers to a base tensor that does not fit")
        return olds[i]
    old = None
    if mode in (XOR, CODEBOOK_MAP, SUB, CODEBOOK_PREDICT):
        if not olds:
            raise CorruptEncodingError(f"{what}: delta record but no base tensors")
        old = olds[r.varint(f"{what} base tensor", len(olds) - 1)]
        if len(old) != length:
            raise CorruptEncodingError(f"{what}: base tensor is {len(old)} bytes, target {length}")
    elif mode not in (CODEBOOK, PLANES):
        raise CorruptEncodingError(f"{what}: unknown tensor mode {mode}")
    elem = r.u8(f"{what} element size")
    if elem not in WORD or length % elem:
        raise CorruptEncodingError(f"{what}: element size {elem} does not divide {length} bytes")
    n = length // elem
    if mode == PLANES:
        return _byte_view(decode_planes(r, n, elem, what))
    if mode == CODEBOOK:
        return _byte_view(decode_codebook(r, n, elem, what))
    assert old is not None
    old_words = as_words(old, elem)
    if mode in (XOR, SUB):
        combine = xor_onto if mode == XOR else add_unzigzag_onto
        return _byte_view(decode_planes(r, n, elem, what, old_words, combine))
    if mode == CODEBOOK_PREDICT:
        values = read_codebook(r, elem, what)
        pred = predicted_indices(old_words, values, elem)
        if pred is None:
            raise CorruptEncodingError(f"{what}: codebook cannot predict from this base tensor")
        zero = old_words == 0
        n_zero = int(np.count_nonzero(zero))
        res = np.empty(n, dtype=np.int64)
        res_zero = decode_stream(r, n_zero, f"{what} index residuals (base zero)")
        res_rest = decode_stream(r, n - n_zero, f"{what} index residuals")
        if res_zero.size != n_zero or res_rest.size != n - n_zero:
            raise CorruptEncodingError(f"{what}: index residual counts do not fit the base tensor")
        res[zero] = res_zero
        res[~zero] = res_rest
        return _byte_view(values[(pred + res) % values.size])
    raw = decode_stream(r, MAX_CODEBOOK * elem, f"{what} codebook map")

    def remap(values: np.ndarray) -> np.ndarray:
        if raw.size != values.size * elem:
            raise CorruptEncodingError(
                f"{what}: codebook map of {raw.size} bytes, expected {values.size * elem}"
            )
        return values ^ np.ascontiguousarray(raw.reshape(elem, -1).T).reshape(-1).view(WORD[elem])

    mapped = remap_words(old_words, remap)
    if mapped is None:
        raise CorruptEncodingError(f"{what}: base tensor has more than {MAX_CODEBOOK} values")
    return _byte_view(mapped)
