"""Byte planes and gap streams: the layouts shared by the tensor modes.

A tensor's elements (or their differences from a base) are split into byte
planes, most significant first, and each plane is entropy-coded on its own:
float32 sign/exponent bytes and mantissa bytes have very different
statistics. Zeros can be left out of the planes and their positions sent once
as a gap stream, or taken from the base tensor's non-zero pattern.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import zstandard

from modelpack.codecs.container import CorruptEncodingError
from modelpack.codecs.entropy import decode_stream, decompressor, encode_stream
from modelpack.codecs.wire import Reader, Writer

# Element size -> the little-endian unsigned word of that size (all dtypes, so
# every use picks one numpy overload).
WORD: dict[int, np.dtype[np.unsignedinteger[Any]]] = {
    1: np.dtype(np.uint8),
    2: np.dtype("<u2"),
    4: np.dtype("<u4"),
    8: np.dtype("<u8"),
}
GAP_ESCAPE = 255


def as_words(data: bytes | memoryview, elem: int) -> np.ndarray:
    """The elements as unsigned words: a view, or an aligned copy when the
    bytes do not start on a word boundary (a tensor inside an ONNX file
    usually does not), since numpy's loops on unaligned words run several
    times slower than one copy."""
    words = np.frombuffer(data, dtype=WORD[elem])
    return words if words.flags.aligned else words.copy()


def encode_plain_planes(words: np.ndarray, elem: int, w: Writer) -> None:
    planes = words.view(np.uint8).reshape(-1, elem)
    for k in range(elem - 1, -1, -1):  # most significant plane first
        w.raw(encode_stream(planes[:, k]))


def decode_plain_planes(r: Reader, n: int, elem: int, what: str) -> np.ndarray:
    planes = np.empty((n, elem), dtype=np.uint8)
    for k in range(elem - 1, -1, -1):
        planes[:, k] = decode_stream(r, n, f"{what} plane {k}")
    return planes.reshape(-1).view(WORD[elem])


def encode_gaps(positions: np.ndarray, w: Writer) -> None:
    """Sorted positions as a gap stream (zero-run lengths, 255 = escape)
    plus a zstd blob of the long gaps."""
    gaps = np.diff(positions, prepend=-1) - 1
    w.raw(encode_stream(np.minimum(gaps, GAP_ESCAPE).astype(np.uint8)))
    extra = Writer()
    for g in gaps[gaps >= GAP_ESCAPE].tolist():
        extra.varint(g - GAP_ESCAPE)
    w.blob(zstandard.ZstdCompressor(level=19).compress(extra.getvalue()))


def decode_gaps(r: Reader, count: int, n: int, what: str) -> np.ndarray:
    gaps = decode_stream(r, count, f"{what} gaps").astype(np.int64)
    extra_z = r.blob(f"{what} long gaps")
    try:
        extra = decompressor().decompress(extra_z, max_output_size=10 * count + 16)
    except zstandard.ZstdError as exc:
        raise CorruptEncodingError(f"{what}: long-gap stream damaged ({exc})") from exc
    er = Reader(extra, f"{what} long gaps")
    for i in np.flatnonzero(gaps == GAP_ESCAPE).tolist():
        gaps[i] += er.varint("gap", n)
    er.expect_end()
    if gaps.size != count:
        raise CorruptEncodingError(f"{what}: {gaps.size} gaps, expected {count}")
    pos = np.cumsum(gaps + 1) - 1
    if count and int(pos[-1]) >= n:
        raise CorruptEncodingError(f"{what}: positions run past the {n} elements")
    return pos


# Zero patterns as bitmaps: a packed bit per element, or, for 3×3 kernels,
# each kernel's first 8 mask bits as one byte (so zstd's Huffman sees the
# kernel's pattern) and the 9th bits packed apart. Measured on the real
# SqueezeNet: per layer the smallest of gaps and these saves ~3 KB.
BITMAP, KERNEL9 = 2, 3


def encode_mask(mask: np.ndarray, layout: int) -> bytes:
    w = Writer()
    if layout == BITMAP:
        w.raw(encode_stream(np.packbits(mask)))
    else:
        k = mask.reshape(-1, 9)
        w.raw(encode_stream(np.packbits(k[:, :8], axis=1, bitorder="little").reshape(-1)))
        w.raw(encode_stream(np.packbits(k[:, 8])))
    return w.getvalue()


def decode_mask(r: Reader, layout: int, count: int, n: int, what: str) -> np.ndarray:
    """Positions of the ``count`` set bits of an ``n``-element mask."""
    if layout == BITMAP:
        packed = decode_stream(r, (n + 7) // 8, f"{what} mask")
        if packed.size != (n + 7) // 8:
            raise CorruptEncodingError(
                f"{what}: mask of {packed.size} bytes, expected {(n + 7) // 8}"
            )
        mask = np.unpackbits(packed, count=n).view(bool)  # 0/1 bytes: a bool view, no cast
    else:
        if n % 9:
            raise CorruptEncodingError(
                f"{what}: kernel mask layout for {n} elements, not whole 3x3 kernels"
            )
        lo = decode_stream(r, n // 9, f"{what} kernel masks")
        hi = decode_stream(r, (n // 9 + 7) // 8, f"{what} kernel 9th bits")
        if lo.size != n // 9 or hi.size != (n // 9 + 7) // 8:
            raise CorruptEncodingError(f"{what}: kernel mask streams do not fit {n} elements")
        m = n // 9
        bits = np.empty((m, 9), dtype=np.uint8)
        bits[:, :8] = np.unpackbits(lo, bitorder="little").reshape(m, 8)
        bits[:, 8] = np.unpackbits(hi, count=m)
        mask = bits.reshape(-1).view(bool)
    pos = np.flatnonzero(mask)
    if pos.size != count:
        raise CorruptEncodingError(f"{what}: mask has {pos.size} set bits, expected {count}")
    return pos


# Plane layouts: all elements; only the non-zero ones (positions as gaps);
# only non-zero ones, which lie where the base tensor is non-zero (a flag per
# such position: free when a fine-tune kept the pruning mask).
_DENSE, _SPARSE, _BASE_MASK = 0, 1, 2


def encode_planes(words: np.ndarray, elem: int, w: Writer, old: np.ndarray | None = None) -> None:
    nz = np.flatnonzero(words)
    options: list[bytes] = []
    dense = Writer()
    dense.u8(_DENSE)
    encode_plain_planes(words, elem, dense)
    options.append(dense.getvalue())
    if nz.size < 0.75 * words.size:
        sparse = Writer()
        sparse.u8(_SPARSE)
        sparse.varint(nz.size)
        encode_gaps(nz, sparse)
        encode_plain_planes(words[nz], elem, sparse)
        options.append(sparse.getvalue())
    if old is not None:
        support = np.flatnonzero(old)
        if support.size < words.size and not np.any(words[old == 0]):
            masked = Writer()
            masked.u8(_BASE_MASK)
            flags = (words[support] != 0).astype(np.uint8)
            masked.raw(encode_stream(flags))
            encode_plain_planes(words[support[flags.astype(bool)]], elem, masked)
            options.append(masked.getvalue())
    w.raw(min(options, key=len))


def decode_planes(
    r: Reader,
    n: int,
    elem: int,
    what: str,
    old: np.ndarray | None = None,
    combine: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """The words a plane record codes; with ``combine`` (a delta record),
    ``combine(old, those words)`` instead, computed only where they are
    non-zero and ``old`` elsewhere (``combine(o, 0)`` is ``o``): no full-size
    zero array to scatter into, no full-size temporaries. ``combine`` may
    overwrite its second argument."""
    layout = r.u8(f"{what} plane layout")
    if layout == _DENSE:
        d = decode_plain_planes(r, n, elem, what)
        return d if combine is None or old is None else combine(old, d)

    def place(pos: np.ndarray, values: np.ndarray) -> np.ndarray:
        if combine is None or old is None:
            out = np.zeros(n, dtype=WORD[elem])
            out[pos] = values
            return out
        out = old.copy()
        out[pos] = combine(old.take(pos), values)
        return out

    if layout == _SPARSE:
        count = r.varint(f"{what} non-zero count", n)
        pos = decode_gaps(r, count, n, what)
        return place(pos, decode_plain_planes(r, pos.size, elem, what))
    if layout != _BASE_MASK or old is None:
        raise CorruptEncodingError(f"{what}: unknown plane layout {layout}")
    # Positions, not boolean masks: numpy's boolean-mask assignment runs
    # several times slower on a pruned tensor's scattered non-zeros than
    # flatnonzero of a bool array plus an index assignment (all SUB records
    # of a dense fine-tune of SqueezeNet: 6.1 vs 1.9 ms), and flatnonzero of
    # the words themselves is as slow as the mask assignment.
    support = np.flatnonzero(old != 0)
    n_support = support.size
    flags = decode_stream(r, n_support, f"{what} change flags")
    if flags.size != n_support or (flags.size and int(flags.max()) > 1):
        raise CorruptEncodingError(f"{what}: change flags do not fit the base tensor")
    changed = flags.view(bool)
    n_changed = int(np.count_nonzero(changed))
    values = decode_plain_planes(r, n_changed, elem, what)
    return place(support if n_changed == n_support else support[np.flatnonzero(changed)], values)


def xor_onto(base: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``base ^ d``, in ``d``."""
    np.bitwise_xor(d, base, out=d)
    return d


def add_unzigzag_onto(base: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``base + unzigzag(z)`` (wrapping), in ``z``, with one temporary."""
    one = z.dtype.type(1)
    sign = z & one
    np.negative(sign, out=sign)  # all ones where odd: unsigned negation wraps
    z >>= one
    z ^= sign
    z += base
    return z


def zigzag(d: np.ndarray, elem: int) -> np.ndarray:
    bits = 8 * elem
    signed = d.view(d.dtype.str.replace("u", "i"))
    return ((d << d.dtype.type(1)) ^ (signed >> (bits - 1)).view(d.dtype)).astype(d.dtype)
