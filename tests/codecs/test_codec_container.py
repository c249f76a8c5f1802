"""The envelope refuses wrong bases, damage and unknown codecs, naming which."""

from __future__ import annotations

import numpy as np
import pytest

from modelpack import codecs
from modelpack.codecs import container
from tests.codecs.codectest_models import codebook_tensor, model_bytes

RNG = np.random.default_rng(7)
OLD = model_bytes(
    {"w": codebook_tensor(RNG, (32, 16, 3, 3)), "b": RNG.normal(size=32).astype(np.float32)}
)
NEW = model_bytes(
    {"w": codebook_tensor(RNG, (32, 16, 3, 3)), "b": RNG.normal(size=32).astype(np.float32)}
)


@pytest.mark.parametrize("codec", ["bytedelta", "tensordelta"])
def test_patch_for_another_base_is_refused_naming_both_hashes(codec: str) -> None:
    blob = codecs.encode(codec, NEW, OLD)
    other = OLD[:-1] + bytes([OLD[-1] ^ 1])
    with pytest.raises(codecs.BaseMismatchError) as err:
        codecs.decode(blob, other)
    msg = str(err.value)
    assert "wrong base" in msg
    assert container.sha256(OLD).hex()[:16] in msg and container.sha256(other).hex()[:16] in msg


def test_delta_without_base_is_refused() -> None:
    blob = codecs.encode("tensordelta", NEW, OLD)
    with pytest.raises(codecs.BaseMismatchError, match="no base was given"):
        codecs.decode(blob, None)


@pytest.mark.parametrize("codec", ["full", "bytedelta", "tensordelta", "deepcompression"])
def test_flipped_payload_byte_is_caught_by_crc(codec: str) -> None:
    blob = bytearray(codecs.encode(codec, NEW, OLD))
    blob[container.HEADER_SIZE + len(blob[container.HEADER_SIZE :]) // 2] ^= 0x40
    with pytest.raises(codecs.CorruptEncodingError, match="payload corrupted"):
        codecs.decode(bytes(blob), OLD)


def test_truncated_and_trailing_bytes_are_named() -> None:
    blob = codecs.encode("full", NEW)
    with pytest.raises(codecs.CorruptEncodingError, match="truncated"):
        codecs.decode(blob[:-5])
    with pytest.raises(codecs.CorruptEncodingError, match="trailing bytes"):
        codecs.decode(blob + b"x")
    with pytest.raises(codecs.CorruptEncodingError, match="shorter than"):
        codecs.decode(blob[:10])


def test_damaged_header_and_foreign_files_are_refused() -> None:
    blob = bytearray(codecs.encode("full", NEW))
    blob[8] ^= 1  # inside the target length
    with pytest.raises(codecs.CorruptEncodingError, match="header corrupted"):
        codecs.decode(bytes(blob))
    with pytest.raises(codecs.CorruptEncodingError, match="not a squeeze-ota encoding"):
        codecs.decode(NEW)


def test_unknown_codec_id_is_refused() -> None:
    payload = b"whatever"
    blob = container.Header(
        99, len(NEW), container.sha256(NEW), None, len(payload), __import__("zlib").crc32(payload)
    ).pack()
    with pytest.raises(codecs.UnknownCodecError, match="codec id 99"):
        codecs.decode(blob + payload)


def test_target_longer_than_allowed_is_refused_before_decoding() -> None:
    blob = codecs.encode("full", NEW)
    with pytest.raises(codecs.CorruptEncodingError, match="more than the allowed"):
        codecs.decode(blob, max_target_length=len(NEW) - 1)


def test_wrong_target_hash_is_detected_after_rebuild() -> None:
    # A well-formed encoding that honestly rebuilds OLD but claims NEW's hash.
    good = codecs.encode("full", OLD)
    header = codecs.read_header(good)
    payload = good[container.HEADER_SIZE :]
    forged = container.Header(
        header.codec_id, len(OLD), container.sha256(NEW), None, len(payload), header.payload_crc32
    )
    with pytest.raises(codecs.TargetMismatchError, match="promised"):
        codecs.decode(forged.pack() + payload)
