"""The built-in skeleton dictionary and the sort-free codebook scan (issue 16)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelpack import codecs
from modelpack.codecs import skeletons, zstdcodecs
from modelpack.codecs.container import CorruptEncodingError
from modelpack.codecs.tensorcode import _small_unique


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
    values, inverse = _small_unique(words)
    expect = np.unique(words)
    assert np.array_equal(values, expect)
    assert np.array_equal(values[inverse.astype(np.int64)], words)
