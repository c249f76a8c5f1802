"""Entropy coding of byte streams (index, gap and byte-plane streams).

Each stream is coded with whichever is smallest: a constant run, raw bytes,
or zstd at level 19 (9 above 128 KiB, for encode time), whose literals are
Huffman-coded and which also wins where there is structure beyond order 0,
such as long runs.

Until this release the order-0 candidate was a static rANS code from the
Rust library constriction. It has no aarch64 wheel and no source package,
so it could not be installed on an aarch64 car. Measured on the real
SqueezeNet v1.0 first install, zstd -19 alone lands within 0.5 % of it; a
numpy-only interleaved rANS was built and measured too, and lost to zstd on
every stream here (its lanes' flushed states and its tables cost more than
Huffman's redundancy) while decoding several times slower, so it was not
kept. Streams written by the constriction coder (method 2) are refused with
a message saying to re-encode.
"""

from __future__ import annotations

import threading

import numpy as np
import zstandard

from modelpack.codecs.container import CorruptEncodingError
from modelpack.codecs.wire import Reader, Writer

_ZSTD_LEVEL = 19
_ZSTD_LEVEL_LARGE = 9  # streams over 128 KiB: within ~1% of 19 at a tenth of the encode time
_LARGE = 1 << 17

_CONST, _ZSTD, _LEGACY_RANS, _RAW = 0, 1, 2, 3


def encode_stream(symbols: np.ndarray) -> bytes:
    """Code a uint8 stream; the result carries its own length and method."""
    symbols = np.ascontiguousarray(symbols, dtype=np.uint8).reshape(-1)
    n = symbols.size
    head = Writer()
    head.varint(n)
    prefix = head.getvalue()
    if n == 0:
        return prefix + bytes((_CONST, 0))
    if bool((symbols == symbols[0]).all()):
        return prefix + bytes((_CONST, int(symbols[0])))
    data = symbols.tobytes()
    level = _ZSTD_LEVEL if n <= _LARGE else _ZSTD_LEVEL_LARGE
    z = zstandard.ZstdCompressor(level=level, write_content_size=False, write_checksum=False)
    candidates: list[tuple[int, bytes]] = [(_RAW, data), (_ZSTD, z.compress(data))]
    method, body = min(candidates, key=lambda c: len(c[1]))
    w = Writer()
    w.raw(prefix)
    w.u8(method)
    w.blob(body)
    return w.getvalue()


_local = threading.local()


def decompressor() -> zstandard.ZstdDecompressor:
    """This thread's plain zstd decompressor, made once: a model's ~100
    streams each made a new one, ~23 us apiece against ~1 us to reuse one
    (a one-shot ``decompress`` starts from a reset context every call)."""
    d: zstandard.ZstdDecompressor | None = getattr(_local, "dctx", None)
    if d is None:
        d = _local.dctx = zstandard.ZstdDecompressor()
    return d


def decode_stream(r: Reader, limit: int, what: str) -> np.ndarray:
    """Read one stream of at most ``limit`` symbols from ``r``. The array is
    read-only unless constant: a view of the payload or of zstd's output,
    not a copy (every caller only reads it, or copies it as it converts)."""
    n = r.varint(f"{what} length", limit)
    method = r.u8(f"{what} method")
    if method == _CONST:
        value = r.u8(f"{what} constant")
        return np.full(n, value, dtype=np.uint8)
    body = r.blob_view(f"{what} body")
    if method == _RAW:
        if len(body) != n:
            raise CorruptEncodingError(f"{what}: raw stream of {len(body)} bytes, expected {n}")
        return np.frombuffer(body, dtype=np.uint8)
    if method == _ZSTD:
        try:
            out = decompressor().decompress(body, max_output_size=n)
        except zstandard.ZstdError as exc:
            raise CorruptEncodingError(f"{what}: zstd stream damaged ({exc})") from exc
        if len(out) != n:
            raise CorruptEncodingError(f"{what}: zstd stream gave {len(out)} bytes, expected {n}")
        return np.frombuffer(out, dtype=np.uint8)
    if method == _LEGACY_RANS:
        raise CorruptEncodingError(
            f"{what}: stream coded by the retired constriction rANS coder; re-encode the version "
            "with this release (`ota pack encode` or re-publish)"
        )
    raise CorruptEncodingError(f"{what}: unknown stream method {method}")


def plane_entropy_bits(symbols: np.ndarray) -> float:
    """Empirical order-0 entropy of a stream, in bits (for bounds in reports)."""
    if symbols.size == 0:
        return 0.0
    _, counts = np.unique(symbols, return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum())
