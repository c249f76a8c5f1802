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

Plane and gap layouts live in ``planes``, the ``QUANT`` mode in ``quantised``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from modelpack.codecs.container import CorruptEncodingError
from modelpack.codecs.entropy import decode_stream, encode_stream
from modelpack.codecs.planes import (
    BITMAP,
    KERNEL9,
    WORD,
    add_unzigzag_onto,
    as_words,
    decode_gaps,
    decode_mask,
    decode_planes,
    encode_gaps,
    encode_mask,
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
MAX_CODEBOOK = 256
_SPARSE_MIN_ZERO_FRACTION = 0.25


@dataclass(frozen=True)
class OldTensor:
    index: int
    data: bytes
    elem_size: int


def _small_unique(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and each element's index among them. A plain
    sort plus a binary search into the (small) codebook is several times
    faster than ``np.unique(..., return_inverse=True)``'s argsort; for 32-bit
    words whose high 16 bits tell the values apart (every codebook here) a
    bucket per high half finds them in a few linear passes, with no sort."""
    if words.dtype.itemsize == 4 and words.size > 4096:
        keys = words >> np.uint32(16)
        lut = np.zeros(1 << 16, dtype=words.dtype)
        lut[keys] = words
        if np.array_equal(lut[keys], words):
            present = np.flatnonzero(np.bincount(keys, minlength=1 << 16))
            if present.size <= MAX_CODEBOOK:
                rank = np.zeros(1 << 16, dtype=np.uint8)
                rank[present] = np.arange(present.size)
                return lut[present], rank[keys]
    values = np.unique(words)
    if values.size > MAX_CODEBOOK:
        return values, np.zeros(0, dtype=np.int64)
    bits = 8 * words.dtype.itemsize
    # A lookup table on the high bits, when they tell the values apart, is
    # another several times faster than a binary search per element.
    for shift in (0,) if bits <= 16 else (16, 12) if bits == 32 else ():
        keys = values >> words.dtype.type(shift)
        if np.unique(keys).size == values.size:
            lut = np.zeros(1 << (bits - shift), dtype=np.uint8)
            lut[keys] = np.arange(values.size)
            return values, lut[words >> words.dtype.type(shift)]
    return values, np.searchsorted(values, words)


_KEYS = np.arange(1 << 16, dtype=np.uint32)
# A free bucket of ``_remap_words``' table: its high half is not its index.
_FREE = (~_KEYS & np.uint32(0xFFFF)) << np.uint32(16)


def _remap_words(words: np.ndarray, remap: Callable[[np.ndarray], np.ndarray]) -> np.ndarray | None:
    """``remap(values)[inverse]`` for ``values, inverse = _small_unique(words)``
    (None past ``MAX_CODEBOOK`` values), without the index array. For 32-bit
    words, one scatter into a bucket per high 16 bits and one gather find
    every word whose bucket holds only its value; the few that share a bucket
    with another value (close codebook entries) are looked up apart.
    ``remap`` runs once, on the sorted values."""
    if words.dtype.itemsize != 4 or words.size <= 4096:
        # Small or not 32-bit: np.unique's own inverse beats both the table
        # and _small_unique's search here (0.39 vs 0.66 ms for the 7 small
        # SqueezeNet layers).
        values, inverse = np.unique(words, return_inverse=True)
        if values.size > MAX_CODEBOOK:
            return None
        return remap(values)[inverse.reshape(-1)]
    keys = (words >> np.uint32(16)).astype(np.intp)
    table = _FREE.copy()
    table[keys] = words
    present = np.flatnonzero(table != _FREE)  # a written bucket's high half is its index
    if present.size > MAX_CODEBOOK:
        return None
    # take(), not table[keys]: the same gather, measured ~1.6x faster.
    miss = table.take(keys) != words
    values = table[present]
    if miss.any():
        shared = words[miss]
        values = np.union1d(values, shared)
        if values.size > MAX_CODEBOOK:
            return None
    new = remap(values)
    table[present] = new[np.searchsorted(values, table[present])]
    out = table.take(keys)
    if miss.any():
        out[miss] = new[np.searchsorted(values, shared)]
    return out


def _float_view(words: np.ndarray, elem: int) -> np.ndarray | None:
    return words.view({4: "<f4", 8: "<f8", 2: "<f2"}[elem]) if elem in (2, 4, 8) else None


def _predicted_indices(old_words: np.ndarray, values: np.ndarray, elem: int) -> np.ndarray | None:
    """For each old weight, the index of the nearest new codebook entry."""
    old_f = _float_view(old_words, elem)
    new_f = _float_view(values, elem)
    if old_f is None or new_f is None:
        return None
    with np.errstate(all="ignore"):
        order = np.argsort(new_f, kind="stable")
        sorted_f = new_f[order].astype(np.float64)
        if not np.all(np.isfinite(sorted_f)):
            return None
        old_vals, old_inv = _small_unique(old_words)
        if old_vals.size > MAX_CODEBOOK:
            return None
        old_u = old_vals.view(old_f.dtype).astype(np.float64)
        pos = np.clip(np.searchsorted(sorted_f, old_u), 1, max(1, sorted_f.size - 1))
        lo = np.clip(pos - 1, 0, sorted_f.size - 1)
        hi = np.clip(pos, 0, sorted_f.size - 1)
        pick = np.where(np.abs(sorted_f[hi] - old_u) < np.abs(old_u - sorted_f[lo]), hi, lo)
    return order[pick][old_inv.reshape(-1)].astype(np.int64)


def _encode_codebook_predict(old_words: np.ndarray, words: np.ndarray, elem: int) -> bytes | None:
    values, inverse = np.unique(words, return_inverse=True)
    if values.size > MAX_CODEBOOK or np.unique(old_words).size > MAX_CODEBOOK:
        return None
    pred = _predicted_indices(old_words, values, elem)
    if pred is None:
        return None
    w = Writer()
    w.varint(values.size)
    deltas = np.diff(values, prepend=values.dtype.type(0))
    w.raw(encode_stream(deltas.view(np.uint8).reshape(-1, elem).T.reshape(-1)))
    res = ((inverse.reshape(-1) - pred) % values.size).astype(np.uint8)
    # Pruned weights stay pruned: residuals where the base is zero are coded
    # apart, so the zero pattern (which the decoder already has) costs nothing.
    zero = old_words == 0
    w.raw(encode_stream(res[zero]))
    w.raw(encode_stream(res[~zero]))
    return w.getvalue()


def _read_codebook(r: Reader, elem: int, what: str) -> np.ndarray:
    k = r.varint(f"{what} codebook size", MAX_CODEBOOK)
    if k == 0:
        raise CorruptEncodingError(f"{what}: empty codebook")
    raw = decode_stream(r, k * elem, f"{what} codebook")
    if raw.size != k * elem:
        raise CorruptEncodingError(f"{what}: codebook of {raw.size} bytes, expected {k * elem}")
    return np.cumsum(
        np.ascontiguousarray(raw.reshape(elem, k).T).reshape(-1).view(WORD[elem]), dtype=WORD[elem]
    )


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
        gaps = Writer()
        encode_gaps(nz, gaps)
        # Where the zeros are: the smallest of a gap stream and the bitmaps.
        where = [(1, gaps.getvalue()), (BITMAP, encode_mask(inverse != 0, BITMAP))]
        if words.size % 9 == 0:
            where.append((KERNEL9, encode_mask(inverse != 0, KERNEL9)))
        layout, body = min(where, key=lambda c: len(c[1]))
        w.u8(layout)
        w.varint(nz.size)
        w.raw(body)
        w.raw(encode_stream(inverse[nz] - 1))
    else:
        w.u8(0)
        w.raw(encode_stream(inverse))
    return w.getvalue()


def _decode_codebook(r: Reader, n: int, elem: int, what: str) -> np.ndarray:
    values = _read_codebook(r, elem, what)
    k = values.size
    layout = r.u8(f"{what} index layout")
    if layout == 0:
        idx = decode_stream(r, n, f"{what} indices")
        if idx.size != n or (n and int(idx.max()) >= k):
            raise CorruptEncodingError(f"{what}: index stream does not fit the codebook")
        return values.take(idx)
    if layout not in (1, BITMAP, KERNEL9):
        raise CorruptEncodingError(f"{what}: unknown index layout {layout}")
    n_nz = r.varint(f"{what} non-zero count", n)
    pos = decode_gaps(r, n_nz, n, what) if layout == 1 else decode_mask(r, layout, n_nz, n, what)
    idx = decode_stream(r, n_nz, f"{what} non-zero indices")
    if idx.size != n_nz:
        raise CorruptEncodingError(f"{what}: index stream disagrees with the non-zero count")
    if n_nz and int(idx.max()) + 1 >= k:
        raise CorruptEncodingError(f"{what}: sparse indices out of range")
    out = np.zeros(n, dtype=WORD[elem])  # index 0 is the all-zero pattern
    if values[0] != 0:
        raise CorruptEncodingError(f"{what}: sparse layout needs a zero codebook entry")
    out[pos] = values[1:].take(idx)
    return out


def _codebook_map(old: np.ndarray, new: np.ndarray, elem: int) -> bytes | None:
    values, inverse = _small_unique(old)
    if values.size > MAX_CODEBOOK:
        return None
    first = np.zeros(values.size, dtype=np.int64)
    first[inverse[::-1]] = np.arange(inverse.size - 1, -1, -1)  # first position of each value
    mapped = new[first]
    if not np.array_equal(mapped[inverse], new):
        return None
    return encode_stream((values ^ mapped).view(np.uint8).reshape(-1, elem).T.reshape(-1))


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
        cm = _codebook_map(old_words, words, elem)
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
        cp = _encode_codebook_predict(old_words, words, elem)
        if cp is not None:
            candidates.append(
                (
                    CODEBOOK_PREDICT,
                    bytes((CODEBOOK_PREDICT,)) + _varint_bytes(old.index) + bytes((elem,)) + cp,
                )
            )
    cb = _encode_codebook(words, elem)
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
        return _byte_view(_decode_codebook(r, n, elem, what))
    assert old is not None
    old_words = as_words(old, elem)
    if mode in (XOR, SUB):
        combine = xor_onto if mode == XOR else add_unzigzag_onto
        return _byte_view(decode_planes(r, n, elem, what, old_words, combine))
    if mode == CODEBOOK_PREDICT:
        values = _read_codebook(r, elem, what)
        pred = _predicted_indices(old_words, values, elem)
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

    mapped = _remap_words(old_words, remap)
    if mapped is None:
        raise CorruptEncodingError(f"{what}: base tensor has more than {MAX_CODEBOOK} values")
    return _byte_view(mapped)
