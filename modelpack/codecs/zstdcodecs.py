"""The two general-purpose codecs: ``full`` (zstd) and ``bytedelta`` (zstd
with the old model as a raw-content dictionary, i.e. ``--patch-from``).

Both make a window that covers the whole file and turn on long-distance
matching, so a match anywhere in the base (or earlier in the file) can be
used. Decoding is bounded: the output size comes from the signed target
length, and the window the decoder will accept is capped.
"""

from __future__ import annotations

import zstandard

from modelpack.codecs.container import CorruptEncodingError

FULL_LEVEL = 22  # --ultra -22: on these models it beats -19 by a few percent and decodes as fast
DELTA_LEVEL = 19
MAX_WINDOW_LOG = 30  # 1 GiB: far above any model here; bounds the decoder's window allocation


def _window_log(size: int) -> int:
    return max(20, min(MAX_WINDOW_LOG, (max(size, 1) - 1).bit_length()))


def _params(level: int, size: int) -> zstandard.ZstdCompressionParameters:
    return zstandard.ZstdCompressionParameters.from_level(
        level,
        source_size=size,
        window_log=_window_log(size),
        enable_ldm=True,
        write_content_size=True,
        write_checksum=False,  # the container's CRC and the signed sha256 cover this
    )


def compress(data: bytes, level: int = FULL_LEVEL) -> bytes:
    return zstandard.ZstdCompressor(compression_params=_params(level, len(data))).compress(data)


def decompress(data: bytes, size: int, what: str = "zstd stream") -> bytes:
    try:
        out = zstandard.ZstdDecompressor(max_window_size=1 << MAX_WINDOW_LOG).decompress(
            data, max_output_size=size
        )
    except zstandard.ZstdError as exc:
        raise CorruptEncodingError(f"{what} damaged: {exc}") from exc
    if len(out) != size:
        raise CorruptEncodingError(f"{what} gave {len(out)} bytes, expected {size}")
    return out


def _dict(base: bytes) -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def delta_compress(new: bytes, base: bytes, level: int = DELTA_LEVEL) -> bytes:
    """``new`` coded with ``base`` as history (zstd's patch-from)."""
    if not base:
        return compress(new, level)
    params = _params(level, max(len(new), len(base)))
    return zstandard.ZstdCompressor(dict_data=_dict(base), compression_params=params).compress(new)


def delta_decompress(data: bytes, base: bytes, size: int, what: str = "zstd delta") -> bytes:
    if not base:
        return decompress(data, size, what)
    try:
        d = zstandard.ZstdDecompressor(dict_data=_dict(base), max_window_size=1 << MAX_WINDOW_LOG)
        out = d.decompress(data, max_output_size=size)
    except zstandard.ZstdError as exc:
        raise CorruptEncodingError(f"{what} damaged: {exc}") from exc
    if len(out) != size:
        raise CorruptEncodingError(f"{what} gave {len(out)} bytes, expected {size}")
    return out


class FullCodec:
    """The model's bytes, zstd-compressed; needs no base."""

    name = "full"
    codec_id = 1
    needs_base = False

    def encode(self, new: bytes, base: bytes | None = None) -> bytes:
        return compress(new)

    def decode(self, payload: bytes, base: bytes | None, target_length: int) -> bytes:
        return decompress(payload, target_length, "full (zstd) payload")


class ByteDeltaCodec:
    """zstd with the old model as a raw-content dictionary."""

    name = "bytedelta"
    codec_id = 2
    needs_base = True

    def encode(self, new: bytes, base: bytes | None) -> bytes:
        if base is None:
            raise ValueError("bytedelta needs a base")
        return delta_compress(new, base)

    def decode(self, payload: bytes, base: bytes | None, target_length: int) -> bytes:
        if base is None:
            raise ValueError("bytedelta needs a base")
        return delta_decompress(payload, base, target_length, "bytedelta payload")
