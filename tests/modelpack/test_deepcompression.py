"""The Deep Compression .net codec: exact decode, byte-exact re-encode, clear errors."""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import pytest

from modelpack import deepcompression as dc


@pytest.fixture(scope="module")
def raw() -> bytes:
    return dc.SHIPPED_PATH.read_bytes()


@pytest.fixture(scope="module")
def layers(raw: bytes) -> list[dc.DCLayer]:
    return dc.parse(raw)


def test_shipped_file_is_the_released_one(raw: bytes) -> None:
    assert len(raw) == 675_763
    assert hashlib.sha256(raw).hexdigest() == dc.SHIPPED_SHA256
    assert dc.SHIPPED_SHA256 == "e4ab6960ae8cd81505e1c2136921201507e930966c53deaf15862a395b3a3261"


def test_decode_gives_squeezenet_shapes_params_and_sparsity(layers: list[dc.DCLayer]) -> None:
    tensors = dc.decode_tensors(layers)
    names = [t.name for t in tensors]
    assert names[:4] == ["conv1", "fire2/squeeze1x1", "fire2/expand1x1", "fire2/expand3x3"]
    assert names[-1] == "conv10" and len(names) == 26
    shapes = {t.name: t.weight.shape for t in tensors}
    assert shapes["conv1"] == (96, 3, 7, 7)
    assert shapes["fire9/expand3x3"] == (256, 64, 3, 3)
    assert shapes["conv10"] == (1000, 512, 1, 1)
    total = sum(t.weight.size for t in tensors)
    zeros = sum(int((t.weight == 0).sum()) for t in tensors)
    assert total == 1_244_448
    assert 0.65 < zeros / total < 0.67
    for t in tensors:
        assert t.weight.dtype == np.float32 and t.bias.shape == (t.weight.shape[0],)
        assert np.all(np.isfinite(t.weight))


def test_decoded_values_come_from_the_codebook(layers: list[dc.DCLayer]) -> None:
    # Exactness: each non-zero weight is bit-for-bit one of the layer's codebook entries.
    for layer in layers:
        w = layer.weights()
        assert layer.codebook[0] == 0.0
        assert np.isin(w[w != 0], layer.codebook).all()
        assert np.count_nonzero(w) <= layer.n_stored


def test_structured_round_trip_is_byte_exact(raw: bytes, layers: list[dc.DCLayer]) -> None:
    assert dc.encode(layers) == raw


def test_tensors_encode_decode_round_trip(layers: list[dc.DCLayer]) -> None:
    tensors = dc.decode_tensors(layers)
    again = dc.decode_tensors(dc.parse(dc.encode_tensors(tensors)))
    for a, b in zip(tensors, again, strict=False):
        assert a.name == b.name
        np.testing.assert_array_equal(a.weight, b.weight)
        np.testing.assert_array_equal(a.bias, b.bias)


def test_encoder_bridges_long_zero_runs_with_fillers() -> None:
    w = np.zeros((2, 1, 4, 5), dtype=np.float32)  # 40 positions
    w.flat[0] = 0.5
    w.flat[39] = -1.25  # 38 zeros in between: two fillers needed
    layer = dc.layer_from_tensor("t", w, np.array([1.0, 2.0], dtype=np.float32))
    assert layer.positions().tolist() == [0, 16, 32, 39]
    assert layer.gaps.tolist() == [0, 15, 15, 6]
    assert layer.indices[1] == 0 and layer.indices[2] == 0
    np.testing.assert_array_equal(layer.weights(), w)


def test_encoder_refuses_more_than_256_values() -> None:
    w = np.arange(1, 301, dtype=np.float32).reshape(300, 1, 1, 1)
    with pytest.raises(ValueError, match="distinct"):
        dc.layer_from_tensor("big", w, np.zeros(300, dtype=np.float32))


def test_truncated_file_names_layer_and_offset(raw: bytes, layers: list[dc.DCLayer]) -> None:
    with pytest.raises(ValueError, match=r"truncated in layer conv10 at offset \d+"):
        dc.parse(raw[:-10])
    n = layers[0].n_stored
    fire2_start = 104 + 4 * 256 + 4 * 96 + n + (n - 1) // 2 + 1
    with pytest.raises(
        ValueError, match=f"truncated in layer fire2/squeeze1x1 at offset {fire2_start}:"
    ):
        dc.parse(raw[: fire2_start + 100])
    with pytest.raises(ValueError, match="header"):
        dc.parse(raw[:50])


def test_trailing_bytes_are_refused(raw: bytes) -> None:
    with pytest.raises(ValueError, match="trailing bytes.*conv10"):
        dc.parse(raw + b"\0")


def test_corrupt_header_count_is_refused(raw: bytes) -> None:
    bad = struct.pack("<I", 10_000_000) + raw[4:]
    with pytest.raises(ValueError, match="layer conv1.*offset 104"):
        dc.parse(bad)


def test_corrupt_gaps_running_past_the_layer_are_refused(
    raw: bytes, layers: list[dc.DCLayer]
) -> None:
    # Set every gap nibble of conv1 to 15: its stored entries then overrun its 14,112 weights.
    n = layers[0].n_stored
    start = 104 + 4 * 256 + 4 * 96 + n
    bad = raw[:start] + b"\xff" * ((n - 1) // 2 + 1) + raw[start + (n - 1) // 2 + 1 :]
    with pytest.raises(ValueError, match=f"layer conv1: position gaps at offset {start}"):
        dc.parse(bad)


def test_six_bit_packed_file_round_trips_the_6_bit_model_in_three_quarters_of_the_index_bytes(
    layers: list[dc.DCLayer],
) -> None:
    from modelpack.quantize import requantize_codebooks

    six = dc.layers_from_tensors(requantize_codebooks(layers, 6))
    packed = dc.encode6(six)
    eight = dc.encode(six)
    n = sum(layer.n_stored for layer in six)
    # 6 of 8 bits per index, 64 of 256 codebook entries per layer.
    assert len(eight) - len(packed) >= n // 4 + len(six) * 192 * 4 - 3 * len(six)
    for a, b in zip(dc.decode_tensors(dc.parse6(packed)), dc.decode_tensors(six), strict=False):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)


def test_six_bit_packed_file_refuses_8_bit_indices_and_damage(layers: list[dc.DCLayer]) -> None:
    with pytest.raises(ValueError, match="6 bits"):
        dc.encode6(layers)
    from modelpack.quantize import requantize_codebooks

    packed = dc.encode6(dc.layers_from_tensors(requantize_codebooks(layers, 6)))
    with pytest.raises(ValueError, match="truncated"):
        dc.parse6(packed[: len(packed) // 2])
    with pytest.raises(ValueError, match="trailing"):
        dc.parse6(packed + b"\0")
