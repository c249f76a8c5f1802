"""Fixed round trips for every tensor record kind, each forced with
``allow``: with CI's fixed hypothesis examples a branch the encoder rarely
picks (SUB, PLANES, …) would otherwise never be decoded by any test."""

from __future__ import annotations

import numpy as np
import pytest

from modelpack.codecs import tensorcode as tc
from modelpack.codecs.container import CorruptEncodingError
from modelpack.codecs.planes import BITMAP, KERNEL9, decode_mask, encode_mask
from modelpack.codecs.quantised import QUANT, encode_quantised
from modelpack.codecs.wire import Reader
from tests.codecs.codectest_models import codebook_tensor

RNG = np.random.default_rng(17)
OLD_DENSE = RNG.normal(0, 0.1, 3000).astype(np.float32)
NEW_DENSE = (OLD_DENSE * (1 + RNG.normal(0, 0.01, 3000))).astype(np.float32)
OLD_BOOK = codebook_tensor(RNG, (3000,), k=200, sparsity=0.6)
_values, _inverse = np.unique(OLD_BOOK, return_inverse=True)
NEW_REMAPPED = np.where(_values == 0, 0, _values * np.float32(1.02))[_inverse].astype(np.float32)
NEW_RECLUSTERED = np.where(OLD_BOOK == 0, 0, np.round(OLD_BOOK * 40) / 40).astype(np.float32)

CASES = {
    tc.XOR: (NEW_DENSE, OLD_DENSE),
    tc.SUB: (NEW_DENSE, OLD_DENSE),
    tc.CODEBOOK_MAP: (NEW_REMAPPED, OLD_BOOK),
    tc.CODEBOOK_PREDICT: (NEW_RECLUSTERED, OLD_BOOK),
    tc.CODEBOOK: (OLD_BOOK, None),
    tc.PLANES: (OLD_DENSE, None),
}


def _decode(record: bytes, length: int, olds: list[bytes]) -> bytes:
    r = Reader(record, "record")
    out = tc.decode_tensor(r, length, olds, "t", [])
    r.expect_end()
    return out


@pytest.mark.parametrize("mode", sorted(CASES), ids=lambda m: tc.MODE_NAMES[m])
def test_each_record_kind_round_trips(mode: int) -> None:
    new, old = CASES[mode]
    olds = [old.tobytes()] if old is not None else []
    ref = tc.OldTensor(0, olds[0], 4) if olds else None
    got, record = tc.encode_tensor(new.tobytes(), 4, ref, None, allow=frozenset({mode}))
    assert got == mode and record[0] == mode
    assert _decode(record, new.nbytes, olds) == new.tobytes()


def test_same_record_round_trips() -> None:
    got, record = tc.encode_tensor(OLD_DENSE.tobytes(), 4, None, 0)
    assert got == tc.SAME
    assert _decode(record, OLD_DENSE.nbytes, [OLD_DENSE.tobytes()]) == OLD_DENSE.tobytes()


def test_quantised_record_round_trips() -> None:
    scale = np.float32(np.abs(OLD_DENSE).max() / 127)
    q = np.clip(np.rint(OLD_DENSE / scale), -128, 127).astype(np.int8)
    record = encode_quantised(
        q.tobytes(), True, 0, OLD_DENSE.tobytes(), [(np.array([scale]), None)]
    )
    assert record is not None and record[0] == QUANT
    assert _decode(record, q.nbytes, [OLD_DENSE.tobytes()]) == q.tobytes()


def test_streams_of_the_retired_constriction_coder_are_refused_with_the_remedy() -> None:
    from modelpack.codecs.entropy import decode_stream
    from modelpack.codecs.wire import Writer

    w = Writer()
    w.varint(10)
    w.u8(2)  # the constriction rANS method
    w.blob(b"\x00" * 40)
    with pytest.raises(CorruptEncodingError, match="re-encode"):
        decode_stream(Reader(w.getvalue()), 10, "old stream")


@pytest.mark.parametrize("layout", [BITMAP, KERNEL9], ids=["bitmap", "kernel9"])
def test_mask_layouts_round_trip_and_refuse_a_wrong_count(layout: int) -> None:
    mask = RNG.random(9 * 401) < 0.3
    body = encode_mask(mask, layout)
    r = Reader(body, "mask")
    assert np.array_equal(
        decode_mask(r, layout, int(mask.sum()), mask.size, "m"), np.flatnonzero(mask)
    )
    r.expect_end()
    with pytest.raises(CorruptEncodingError, match="set bits"):
        decode_mask(Reader(body), layout, int(mask.sum()) + 1, mask.size, "m")
    if layout == KERNEL9:
        with pytest.raises(CorruptEncodingError, match="3x3"):
            decode_mask(Reader(body), layout, int(mask.sum()), mask.size - 1, "m")


# A pruned base; the fine-tune keeps the mask and moves some or all of the
# non-zeros: the planes then go as change flags over the base's non-zeros.
PRUNED = np.where(RNG.random(6000) < 0.55, 0, RNG.normal(0, 0.1, 6000)).astype(np.float32)


@pytest.mark.parametrize("mode", [tc.XOR, tc.SUB], ids=["xor", "sub"])
@pytest.mark.parametrize("moved", [1.0, 0.3], ids=["all-moved", "some-moved"])
def test_base_mask_plane_layout_round_trips(mode: int, moved: float) -> None:
    step = np.where(RNG.random(PRUNED.size) < moved, 1 + RNG.normal(0, 0.01, PRUNED.size), 1)
    new = (PRUNED * step).astype(np.float32)
    ref = tc.OldTensor(0, PRUNED.tobytes(), 4)
    got, record = tc.encode_tensor(new.tobytes(), 4, ref, None, allow=frozenset({mode}))
    assert got == mode and record[3] == 2  # mode, base index, element size, then the layout
    # The base as it lies in a model file: not on a 4-byte boundary.
    olds = [memoryview(b"\x01" + PRUNED.tobytes())[1:]]
    assert _decode(record, new.nbytes, olds) == new.tobytes()
    bad = bytearray(record)
    bad[4:6] = b"\x05\x00"  # five change flags where the base has ~2,700 non-zeros
    with pytest.raises(CorruptEncodingError):
        _decode(bytes(bad), new.nbytes, olds)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.uint64])
def test_in_place_unzigzag_add_inverts_the_encoders_zigzag(dtype: type) -> None:
    from modelpack.codecs.planes import add_unzigzag_onto, xor_onto, zigzag

    info = np.iinfo(dtype)
    base = RNG.integers(0, info.max, 5000, dtype=dtype, endpoint=True)
    new = RNG.integers(0, info.max, 5000, dtype=dtype, endpoint=True)
    new[:100] = base[:100]  # zero differences
    new[100:200] = base[100:200] + dtype(1)  # +1 and, wrapped, -1
    new[200:300] = base[200:300] - dtype(1)
    elem = np.dtype(dtype).itemsize
    assert np.array_equal(add_unzigzag_onto(base, zigzag(new - base, elem)), new)
    assert np.array_equal(xor_onto(base, base ^ new), new)


@pytest.mark.parametrize("signed", [True, False], ids=["int8", "uint8"])
@pytest.mark.parametrize("channels", [1, 6])
def test_decoders_quantised_prediction_is_the_encoders_mod_256(signed: bool, channels: int) -> None:
    from modelpack.codecs.quantised import _quant_predict, _quant_predict_bytes

    old = RNG.normal(0, 0.3, 6 * 500).astype(np.float32)
    old[:4] = [np.nan, np.inf, -np.inf, 1e30]  # clipped or zeroed alike
    scale = (RNG.random(channels) * 0.01 + 1e-3).astype(np.float32)
    zp = RNG.integers(-128 if signed else 0, 128 if signed else 256, channels).astype(np.int16)
    want = (_quant_predict(old, scale, zp, signed) % 256).astype(np.uint8)
    assert np.array_equal(_quant_predict_bytes(old, scale, zp, signed), want)


def test_the_shared_zstd_decompressor_recovers_after_a_damaged_stream() -> None:
    from modelpack.codecs.entropy import decode_stream, encode_stream

    symbols = (np.arange(5000) % 7).astype(np.uint8)
    good = encode_stream(symbols)
    magic = good.index(b"\x28\xb5\x2f\xfd")  # the zstd frame's start
    bad = bytearray(good)
    bad[magic] ^= 0xFF
    with pytest.raises(CorruptEncodingError, match="zstd stream"):
        decode_stream(Reader(bytes(bad)), symbols.size, "s")
    assert np.array_equal(decode_stream(Reader(good), symbols.size, "s"), symbols)


@pytest.mark.parametrize("mode", [tc.XOR, tc.SUB], ids=["xor", "sub"])
def test_sparse_plane_layout_of_a_delta_round_trips(mode: int) -> None:
    # A base with no zeros and a tenth of it moved: the changes go as a gap stream.
    step = np.where(RNG.random(OLD_DENSE.size) < 0.1, 1 + RNG.normal(0, 0.01, OLD_DENSE.size), 1)
    new = (OLD_DENSE * step).astype(np.float32)
    ref = tc.OldTensor(0, OLD_DENSE.tobytes(), 4)
    got, record = tc.encode_tensor(new.tobytes(), 4, ref, None, allow=frozenset({mode}))
    assert got == mode and record[3] == 1  # the sparse layout
    assert _decode(record, new.nbytes, [OLD_DENSE.tobytes()]) == new.tobytes()
