"""The Deep Compression ``.net`` weight format of the released SqueezeNet v1.0.

The file (format in ``modelpack/data/PROVENANCE.md`` / the shared data README)
holds, per convolution layer, a 256-entry float32 codebook, the float32 bias,
one 8-bit codebook index per stored entry and 4-bit position gaps between
stored entries. Pruned positions are not stored; gaps longer than 15 are
bridged by stored "filler" entries with index 0.

Two representations are kept apart on purpose:

* ``DCLayer`` is the *structured* form (codebook, bias, indices, gaps and the
  padding nibble of an odd-length gap stream). Encoding it reproduces the
  original file byte for byte, which the plain tensors alone cannot promise
  (the filler positions and unused codebook entries are not visible in them).
* ``decode_tensors`` turns it into exact float32 weights (OIHW) and biases,
  and ``layers_from_tensors`` goes the other way for any tensors with at most
  256 distinct weight values per layer.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CODEBOOK_SIZE = 256
MAX_GAP = 15  # a 4-bit gap

SHIPPED_PATH = Path(__file__).parent / "data" / "squeezenet_v1.0_deep_compression.net"
SHIPPED_SHA256 = "e4ab6960ae8cd81505e1c2136921201507e930966c53deaf15862a395b3a3261"

# Fire modules of SqueezeNet v1.0: (squeeze, expand 1x1 = expand 3x3).
FIRE_SIZES: dict[int, tuple[int, int]] = {
    2: (16, 64),
    3: (16, 64),
    4: (32, 128),
    5: (32, 128),
    6: (48, 192),
    7: (48, 192),
    8: (64, 256),
    9: (64, 256),
}


def squeezenet_v10_shapes() -> list[tuple[str, tuple[int, int, int, int]]]:
    """Layer names and OIHW weight shapes of SqueezeNet v1.0, in file order."""
    shapes: list[tuple[str, tuple[int, int, int, int]]] = [("conv1", (96, 3, 7, 7))]
    in_ch = 96
    for i, (sq, ex) in FIRE_SIZES.items():
        shapes.append((f"fire{i}/squeeze1x1", (sq, in_ch, 1, 1)))
        shapes.append((f"fire{i}/expand1x1", (ex, sq, 1, 1)))
        shapes.append((f"fire{i}/expand3x3", (ex, sq, 3, 3)))
        in_ch = 2 * ex
    shapes.append(("conv10", (1000, in_ch, 1, 1)))
    return shapes


@dataclass(frozen=True)
class DCLayer:
    """One layer exactly as stored in the file."""

    name: str
    shape: tuple[int, int, int, int]  # OIHW
    codebook: np.ndarray  # float32[256], entry 0 is 0.0
    bias: np.ndarray  # float32[out_channels]
    indices: np.ndarray  # uint8[n]
    gaps: np.ndarray  # uint8[n], each 0..15
    pad_nibble: int = 0  # the unused high nibble when n is odd

    @property
    def n_stored(self) -> int:
        return int(self.indices.size)

    def positions(self) -> np.ndarray:
        """Flat row-major OIHW position of each stored entry."""
        return np.cumsum(self.gaps.astype(np.int64) + 1) - 1

    def weights(self) -> np.ndarray:
        """The exact float32 OIHW weights this layer stands for."""
        size = int(np.prod(self.shape))
        flat = np.zeros(size, dtype=np.float32)
        if self.n_stored:
            pos = self.positions()
            if pos[-1] >= size:
                raise ValueError(
                    f"layer {self.name}: stored entries reach position {int(pos[-1])}, "
                    f"beyond the {size} weights of shape {self.shape}"
                )
            flat[pos] = self.codebook[self.indices]
        return flat.reshape(self.shape)


@dataclass(frozen=True)
class LayerTensors:
    """Plain float32 weights (OIHW) and bias of one layer."""

    name: str
    weight: np.ndarray
    bias: np.ndarray


def _gap_bytes(n: int) -> int:
    return (n - 1) // 2 + 1 if n > 0 else 0


def parse(
    data: bytes, shapes: list[tuple[str, tuple[int, int, int, int]]] | None = None
) -> list[DCLayer]:
    """Parse a ``.net`` file into its structured layers.

    Raises ``ValueError`` naming the layer and byte offset when the file is
    truncated, has trailing bytes, or is internally inconsistent.
    """
    shapes = shapes if shapes is not None else squeezenet_v10_shapes()
    n_layers = len(shapes)
    header = 4 * n_layers
    if len(data) < header:
        raise ValueError(
            f"Deep Compression file truncated in the header: {len(data)} bytes, need {header} "
            f"for the {n_layers} layer counts"
        )
    counts = struct.unpack_from(f"<{n_layers}I", data, 0)
    off = header
    layers: list[DCLayer] = []
    for (name, shape), n in zip(shapes, counts, strict=False):
        size = int(np.prod(shape))
        out_ch = shape[0]
        if n > size:
            raise ValueError(
                f"layer {name}: header says {n} stored entries at offset {off}, "
                f"more than its {size} weights (corrupt header)"
            )
        need = 4 * CODEBOOK_SIZE + 4 * out_ch + n + _gap_bytes(n)
        if off + need > len(data):
            raise ValueError(
                f"Deep Compression file truncated in layer {name} at offset {off}: "
                f"needs {need} bytes, {len(data) - off} left"
            )
        codebook = np.frombuffer(data, "<f4", CODEBOOK_SIZE, off).astype(np.float32)
        off += 4 * CODEBOOK_SIZE
        bias = np.frombuffer(data, "<f4", out_ch, off).astype(np.float32)
        off += 4 * out_ch
        indices = np.frombuffer(data, np.uint8, n, off).copy()
        off += n
        packed = np.frombuffer(data, np.uint8, _gap_bytes(n), off)
        gap_off = off
        off += _gap_bytes(n)
        nibbles = np.empty(2 * packed.size, dtype=np.uint8)
        nibbles[0::2] = packed & 0x0F
        nibbles[1::2] = packed >> 4
        gaps = nibbles[:n].copy()
        pad = int(nibbles[n]) if n % 2 else 0
        layer = DCLayer(name, shape, codebook, bias, indices, gaps, pad)
        if n and int(layer.positions()[-1]) >= size:
            raise ValueError(
                f"layer {name}: position gaps at offset {gap_off} run past the layer's "
                f"{size} weights (corrupt gap stream)"
            )
        layers.append(layer)
    if off != len(data):
        raise ValueError(
            f"Deep Compression file has {len(data) - off} trailing bytes after the last layer "
            f"({shapes[-1][0]}) at offset {off}"
        )
    return layers


def encode(layers: list[DCLayer]) -> bytes:
    """Serialise structured layers into the ``.net`` format."""
    parts = [struct.pack(f"<{len(layers)}I", *(layer.n_stored for layer in layers))]
    for layer in layers:
        if layer.codebook.shape != (CODEBOOK_SIZE,):
            raise ValueError(f"layer {layer.name}: codebook must have {CODEBOOK_SIZE} entries")
        if layer.bias.shape != (layer.shape[0],):
            raise ValueError(f"layer {layer.name}: bias must have {layer.shape[0]} entries")
        if layer.gaps.shape != layer.indices.shape:
            raise ValueError(f"layer {layer.name}: gaps and indices differ in length")
        if layer.gaps.size and int(layer.gaps.max()) > MAX_GAP:
            raise ValueError(f"layer {layer.name}: a gap exceeds {MAX_GAP}")
        parts.append(layer.codebook.astype("<f4").tobytes())
        parts.append(layer.bias.astype("<f4").tobytes())
        parts.append(layer.indices.astype(np.uint8).tobytes())
        n = layer.n_stored
        nibbles = np.zeros(2 * _gap_bytes(n), dtype=np.uint8)
        nibbles[:n] = layer.gaps
        if n % 2:
            nibbles[n] = layer.pad_nibble & 0x0F
        parts.append((nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8).tobytes())
    return b"".join(parts)


def decode_tensors(layers: list[DCLayer]) -> list[LayerTensors]:
    """Exact float32 weights and biases of every layer."""
    return [LayerTensors(layer.name, layer.weights(), layer.bias.copy()) for layer in layers]


def layer_from_tensor(name: str, weight: np.ndarray, bias: np.ndarray) -> DCLayer:
    """Encode one layer's plain tensors (at most 256 distinct weight values,
    0.0 among them or added) into the structured form.

    The codebook is 0.0 followed by the other distinct values in ascending
    order, padded with 0.0; zeros are not stored except as fillers bridging
    gaps longer than 15.
    """
    weight = np.asarray(weight, dtype=np.float32)
    if weight.ndim != 4:
        raise ValueError(f"layer {name}: weight must be OIHW (4-D), got shape {weight.shape}")
    flat = weight.reshape(-1)
    if not np.all(np.isfinite(flat)):
        raise ValueError(f"layer {name}: weights must be finite")
    # Compare bit patterns so -0.0 is kept apart from 0.0 only if present.
    values = np.unique(flat[flat != 0])
    if values.size > CODEBOOK_SIZE - 1:
        raise ValueError(
            f"layer {name}: {values.size} distinct non-zero weight values; the format "
            f"holds at most {CODEBOOK_SIZE - 1} besides 0.0"
        )
    codebook = np.zeros(CODEBOOK_SIZE, dtype=np.float32)
    codebook[1 : 1 + values.size] = values
    nz = np.flatnonzero(flat)
    # Between consecutive stored entries at most MAX_GAP skipped positions;
    # longer runs get filler entries (index 0) every MAX_GAP + 1 positions.
    positions: list[int] = []
    prev = -1
    for p in nz.tolist():
        while p - prev - 1 > MAX_GAP:
            prev += MAX_GAP + 1
            positions.append(prev)
        positions.append(p)
        prev = p
    pos = np.asarray(positions, dtype=np.int64)
    indices = np.zeros(pos.size, dtype=np.uint8)
    is_real = flat[pos] != 0 if pos.size else np.zeros(0, dtype=bool)
    indices[is_real] = (np.searchsorted(values, flat[pos][is_real]) + 1).astype(np.uint8)
    gaps = np.diff(np.concatenate([[-1], pos])) - 1 if pos.size else np.zeros(0, dtype=np.int64)
    bias = np.asarray(bias, dtype=np.float32).reshape(-1)
    if bias.shape != (weight.shape[0],):
        raise ValueError(
            f"layer {name}: bias has {bias.size} entries, weight has {weight.shape[0]} outputs"
        )
    o, i, h, w = (int(s) for s in weight.shape)  # 4-D, checked above
    return DCLayer(name, (o, i, h, w), codebook, bias.copy(), indices, gaps.astype(np.uint8))


def layers_from_tensors(tensors: list[LayerTensors]) -> list[DCLayer]:
    return [layer_from_tensor(t.name, t.weight, t.bias) for t in tensors]


def encode_tensors(tensors: list[LayerTensors]) -> bytes:
    """Plain float32 tensors (≤256 distinct values per layer) → ``.net`` bytes."""
    return encode(layers_from_tensors(tensors))


def load_shipped() -> list[DCLayer]:
    """The real trained SqueezeNet v1.0 shipped in ``modelpack/data``, checked
    against its recorded sha256 so a damaged checkout fails loudly."""
    data = SHIPPED_PATH.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHIPPED_SHA256:
        raise ValueError(
            f"{SHIPPED_PATH}: sha256 {digest} does not match the recorded {SHIPPED_SHA256}"
        )
    return parse(data)


def load_shipped_tensors() -> list[LayerTensors]:
    return decode_tensors(load_shipped())


# --- 6-bit packed variant --------------------------------------------------
# The paper's 0.47 MB figure is SqueezeNet with 6-bit shared weights. The
# released file stores 8-bit indices, so a 6-bit model in it is no smaller;
# this variant packs each index into 6 bits (four per three bytes) with a
# 64-entry codebook, keeping the 4-bit gaps. Same layout otherwise.
CODEBOOK6 = 64


def _pack6(indices: np.ndarray) -> bytes:
    n = indices.size
    padded = np.zeros(-(-n // 4) * 4, dtype=np.uint32)
    padded[:n] = indices
    q = padded.reshape(-1, 4)
    v = q[:, 0] | (q[:, 1] << 6) | (q[:, 2] << 12) | (q[:, 3] << 18)
    return np.stack([v & 0xFF, (v >> 8) & 0xFF, v >> 16], axis=1).astype(np.uint8).tobytes()


def _unpack6(data: bytes, n: int) -> np.ndarray:
    b = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.uint32)
    v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
    q = np.stack([v & 63, (v >> 6) & 63, (v >> 12) & 63, v >> 18], axis=1).reshape(-1)
    return q[:n].astype(np.uint8)


def encode6(layers: list[DCLayer]) -> bytes:
    """Serialise layers whose indices are all below 64 in the 6-bit format."""
    parts = [struct.pack(f"<{len(layers)}I", *(layer.n_stored for layer in layers))]
    for layer in layers:
        if layer.n_stored and int(layer.indices.max()) >= CODEBOOK6:
            raise ValueError(
                f"layer {layer.name}: index {int(layer.indices.max())} does not fit 6 bits"
            )
        if np.any(layer.codebook[CODEBOOK6:] != 0):
            raise ValueError(f"layer {layer.name}: more than {CODEBOOK6} codebook entries in use")
        parts.append(layer.codebook[:CODEBOOK6].astype("<f4").tobytes())
        parts.append(layer.bias.astype("<f4").tobytes())
        parts.append(_pack6(layer.indices))
        n = layer.n_stored
        nibbles = np.zeros(2 * _gap_bytes(n), dtype=np.uint8)
        nibbles[:n] = layer.gaps
        parts.append((nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8).tobytes())
    return b"".join(parts)


def parse6(
    data: bytes, shapes: list[tuple[str, tuple[int, int, int, int]]] | None = None
) -> list[DCLayer]:
    """Parse the 6-bit format; ``ValueError`` naming the layer when damaged."""
    shapes = shapes if shapes is not None else squeezenet_v10_shapes()
    header = 4 * len(shapes)
    if len(data) < header:
        raise ValueError(
            f"6-bit Deep Compression file truncated in the header: {len(data)} bytes, need {header}"
        )
    counts = struct.unpack_from(f"<{len(shapes)}I", data, 0)
    off = header
    layers: list[DCLayer] = []
    for (name, shape), n in zip(shapes, counts, strict=False):
        size = int(np.prod(shape))
        if n > size:
            raise ValueError(
                f"layer {name}: header says {n} stored entries, more than its {size} weights"
            )
        packed = 3 * (-(-n // 4))
        need = 4 * CODEBOOK6 + 4 * shape[0] + packed + _gap_bytes(n)
        if off + need > len(data):
            raise ValueError(
                f"6-bit Deep Compression file truncated in layer {name} at offset {off}"
            )
        codebook = np.zeros(CODEBOOK_SIZE, dtype=np.float32)
        codebook[:CODEBOOK6] = np.frombuffer(data, "<f4", CODEBOOK6, off)
        off += 4 * CODEBOOK6
        bias = np.frombuffer(data, "<f4", shape[0], off).astype(np.float32)
        off += 4 * shape[0]
        indices = _unpack6(data[off : off + packed], n)
        off += packed
        nib = np.frombuffer(data, np.uint8, _gap_bytes(n), off)
        off += _gap_bytes(n)
        gaps = np.stack([nib & 0x0F, nib >> 4], axis=1).reshape(-1)[:n].copy()
        layer = DCLayer(name, shape, codebook, bias, indices, gaps)
        if n and int(layer.positions()[-1]) >= size:
            raise ValueError(f"layer {name}: position gaps run past the layer's {size} weights")
        layers.append(layer)
    if off != len(data):
        raise ValueError(f"6-bit Deep Compression file has {len(data) - off} trailing bytes")
    return layers
