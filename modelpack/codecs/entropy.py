"""Entropy coding of byte streams (index, gap and byte-plane streams).

Each stream is coded with whichever of these is smallest: a constant run, a
static order-0 range-ANS code (constriction's ``AnsCoder``, which lands within
a fraction of a percent of the stream's empirical entropy), or zstd (which
wins where there is structure beyond order 0, such as long runs). constriction
is used rather than a hand-written coder because its ANS is exact, fast (tens
of MB/s in Rust) and well tested; the frequency table it is driven with is
quantised here to 14 bits and sent explicitly, so encoder and decoder build
bit-identical models.
"""

from __future__ import annotations

import numpy as np
import zstandard

from modelpack.codecs.container import CorruptEncodingError
from modelpack.codecs.wire import Reader, Writer

PRECISION_BITS = 14
_TOTAL = 1 << PRECISION_BITS
_ZSTD_LEVEL = 19  # small streams
_ZSTD_LEVEL_LARGE = 9  # streams over 64 KiB: within ~1% of 19 at a tenth of the time
_LARGE = 1 << 16

_CONST, _ZSTD, _RANS, _RAW = 0, 1, 2, 3


def _quantised_freqs(counts: np.ndarray) -> np.ndarray:
    """Counts of the present symbols scaled to sum to 2**14, each at least 1."""
    n = int(counts.sum())
    freqs = np.maximum(1, np.floor(counts * (_TOTAL / n)).astype(np.int64))
    # Hand the rounding slack to (or take it from) the most frequent symbols,
    # never pushing one below 1.
    slack = _TOTAL - int(freqs.sum())
    order = np.argsort(-counts, kind="stable")
    i = 0
    while slack != 0:
        j = order[i % order.size]
        if slack > 0:
            freqs[j] += 1
            slack -= 1
        elif freqs[j] > 1:
            freqs[j] -= 1
            slack += 1
        i += 1
    return freqs


def _model(freqs: np.ndarray):  # -> constriction Categorical
    import constriction

    return constriction.stream.model.Categorical(freqs.astype(np.float64) / _TOTAL, perfect=False)


def _rans_encode(symbols: np.ndarray) -> bytes | None:
    import constriction

    present, inverse, counts = np.unique(symbols, return_inverse=True, return_counts=True)
    if present.size < 2:
        return None
    freqs = _quantised_freqs(counts)
    w = Writer()
    bitmap = np.zeros(256, dtype=bool)
    bitmap[present] = True
    w.raw(np.packbits(bitmap).tobytes())
    for f in freqs.tolist():
        w.varint(f - 1)
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(inverse.astype(np.int32).reshape(-1), _model(freqs))
    words = coder.get_compressed().astype("<u4")
    w.raw(words.tobytes())
    return w.getvalue()


def _rans_decode(r: Reader, n: int, size: int) -> np.ndarray:
    import constriction

    start = r.pos
    bitmap = np.unpackbits(np.frombuffer(r.raw(32, "rANS symbol set"), dtype=np.uint8)).astype(bool)
    present = np.flatnonzero(bitmap).astype(np.uint8)
    if present.size < 2:
        raise CorruptEncodingError("rANS stream: fewer than two symbols in its table")
    freqs = np.array([r.varint("rANS frequency", _TOTAL) + 1 for _ in range(present.size)], dtype=np.int64)
    if int(freqs.sum()) != _TOTAL:
        raise CorruptEncodingError(f"rANS stream: frequencies sum to {int(freqs.sum())}, not {_TOTAL}")
    nbytes = size - (r.pos - start)
    if nbytes < 0 or nbytes % 4:
        raise CorruptEncodingError(f"rANS stream: {nbytes} bytes of code words is not a whole number of words")
    words = np.frombuffer(r.raw(nbytes, "rANS words"), dtype="<u4").astype(np.uint32)
    coder = constriction.stream.stack.AnsCoder(words)
    ranks = np.asarray(coder.decode(_model(freqs), n))
    if ranks.size != n or (ranks.size and (ranks.min() < 0 or ranks.max() >= present.size)):
        raise CorruptEncodingError("rANS stream: decoded symbols out of range")
    return present[ranks]


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
    candidates: list[tuple[int, bytes]] = [(_RAW, data)]
    level = _ZSTD_LEVEL if n <= _LARGE else _ZSTD_LEVEL_LARGE
    z = zstandard.ZstdCompressor(level=level, write_content_size=False, write_checksum=False)
    candidates.append((_ZSTD, z.compress(data)))
    rans = _rans_encode(symbols)
    if rans is not None:
        candidates.append((_RANS, rans))
    method, body = min(candidates, key=lambda c: len(c[1]))
    w = Writer()
    w.raw(prefix)
    w.u8(method)
    w.blob(body)
    return w.getvalue()


def decode_stream(r: Reader, limit: int, what: str) -> np.ndarray:
    """Read one stream of at most ``limit`` symbols from ``r``."""
    n = r.varint(f"{what} length", limit)
    method = r.u8(f"{what} method")
    if method == _CONST:
        value = r.u8(f"{what} constant")
        return np.full(n, value, dtype=np.uint8)
    body = r.blob(f"{what} body")
    if method == _RAW:
        if len(body) != n:
            raise CorruptEncodingError(f"{what}: raw stream of {len(body)} bytes, expected {n}")
        return np.frombuffer(body, dtype=np.uint8).copy()
    if method == _ZSTD:
        try:
            out = zstandard.ZstdDecompressor().decompress(body, max_output_size=n)
        except zstandard.ZstdError as exc:
            raise CorruptEncodingError(f"{what}: zstd stream damaged ({exc})") from exc
        if len(out) != n:
            raise CorruptEncodingError(f"{what}: zstd stream gave {len(out)} bytes, expected {n}")
        return np.frombuffer(out, dtype=np.uint8).copy()
    if method == _RANS:
        return _rans_decode(Reader(body, what), n, len(body))
    raise CorruptEncodingError(f"{what}: unknown stream method {method}")


def plane_entropy_bits(symbols: np.ndarray) -> float:
    """Empirical order-0 entropy of a stream, in bits (for bounds in reports)."""
    if symbols.size == 0:
        return 0.0
    _, counts = np.unique(symbols, return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum())
