"""Encodings that rebuild a model's exact bytes: full, byte delta, tensor
delta and Deep Compression, in one self-describing container.

    blob = encode("tensordelta", new, base)      # header + payload
    assert decode(blob, base) == new             # checks CRC, then sha256
    choices = best_encoding(new, {"1.0.0": old}) # smallest first

Every ``decode`` checks, before the codec runs, that the payload is intact
(and, given the digest the caller holds for the base, that it is the base
the encoding was made against); after it runs, that the rebuilt bytes have
the promised sha256 and length. The base itself is hashed only when the
rebuild fails (a wrong or damaged base can never rebuild the target's
sha256), so that the error says "wrong base". Each failure is a
``CodecError`` subclass whose message names what mismatched.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Protocol

from modelpack.codecs.container import (
    HEADER_SIZE,
    BaseMismatchError,
    CodecError,
    CorruptEncodingError,
    Header,
    TargetMismatchError,
    UnknownCodecError,
    check_base,
    check_target,
    open_payload,
    read_header,
    wrap,
)
from modelpack.codecs.onnxwire import NotOnnxError
from modelpack.codecs.tensordelta import DeepCompressionCodec, TensorDeltaCodec
from modelpack.codecs.zstdcodecs import ByteDeltaCodec, FullCodec

log = logging.getLogger(__name__)

__all__ = [
    "CODECS",
    "HEADER_SIZE",
    "BaseMismatchError",
    "Codec",
    "CodecError",
    "CorruptEncodingError",
    "Encoding",
    "Header",
    "TargetMismatchError",
    "UnknownCodecError",
    "best_encoding",
    "decodable",
    "decode",
    "encode",
    "read_header",
]


class Codec(Protocol):
    name: str
    codec_id: int
    needs_base: bool

    def encode(self, new: bytes, base: bytes | None) -> bytes: ...

    def decode(self, payload: bytes, base: bytes | None, target_length: int) -> bytes: ...


CODECS: dict[str, Codec] = {
    c.name: c for c in (FullCodec(), ByteDeltaCodec(), TensorDeltaCodec(), DeepCompressionCodec())
}
_BY_ID: dict[int, Codec] = {c.codec_id: c for c in CODECS.values()}


def codec_name(codec_id: int) -> str:
    codec = _BY_ID.get(codec_id)
    return codec.name if codec else f"unknown codec {codec_id}"


def encode(codec: str, new: bytes, base: bytes | None = None) -> bytes:
    """Encode ``new`` with the named codec (against ``base`` for delta codecs)."""
    c = CODECS[codec]
    if c.needs_base and base is None:
        raise ValueError(f"codec {codec} needs a base model")
    use_base = base if c.needs_base else None
    return wrap(c.codec_id, c.encode(new, use_base), new, use_base)


def decode(
    blob: bytes,
    base: bytes | None = None,
    max_target_length: int | None = None,
    base_sha256: bytes | None = None,
) -> bytes:
    """Rebuild the exact target bytes from an encoding, or raise ``CodecError``.

    ``max_target_length`` (e.g. the TUF-signed length) refuses an encoding
    that would rebuild more than that before anything is allocated.
    ``base_sha256``: the digest of ``base`` the caller already holds; a delta
    made against another base is refused before decoding. Either way the base
    is hashed only if the rebuild fails, to tell a wrong base (a
    ``BaseMismatchError``) from a damaged encoding.
    """
    header, payload = open_payload(blob, base, max_target_length, base_sha256)
    codec = _BY_ID.get(header.codec_id)
    if codec is None:
        raise UnknownCodecError(
            f"encoding uses codec id {header.codec_id}, which this build does not know"
        )
    use_base = base if header.base_sha256 is not None else None
    try:
        try:
            rebuilt = codec.decode(payload, use_base, header.target_length)
        except CodecError:
            raise
        except (ValueError, IndexError, OverflowError, MemoryError) as exc:
            # Defence in depth: the codecs check their inputs, but a payload that
            # passes its CRC and still trips a library must fail as corrupt.
            raise CorruptEncodingError(f"{codec.name} payload could not be decoded: {exc}") from exc
        check_target(header, rebuilt)
    except Exception as exc:
        # Not the target: a wrong base is the likeliest cause, and the one to name.
        try:
            check_base(header, use_base)
        except BaseMismatchError as wrong:
            raise wrong from exc
        raise
    return rebuilt


def _probe_model() -> bytes:
    """The smallest serialised ONNX ModelProto the model codecs accept: a graph
    with one 4-element float initializer (written by hand: no onnx needed)."""
    tensor = b"\x08\x04\x10\x01\x42\x01w\x4a\x10" + bytes(range(16))
    graph = b"\x2a" + bytes((len(tensor),)) + tensor
    return b"\x3a" + bytes((len(graph),)) + graph


@functools.cache
def decodable() -> tuple[str, ...]:
    """The codecs whose decoder runs in this process, each proved by decoding a
    small encoding of its own: what the agent tells the registry at check-in. A
    decoder whose library is missing (or broken) on this CPU is left out, with
    the reason logged, instead of failing mid-update."""
    model = _probe_model()
    base = model[:-1] + b"\x7f"
    ok = []
    for name, c in CODECS.items():
        use_base = base if c.needs_base else None
        try:
            if decode(encode(name, model, use_base), use_base) == model:
                ok.append(name)
        except Exception as exc:
            log.warning("codec %s cannot decode here: %s: %s", name, type(exc).__name__, exc)
    return tuple(ok)


@dataclass(frozen=True)
class Encoding:
    """One candidate encoding of a target."""

    codec: str
    base_id: str | None  # which of the given bases it is against; None for none
    blob: bytes

    @property
    def size(self) -> int:
        return len(self.blob)


def best_encoding(
    new: bytes,
    bases: dict[str, bytes] | None = None,
    verify: bool = True,
    only: tuple[str, ...] | None = None,
) -> list[Encoding]:
    """Every applicable encoding of ``new``, smallest first.

    Tries ``full`` and ``deepcompression`` with no base, and ``bytedelta`` and
    ``tensordelta`` against each base. Model-aware codecs are skipped for
    bytes that are not ONNX. With ``verify`` each candidate is decoded once
    and compared, so a codec bug can never ship a wrong encoding. ``only``
    restricts the codecs tried.
    """
    out: list[Encoding] = []
    jobs: list[tuple[str, str | None, bytes | None]] = [
        ("full", None, None),
        ("deepcompression", None, None),
    ]
    for bid, b in (bases or {}).items():
        jobs += [("bytedelta", bid, b), ("tensordelta", bid, b)]
    for codec, base_id, base in jobs:
        if only is not None and codec not in only:
            continue
        try:
            blob = encode(codec, new, base)
        except NotOnnxError as exc:
            log.info("%s skipped: %s", codec, exc)
            continue
        if verify and decode(blob, base) != new:  # pragma: no cover - a codec bug
            raise AssertionError(f"{codec} did not round-trip")
        out.append(Encoding(codec, base_id, blob))
    out.sort(key=lambda e: e.size)
    return out
