"""The built-in skeleton dictionary, the sort-free codebook scan and the
codebook-map decoder's bucket lookup (issue 16)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelpack import codecs
from modelpack.codecs import skeletons, zstdcodecs
from modelpack.codecs import tensorcode as tc
from modelpack.codecs.codebooks import remap_words, small_unique
from modelpack.codecs.container import CorruptEncodingError
from modelpack.codecs.wire import Reader
from tests.codecs.codectest_models import codebook_tensor


def _zoo_like_skeleton() -> bytes:
    # The tail of the shipped dictionary is SqueezeNet 1.0's skeleton.
    return skeletons.dictionary(skeletons.CURRENT)[-10_257:]


def test_dictionary_makes_a_known_graph_nearly_free() -> None:
    skel = _zoo_like_skeleton()
    blob = skeletons.compress(skel)
    assert blob[0] == skeletons.CURRENT
    assert len(blob) < len(zstdcodecs.compress(skel)) // 10
    assert skeletons.decompress(blob, len(skel)) == skel


def test_plain_zstd_skeletons_of_older_encodings_still_decode() -> None:
    skel = b"an unrelated graph " * 50
    old = zstdcodecs.compress(skel)
    assert old[0] == 0x28
    assert skeletons.decompress(old, len(skel)) == skel


@given(st.binary(min_size=0, max_size=3000))
@settings(max_examples=40, deadline=None)
def test_any_skeleton_round_trips(skel: bytes) -> None:
    assert skeletons.decompress(skeletons.compress(skel), len(skel)) == skel


def test_unknown_dictionary_and_damage_are_clear_errors() -> None:
    skel = _zoo_like_skeleton()
    blob = skeletons.compress(skel)
    with pytest.raises(CorruptEncodingError, match="dictionary 9"):
        skeletons.decompress(bytes((9,)) + blob[1:], len(skel))
    with pytest.raises(CorruptEncodingError, match="skeleton"):
        skeletons.decompress(blob[:-3], len(skel))
    with pytest.raises(CorruptEncodingError, match="skeleton"):
        skeletons.decompress(blob, len(skel) - 1)


def test_first_install_uses_the_dictionary_and_rebuilds_exact_bytes() -> None:
    from modelpack import zoo

    model = zoo.build("squeezenet1.0")
    blob = codecs.encode("deepcompression", model)
    assert codecs.decode(blob) == model
    assert len(blob) <= 535_400  # 537,188 B before the dictionary


@given(
    st.integers(1, 256),
    st.integers(4097, 20_000),
    st.integers(0, 2**32 - 1),
    st.booleans(),
)
@settings(max_examples=30, deadline=None)
def test_sort_free_codebook_scan_matches_np_unique(k: int, n: int, seed: int, clash: bool) -> None:
    rng = np.random.default_rng(seed)
    book = rng.integers(0, 2**32, size=k, dtype=np.uint32)
    if clash and k > 1:  # two values sharing their high 16 bits: the slow path
        book[1] = (book[0] & np.uint32(0xFFFF0000)) | (~book[0] & np.uint32(0xFFFF))
    words = book[rng.integers(0, k, size=n)]
    values, inverse = small_unique(words)
    expect = np.unique(words)
    assert np.array_equal(values, expect)
    assert np.array_equal(values[inverse.astype(np.int64)], words)


def _remap_reference(words: np.ndarray) -> np.ndarray:
    values, inverse = np.unique(words, return_inverse=True)
    return (values * np.uint32(2654435761) + np.arange(values.size, dtype=np.uint32))[
        inverse.reshape(-1)
    ]


def _remap(values: np.ndarray) -> np.ndarray:
    # Depends on each value and on its rank: a wrong or unsorted value set shows.
    return values * np.uint32(2654435761) + np.arange(values.size, dtype=np.uint32)


@given(
    st.integers(1, 256),
    st.integers(1, 20_000),
    st.integers(0, 2**32 - 1),
    st.integers(0, 8),
    st.integers(0, 3),
)
@settings(max_examples=40, deadline=None)
def test_bucket_remap_matches_np_unique(k: int, n: int, seed: int, clashes: int, skew: int) -> None:
    """The codebook-map decoder's table lookup: buckets shared by several
    values (close codebook entries), small tensors, and words that do not
    start on a 4-byte boundary all map as np.unique would."""
    rng = np.random.default_rng(seed)
    book = rng.integers(0, 2**32, size=k, dtype=np.uint32)
    for i in range(1, min(clashes + 1, k)):
        book[i] = (book[0] & np.uint32(0xFFFF0000)) | np.uint32(rng.integers(0, 1 << 16))
    words = book[rng.integers(0, k, size=n)]
    buf = bytes(skew) + words.tobytes()
    unaligned = np.frombuffer(memoryview(buf)[skew:], "<u4")
    got = remap_words(unaligned, _remap)
    assert got is not None and np.array_equal(got, _remap_reference(words))


@pytest.mark.parametrize("n", [3000, 9000])
def test_bucket_remap_refuses_more_than_256_values(n: int) -> None:
    words = np.arange(n, dtype=np.uint32) % 300 * np.uint32(65536)
    assert remap_words(words, _remap) is None
    shared = (np.arange(n, dtype=np.uint32) % 300) | np.uint32(0x3F800000)  # all in one bucket
    assert remap_words(shared, _remap) is None


def test_codebook_map_record_on_a_large_unaligned_base_tensor_round_trips() -> None:
    rng = np.random.default_rng(5)
    old = codebook_tensor(rng, (64, 32, 3, 3), k=200, sparsity=0.5).reshape(-1)
    old_bits = old.view(np.uint32)
    old_bits[:5] = (old_bits[5] & np.uint32(0xFFFF0000)) | np.arange(5, dtype=np.uint32)
    values, inverse = np.unique(old, return_inverse=True)
    new = np.where(values == 0, 0, values * np.float32(1.02))[inverse.reshape(-1)]
    new = new.astype(np.float32)
    ref = tc.OldTensor(0, old.tobytes(), 4)
    mode, record = tc.encode_tensor(new.tobytes(), 4, ref, None)
    assert mode == tc.CODEBOOK_MAP
    base = b"\x00" + old.tobytes()
    r = Reader(record, "record")
    assert tc.decode_tensor(r, new.nbytes, [memoryview(base)[1:]], "t", []) == new.tobytes()
    r.expect_end()
