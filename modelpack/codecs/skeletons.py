"""A built-in zstd dictionary for model skeletons (graph, names, shapes).

A first install has no base skeleton to code its graph against, so it went
as plain zstd (1,867 B for SqueezeNet v1.0). The skeletons of the zoo's
models are shipped in the package instead (``data/skeletons-1.bin``, the
zoo's SqueezeNet 1.0, 1.1, SqueezeDet and AlexNet skeletons, 35.7 kB), and a
first install's skeleton is coded with them as a raw-content dictionary: the
same graph with other weights then costs tens of bytes, and any other graph
still gains from the shared op and attribute names. This does what rebuilding
the graph with the zoo builder would, but needs no ``onnx`` on the car and
rebuilds the exact bytes of any skeleton, not only the builder's.

Wire form of a skeleton blob: a zstd frame (first byte 0x28, the format
before this dictionary existed) or one byte naming the dictionary followed by
a zstd frame made with it. A dictionary, once shipped, is never changed: a
new one gets a new id, and the old file stays so old encodings decode.

Regenerate (new id) with ``python -m modelpack.codecs.skeletons OUT``.
"""

from __future__ import annotations

import functools
import hashlib
import sys
from pathlib import Path

import zstandard

from modelpack.codecs import zstdcodecs
from modelpack.codecs.container import CorruptEncodingError

_DATA = Path(__file__).resolve().parents[1] / "data"
# id -> (file, sha256): checked on load so a damaged install fails loudly.
DICTIONARIES: dict[int, tuple[str, str]] = {
    1: ("skeletons-1.bin", "0edea67437f11bb28e74b09fc4f4b5896c7679a9be1f6e4880f511c2d909cff6"),
}
CURRENT = 1
_ZSTD_FRAME_START = 0x28
_LEVEL = 22


@functools.cache
def dictionary(dict_id: int) -> bytes:
    if dict_id not in DICTIONARIES:
        raise CorruptEncodingError(
            f"skeleton coded with dictionary {dict_id}, which this build does not have"
        )
    name, digest = DICTIONARIES[dict_id]
    data = (_DATA / name).read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != digest:
        raise CorruptEncodingError(
            f"skeleton dictionary {name} is damaged: sha256 {got[:16]}…, expected {digest[:16]}…"
        )
    return data


def _zdict(dict_id: int) -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(
        dictionary(dict_id), dict_type=zstandard.DICT_TYPE_RAWCONTENT
    )


def compress(skeleton: bytes) -> bytes:
    """The smaller of the plain zstd frame and the frame against the built-in dictionary."""
    plain = zstdcodecs.compress(skeleton)
    cctx = zstandard.ZstdCompressor(
        level=_LEVEL, dict_data=_zdict(CURRENT), write_checksum=False, write_dict_id=False
    )
    with_dict = bytes((CURRENT,)) + cctx.compress(skeleton)
    return with_dict if len(with_dict) < len(plain) else plain


def decompress(blob: bytes, size: int) -> bytes:
    if not blob or blob[0] == _ZSTD_FRAME_START:
        return zstdcodecs.decompress(blob, size, "skeleton")
    zd = _zdict(blob[0])
    try:
        out = zstandard.ZstdDecompressor(dict_data=zd).decompress(blob[1:], max_output_size=size)
    except zstandard.ZstdError as exc:
        raise CorruptEncodingError(f"skeleton damaged: {exc}") from exc
    if len(out) != size:
        raise CorruptEncodingError(f"skeleton gave {len(out)} bytes, expected {size}")
    return out


def build_dictionary() -> bytes:
    """The zoo's skeletons, concatenated (needs ``onnx``: registry side only)."""
    from modelpack import zoo
    from modelpack.codecs.onnxwire import find_tensors, split

    parts = []
    for name in ("alexnet", "squeezedet", "squeezenet1.1", "squeezenet1.0"):
        model = zoo.build(name)
        parts.append(split(model, find_tensors(model)))
    return b"".join(parts)  # zstd prefers matches near the end: the most used last


if __name__ == "__main__":  # pragma: no cover - a maintenance command
    out = Path(sys.argv[1])
    out.write_bytes(build_dictionary())
    print(out, hashlib.sha256(out.read_bytes()).hexdigest())
