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


def _count_hashes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Lengths of everything ``container.sha256`` hashes from now on."""
    seen: list[int] = []
    real = container.sha256

    def counting(data: bytes) -> bytes:
        seen.append(len(data))
        return real(data)

    monkeypatch.setattr(container, "sha256", counting)
    return seen


@pytest.mark.parametrize("codec", ["bytedelta", "tensordelta"])
def test_right_base_is_not_hashed_only_the_rebuilt_target(
    codec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob = codecs.encode(codec, NEW, OLD)
    seen = _count_hashes(monkeypatch)
    assert codecs.decode(blob, OLD) == NEW
    assert seen == [len(NEW)]


def test_base_digest_the_caller_holds_refuses_another_base_before_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blob = codecs.encode("tensordelta", NEW, OLD)
    ran: list[bool] = []
    monkeypatch.setattr(
        codecs.CODECS["tensordelta"], "decode", lambda *a: ran.append(True) or NEW, raising=False
    )
    seen = _count_hashes(monkeypatch)
    other = container.sha256(NEW)
    with pytest.raises(codecs.BaseMismatchError, match="wrong base") as err:
        codecs.decode(blob, OLD, base_sha256=other)
    assert other.hex()[:16] in str(err.value) and "as the caller knows it" in str(err.value)
    assert not ran and seen == [len(NEW)]  # only the test's own hash: nothing decoded or hashed


@pytest.mark.parametrize("where", ["tensor", "skeleton"])
def test_damaged_base_under_the_right_digest_is_named_wrong_base(where: str) -> None:
    """The caller's digest matches the header but the bytes it passes are damaged
    (a flipped bit in the installed file): the rebuild misses the target's
    sha256, and the base is hashed to say why."""
    w = codebook_tensor(RNG, (32, 16, 3, 3))
    old = model_bytes({"w": w, "b": RNG.normal(size=32).astype(np.float32)})
    new = model_bytes({"w": w * 1.01, "b": RNG.normal(size=32).astype(np.float32)})
    blob = codecs.encode("tensordelta", new, old)
    damaged = bytearray(old)
    damaged[len(old) // 2 if where == "tensor" else 3] ^= 0x10
    with pytest.raises(codecs.BaseMismatchError, match="wrong base") as err:
        codecs.decode(blob, bytes(damaged), base_sha256=container.sha256(old))
    assert container.sha256(bytes(damaged)).hex()[:16] in str(err.value)
    assert isinstance(err.value.__cause__, codecs.CodecError)  # what the rebuild itself hit


def test_damaged_encoding_with_the_right_base_is_not_blamed_on_the_base() -> None:
    # A forged target hash: the base is right, so the target mismatch stands.
    good = codecs.encode("tensordelta", NEW, OLD)
    header = codecs.read_header(good)
    payload = good[container.HEADER_SIZE :]
    forged = container.Header(
        header.codec_id,
        len(NEW),
        container.sha256(OLD),
        header.base_sha256,
        len(payload),
        header.payload_crc32,
    )
    with pytest.raises(codecs.TargetMismatchError, match="promised"):
        codecs.decode(forged.pack() + payload, OLD)
