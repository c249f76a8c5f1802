"""Every codec rebuilds the exact bytes, for random models and random edits;
damaged payloads fail with a CodecError, never anything else."""

from __future__ import annotations

import zlib

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelpack import codecs
from modelpack.codecs import container
from tests.codecs.codectest_models import codebook_tensor, model_bytes

ALL = ["full", "bytedelta", "tensordelta", "deepcompression"]
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KINDS = ["dense", "codebook", "int8", "float16", "zeros"]


def _tensor(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    if kind == "dense":
        return rng.normal(0, 0.1, size=size).astype(np.float32)
    if kind == "codebook":
        return codebook_tensor(
            rng, (size,), k=int(rng.integers(1, 257)), sparsity=float(rng.random())
        )
    if kind == "int8":
        return rng.integers(-128, 128, size=size).astype(np.int8)
    if kind == "float16":
        return rng.normal(size=size).astype(np.float16)
    return np.zeros(size, dtype=np.float32)


def _edit(rng: np.random.Generator, t: np.ndarray, how: str) -> np.ndarray:
    if how == "same":
        return t
    if how == "perturb" and t.dtype == np.float32:
        return (t * (1 + rng.normal(0, 1e-3, size=t.shape))).astype(np.float32)
    if how == "remap" and t.dtype == np.float32:
        values, inverse = np.unique(t, return_inverse=True)
        if values.size <= 256:
            return (
                (values * np.float32(1.01) + np.float32(1e-4))[inverse.reshape(-1)]
                .reshape(t.shape)
                .astype(np.float32)
            )
    if how == "some":
        out = t.copy()
        out[rng.random(t.shape) < 0.1] = 0
        return out
    if how == "resize":
        return _tensor(rng, "dense", max(1, t.size // 2))
    return t[::-1].copy()


@st.composite
def model_pairs(draw: st.DrawFn) -> tuple[bytes, bytes]:
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(0, 5))
    old: dict[str, np.ndarray] = {}
    for i in range(n):
        old[f"t{i}"] = _tensor(rng, draw(st.sampled_from(KINDS)), draw(st.integers(1, 3000)))
    new: dict[str, np.ndarray] = {}
    for name, t in old.items():
        if draw(st.booleans()) or not new:
            new[name] = _edit(
                rng,
                t,
                draw(st.sampled_from(["same", "perturb", "remap", "some", "resize", "flip"])),
            )
    if draw(st.booleans()):
        new["added"] = _tensor(rng, draw(st.sampled_from(KINDS)), draw(st.integers(1, 500)))
    return model_bytes(old, doc="v1"), model_bytes(
        new, doc=draw(st.sampled_from(["v1", "v2", "v2 retrained"]))
    )


@SETTINGS
@given(model_pairs())
def test_every_codec_rebuilds_exact_bytes(pair: tuple[bytes, bytes]) -> None:
    old, new = pair
    for codec in ALL:
        blob = codecs.encode(codec, new, old)
        assert codecs.decode(blob, old) == new, codec


@SETTINGS
@given(st.binary(max_size=5000), st.binary(max_size=5000))
def test_byte_codecs_work_on_any_bytes(old: bytes, new: bytes) -> None:
    for codec in ["full", "bytedelta"]:
        assert codecs.decode(codecs.encode(codec, new, old), old) == new


def _recrc(blob: bytes, payload: bytes) -> bytes:
    """Re-seal a tampered payload with a matching CRC, so the codec's own
    checks (not the CRC) must catch it."""
    h = codecs.read_header(blob)
    header = container.Header(
        h.codec_id,
        h.target_length,
        h.target_sha256,
        h.base_sha256,
        len(payload),
        zlib.crc32(payload),
    )
    return header.pack() + payload


@SETTINGS
@given(model_pairs(), st.sampled_from(ALL), st.data())
def test_tampered_payload_with_valid_crc_fails_cleanly(
    pair: tuple[bytes, bytes], codec: str, data: st.DataObject
) -> None:
    old, new = pair
    blob = codecs.encode(codec, new, old)
    payload = bytearray(blob[container.HEADER_SIZE :])
    how = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if how == "flip" and payload:
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] ^= data.draw(st.integers(1, 255))
    elif how == "truncate":
        del payload[data.draw(st.integers(0, max(0, len(payload) - 1))) :]
    else:
        payload += data.draw(st.binary(min_size=1, max_size=8))
    tampered = _recrc(blob, bytes(payload))
    try:
        rebuilt = codecs.decode(tampered, old)
    except codecs.CodecError:
        return
    # A change that does not alter the rebuilt bytes (e.g. an unused bit) is harmless.
    assert rebuilt == new


def test_best_encoding_is_sorted_skips_model_codecs_for_non_onnx_and_round_trips() -> None:
    rng = np.random.default_rng(5)
    old = model_bytes(
        {"w": codebook_tensor(rng, (64, 32)), "h": rng.normal(size=(10, 64)).astype(np.float32)}
    )
    t = dict(
        w=codebook_tensor(np.random.default_rng(5), (64, 32)),
        h=rng.normal(size=(10, 64)).astype(np.float32),
    )
    new = model_bytes(t)
    choices = codecs.best_encoding(new, {"v1": old})
    assert [c.size for c in choices] == sorted(c.size for c in choices)
    assert {c.codec for c in choices} == {"full", "bytedelta", "tensordelta", "deepcompression"}
    # Only the head changed: the tensor delta sends just that tensor.
    assert choices[0].codec == "tensordelta" and choices[0].base_id == "v1"
    assert codecs.decode(choices[0].blob, old) == new
    text = b"not a model " * 100
    assert {c.codec for c in codecs.best_encoding(text, {"v1": b"also not"})} == {
        "full",
        "bytedelta",
    }


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.booleans(), st.booleans(), st.floats(0.0, 0.2))
def test_int8_release_is_coded_against_the_float_weights_it_quantises(
    seed: int, signed: bool, per_channel: bool, noise: float
) -> None:
    rng = np.random.default_rng(seed)
    channels = int(rng.integers(1, 17))
    w = rng.normal(0, 0.1, size=(channels, int(rng.integers(1, 300)))).astype(np.float32)
    top = np.abs(w).max(axis=1, keepdims=True) if per_channel else np.abs(w).max(keepdims=True)
    # A real quantiser's range: int8 symmetric [-top, top] over ±127; uint8 with zero
    # point 128 covering the same [-top, top] (so nothing is clipped by construction).
    scale = (top / 127).astype(np.float32)
    zp = 0 if signed else 128
    lo, hi = (-128, 127) if signed else (0, 255)
    q = np.clip(np.rint(w / scale) + zp, lo, hi)
    flip = rng.random(w.shape) < noise  # a quantiser that rounds differently now and then
    q[flip] = np.clip(q[flip] + 1, lo, hi)
    q = q.astype(np.int8 if signed else np.uint8)
    old = model_bytes({"w": w, "b": np.ones(3, np.float32)})
    new = model_bytes({"w_scale": scale.reshape(-1), "w_quantized": q, "b": np.ones(3, np.float32)})
    blob = codecs.encode("tensordelta", new, old)
    assert codecs.decode(blob, old) == new
    if noise == 0 and w.size > 1000:
        assert len(blob) < 400 + 8 * channels + q.size // 20  # predicted, not sent
