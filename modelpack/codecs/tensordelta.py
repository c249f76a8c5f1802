"""Model-aware codecs: ``tensordelta`` (against a base model) and
``deepcompression`` (no base; the first install).

Both cut the ONNX bytes into a skeleton (graph, names, shapes: everything but
the initializers' data) and the tensor data ranges (``onnxwire``). The
skeleton goes as zstd, against the base's skeleton when there is one (else
against the built-in dictionary of the zoo's skeletons, ``skeletons``); each
tensor goes in the smallest of the ``tensorcode`` modes. Decoding splices the
pieces back into a preallocated buffer of the signed length, so the rebuilt
file is byte-identical by construction, without re-serialising protobuf.

Payload layout::

    varint  number of tensors
    blob    zstd(layout: varint (gap before tensor, tensor length) pairs)
    blob    zstd(skeleton) [with the base skeleton as dictionary]
    record  one per tensor (tensorcode)
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import zstandard

from modelpack.codecs import skeletons, zstdcodecs
from modelpack.codecs.container import CorruptEncodingError
from modelpack.codecs.entropy import decompressor
from modelpack.codecs.onnxwire import NotOnnxError, TensorSlot, find_tensors, split
from modelpack.codecs.quantised import QUANT, encode_quantised
from modelpack.codecs.tensorcode import MODE_NAMES, OldTensor, decode_tensor, encode_tensor
from modelpack.codecs.wire import Reader, Writer

log = logging.getLogger(__name__)

_LAYOUT_LEVEL = 19
_REFERABLE = 1 << 16  # tensors up to this size can be referred to by later records


@dataclass
class EncodeStats:
    """What the encoder chose, for CLI output and benchmarks."""

    modes: Counter[str] = field(default_factory=Counter)
    skeleton_bytes: int = 0
    tensor_bytes: int = 0


def _parse(model: bytes, role: str) -> list[TensorSlot]:
    try:
        return find_tensors(model)
    except NotOnnxError as exc:
        raise NotOnnxError(f"{role} is not an ONNX model: {exc}") from exc


def encode_model(new: bytes, base: bytes | None, stats: EncodeStats | None = None) -> bytes:
    slots = _parse(new, "new model")
    olds: list[bytes] = []
    old_by_name: dict[str, int] = {}
    old_by_hash: dict[bytes, int] = {}
    old_elem: list[int] = []
    base_skeleton = b""
    old_slots: list[TensorSlot] = []
    if base is not None:
        old_slots = _parse(base, "base model")
        for i, s in enumerate(old_slots):
            data = base[s.offset : s.end]
            olds.append(data)
            old_elem.append(s.elem_size)
            old_by_name.setdefault(s.name, i)
            old_by_hash.setdefault(hashlib.sha256(data).digest(), i)
        base_skeleton = split(base, old_slots)
    w = Writer()
    w.varint(len(slots))
    layout = Writer()
    pos = 0
    for s in slots:
        layout.varint(s.offset - pos)
        layout.varint(s.length)
        pos = s.end
    w.blob(zstandard.ZstdCompressor(level=_LAYOUT_LEVEL).compress(layout.getvalue()))
    skeleton = split(new, slots)
    skel = (
        zstdcodecs.delta_compress(skeleton, base_skeleton)
        if base_skeleton
        else skeletons.compress(skeleton)
    )
    w.blob(skel)
    if stats is not None:
        stats.skeleton_bytes += len(skel)
    for s in slots:
        data = new[s.offset : s.end]
        same = old_by_hash.get(hashlib.sha256(data).digest())
        by_name = old_by_name.get(s.name)
        old = OldTensor(by_name, olds[by_name], old_elem[by_name]) if by_name is not None else None
        mode, record = encode_tensor(data, s.elem_size, old, same)
        if same is None and old is None and s.data_type in (2, 3) and base is not None:
            quant = _quantised(s, slots, new, old_slots, base)
            if quant is not None and len(quant) < len(record):
                mode, record = QUANT, quant
        w.raw(record)
        if stats is not None:
            stats.modes[MODE_NAMES[mode]] += 1
            stats.tensor_bytes += len(record)
        log.debug("tensor %s (%d B): %s, %d B", s.name, s.length, MODE_NAMES[mode], len(record))
    return w.getvalue()


def _quantised(
    s: TensorSlot, new_slots: list[TensorSlot], new: bytes, old_slots: list[TensorSlot], base: bytes
) -> bytes | None:
    """An 8-bit tensor coded against the float32 tensor it quantises: the one
    whose name is the longest prefix of its name (``w`` -> ``w_quantized``),
    with the float32 ``*scale*`` tensors named after it (per tensor or per
    channel) as candidate scales."""
    source = None
    for i, o in enumerate(old_slots):
        if o.data_type == 1 and o.length == 4 * s.length and s.name.startswith(o.name):
            if source is None or len(o.name) > len(old_slots[source].name):
                source = i
    if source is None:
        return None
    o = old_slots[source]
    me = new_slots.index(s)
    scales = [
        (
            np.frombuffer(new[t.offset : t.end], "<f4"),
            k if k < me and t.length <= _REFERABLE else None,
        )
        for k, t in enumerate(new_slots)
        if t.data_type == 1
        and t.name.startswith(o.name)
        and "scale" in t.name
        and s.length % max(1, t.length // 4) == 0
    ]
    return encode_quantised(
        new[s.offset : s.end], s.data_type == 3, source, base[o.offset : o.end], scales
    )


def decode_model(payload: bytes, base: bytes | None, target_length: int) -> bytes:
    """Rebuild the model. Peak memory: the payload, the base, the decoded
    tensors that are not views of the base (at most ``target_length`` bytes
    together) and the joined result, plus the scratch of the tensor being
    decoded (a few times its size): two target-sized buffers, as a
    preallocated output copied out as bytes needed too."""
    r = Reader(payload, "tensor payload")
    n = r.varint("tensor count", target_length)
    layout_z = r.blob("layout")
    try:
        layout = decompressor().decompress(layout_z, max_output_size=20 * n + 16)
    except zstandard.ZstdError as exc:
        raise CorruptEncodingError(f"tensor payload: layout damaged ({exc})") from exc
    lr = Reader(layout, "tensor layout")
    pairs = []
    total = 0
    for _ in range(n):
        gap = lr.varint("gap", target_length)
        length = lr.varint("tensor length", target_length)
        total += gap + length
        if total > target_length:
            raise CorruptEncodingError("tensor layout runs past the target length")
        pairs.append((gap, length))
    lr.expect_end()
    olds: list[bytes | memoryview] = []
    base_skeleton = b""
    if base is not None:
        try:
            old_slots = find_tensors(base)
        except NotOnnxError as exc:
            raise CorruptEncodingError(f"base is not an ONNX model: {exc}") from exc
        # Views, not copies: the base stays whole in memory either way.
        base_view = memoryview(base)
        olds = [base_view[s.offset : s.end] for s in old_slots]
        base_skeleton = split(base, old_slots)
    skeleton_length = target_length - sum(length for _, length in pairs)
    skel_z = r.blob("skeleton")
    if base_skeleton:
        skeleton = zstdcodecs.delta_decompress(skel_z, base_skeleton, skeleton_length, "skeleton")
    else:
        skeleton = skeletons.decompress(skel_z, skeleton_length)
    # The pieces are joined once at the end, into memory that is not zeroed
    # first: a zero-filled output buffer, written and then copied out as bytes,
    # took more time in page faults than in copying on a VM. Tensors that did
    # not change stay views of the base until then.
    skel = memoryview(skeleton)
    parts: list[bytes | memoryview] = []
    src = 0
    decoded: list[bytes | memoryview] = []  # small tensors stay referable (quantisation scales)
    for k, (gap, length) in enumerate(pairs):
        parts.append(skel[src : src + gap])
        src += gap
        data = decode_tensor(r, length, olds, f"tensor {k}", decoded)
        if len(data) != length:  # pragma: no cover - every record kind checks its size
            raise CorruptEncodingError(f"tensor {k}: decoded {len(data)} bytes, expected {length}")
        parts.append(data)
        decoded.append(data if length <= _REFERABLE else b"")
    parts.append(skel[src:])
    r.expect_end()
    return b"".join(parts)


class TensorDeltaCodec:
    """Tensor-by-tensor delta from an older version of the same model."""

    name = "tensordelta"
    codec_id = 3
    needs_base = True

    def encode(self, new: bytes, base: bytes | None) -> bytes:
        if base is None:
            raise ValueError("tensordelta needs a base")
        return encode_model(new, base)

    def decode(self, payload: bytes, base: bytes | None, target_length: int) -> bytes:
        if base is None:
            raise ValueError("tensordelta needs a base")
        return decode_model(payload, base, target_length)


class DeepCompressionCodec:
    """Codebook + sparse-index coding of the whole model, no base needed."""

    name = "deepcompression"
    codec_id = 4
    needs_base = False

    def encode(self, new: bytes, base: bytes | None = None) -> bytes:
        return encode_model(new, None)

    def decode(self, payload: bytes, base: bytes | None, target_length: int) -> bytes:
        return decode_model(payload, None, target_length)
