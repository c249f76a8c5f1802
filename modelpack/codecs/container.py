"""The self-describing envelope around every encoding.

An encoding travels as one header followed by the codec's payload. The header
names the codec and format version, the exact base it was made against (its
sha256) and the exact target it rebuilds (sha256 and length), and carries a
CRC of the payload. That lets a decoder refuse, *before* doing any work, a
patch meant for another base, a truncated or corrupted download, or a codec it
does not know, and name which of these went wrong. The CRC only catches
accidents; the target sha256 (which TUF signs separately) is what proves the
rebuilt bytes.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass

MAGIC = b"SQZP"
FORMAT_VERSION = 1
NO_BASE = bytes(32)

# magic, version, codec id, flags, reserved, target length, target sha256,
# base sha256, payload length, payload crc32, header crc32
_LAYOUT = struct.Struct("<4sBBBBQ32s32sQI")
_HCRC = struct.Struct("<I")
HEADER_SIZE = _LAYOUT.size + _HCRC.size
_FLAG_HAS_BASE = 0x01


class CodecError(ValueError):
    """An encoding cannot be decoded; the message says what and where."""


class CorruptEncodingError(CodecError):
    """The encoding's bytes are damaged, truncated or not an encoding at all."""


class BaseMismatchError(CodecError):
    """The encoding was made against a different base than the one given."""


class TargetMismatchError(CodecError):
    """The rebuilt bytes are not the target the header promised."""


class UnknownCodecError(CodecError):
    """The header names a codec or format version this build does not know."""


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@dataclass(frozen=True)
class Header:
    """What an encoding says about itself."""

    codec_id: int
    target_length: int
    target_sha256: bytes
    base_sha256: bytes | None  # None: rebuilds without any base
    payload_length: int
    payload_crc32: int
    version: int = FORMAT_VERSION

    def pack(self) -> bytes:
        flags = _FLAG_HAS_BASE if self.base_sha256 is not None else 0
        body = _LAYOUT.pack(
            MAGIC,
            self.version,
            self.codec_id,
            flags,
            0,
            self.target_length,
            self.target_sha256,
            self.base_sha256 if self.base_sha256 is not None else NO_BASE,
            self.payload_length,
            self.payload_crc32,
        )
        return body + _HCRC.pack(zlib.crc32(body))


def wrap(codec_id: int, payload: bytes, target: bytes, base: bytes | None) -> bytes:
    """Header + payload for an encoding of ``target`` (made against ``base``)."""
    header = Header(
        codec_id=codec_id,
        target_length=len(target),
        target_sha256=sha256(target),
        base_sha256=sha256(base) if base is not None else None,
        payload_length=len(payload),
        payload_crc32=zlib.crc32(payload),
    )
    return header.pack() + payload


def read_header(blob: bytes) -> Header:
    """Parse and check the header alone (cheap: no payload pass)."""
    if len(blob) < HEADER_SIZE:
        raise CorruptEncodingError(
            f"encoding truncated: {len(blob)} bytes, shorter than the {HEADER_SIZE}-byte header"
        )
    if blob[:4] != MAGIC:
        raise CorruptEncodingError(
            f"not a squeeze-ota encoding: magic {blob[:4]!r}, expected {MAGIC!r}"
        )
    body = blob[: _LAYOUT.size]
    (stored_crc,) = _HCRC.unpack_from(blob, _LAYOUT.size)
    if zlib.crc32(body) != stored_crc:
        raise CorruptEncodingError("encoding header corrupted: its CRC does not match")
    _, version, codec_id, flags, _, tlen, tsha, bsha, plen, pcrc = _LAYOUT.unpack(body)
    if version != FORMAT_VERSION:
        raise UnknownCodecError(
            f"encoding format version {version}; this build reads version {FORMAT_VERSION}"
        )
    return Header(
        codec_id=codec_id,
        target_length=tlen,
        target_sha256=tsha,
        base_sha256=bsha if flags & _FLAG_HAS_BASE else None,
        payload_length=plen,
        payload_crc32=pcrc,
        version=version,
    )


def open_payload(
    blob: bytes,
    base: bytes | None,
    max_target_length: int | None = None,
    base_sha256: bytes | None = None,
) -> tuple[Header, bytes]:
    """Check the header and the payload against its CRC; return the header and
    the payload. Raises a ``CodecError`` subclass naming the mismatch.

    The base itself is not hashed here: a wrong or damaged base cannot
    rebuild the target's sha256, so ``decode`` hashes it (``check_base``) only
    when the rebuild fails, to say so. ``base_sha256``, a digest of ``base``
    the caller already holds, refuses a delta made against another base
    before any work."""
    header = read_header(blob)
    if max_target_length is not None and header.target_length > max_target_length:
        raise CorruptEncodingError(
            f"encoding rebuilds {header.target_length} bytes, more than the allowed {max_target_length}"
        )
    if header.base_sha256 is not None:
        if base is None:
            raise BaseMismatchError(
                f"encoding is a delta from base sha256 {header.base_sha256.hex()[:16]}…, but no base was given"
            )
        if base_sha256 is not None and base_sha256 != header.base_sha256:
            raise BaseMismatchError(
                f"wrong base: encoding was made against sha256 {header.base_sha256.hex()[:16]}…, "
                f"the given base is sha256 {base_sha256.hex()[:16]}… (as the caller knows it)"
            )
    payload = blob[HEADER_SIZE:]
    if len(payload) != header.payload_length:
        raise CorruptEncodingError(
            f"encoding payload is {len(payload)} bytes, header says {header.payload_length} "
            f"({'truncated' if len(payload) < header.payload_length else 'trailing bytes'})"
        )
    if zlib.crc32(payload) != header.payload_crc32:
        raise CorruptEncodingError("encoding payload corrupted: its CRC does not match the header")
    return header, payload


def check_base(header: Header, base: bytes | None) -> None:
    """Raise ``BaseMismatchError`` if ``base`` is not the one the encoding was
    made against (hashes the whole base: the slow path, for diagnosis)."""
    if header.base_sha256 is None or base is None:
        return
    got = sha256(base)
    if got != header.base_sha256:
        raise BaseMismatchError(
            f"wrong base: encoding was made against sha256 {header.base_sha256.hex()[:16]}…, "
            f"the given base is sha256 {got.hex()[:16]}… ({len(base)} bytes)"
        )


def check_target(header: Header, rebuilt: bytes) -> None:
    if len(rebuilt) != header.target_length:
        raise TargetMismatchError(
            f"rebuilt {len(rebuilt)} bytes, the encoding promised {header.target_length}"
        )
    got = sha256(rebuilt)
    if got != header.target_sha256:
        raise TargetMismatchError(
            f"rebuilt bytes have sha256 {got.hex()[:16]}…, the encoding promised "
            f"{header.target_sha256.hex()[:16]}…"
        )
