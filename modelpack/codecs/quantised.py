"""The ``QUANT`` tensor mode: an 8-bit tensor predicted from the float32
tensor it quantises.

An int8/uint8 release of an fp32 model holds ``clip(rint(w / scale) + zp)``
of the old weights, per tensor or per output channel. Given the old weights
and the scales, the prediction is exact almost everywhere, so only the scale
source, the zero points and a residual stream of (nearly all) zeros travel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modelpack.codecs.container import CorruptEncodingError
from modelpack.codecs.entropy import decode_stream, encode_stream
from modelpack.codecs.wire import Reader, Writer

QUANT = 7


def _quant_predict(
    old_f: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, signed: bool
) -> np.ndarray:
    """``clip(rint(old / scale) + zero_point)`` with one scale and zero point
    per leading-axis channel (per-tensor: one channel)."""
    lo, hi = (-128, 127) if signed else (0, 255)
    c = scale.size
    with np.errstate(all="ignore"):
        q = np.rint(old_f.reshape(c, -1) / scale.reshape(c, 1)) + zero_point.reshape(c, 1).astype(
            np.float32
        )
        q = np.nan_to_num(np.clip(q, lo, hi), nan=0.0)
    return q.reshape(-1).astype(np.int16)


def _quant_predict_bytes(
    old_f: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, signed: bool
) -> np.ndarray:
    """``_quant_predict(...) % 256`` as uint8, for the decoder: the same float32
    steps, in place, and one cast (no int16 pass, no modulo)."""
    lo, hi = (-128, 127) if signed else (0, 255)
    c = scale.size
    with np.errstate(all="ignore"):
        q = np.divide(old_f.reshape(c, -1), scale.reshape(c, 1))
        np.rint(q, out=q)
        q += zero_point.reshape(c, 1).astype(np.float32)
        np.clip(q, lo, hi, out=q)
        np.nan_to_num(q, copy=False, nan=0.0)
        # Whole numbers in [lo, hi]: exact in the 8-bit type of that range.
        out = q.reshape(-1).astype(np.int8 if signed else np.uint8)
    return out.view(np.uint8)


def encode_quantised(
    new: bytes,
    signed: bool,
    old_index: int,
    old: bytes,
    scales: list[tuple[np.ndarray, int | None]],
) -> bytes | None:
    """``QUANT`` record of an 8-bit tensor predicted from an old float32 one.

    ``scales`` are candidate scale tensors (scalar or per output channel),
    each with the index of the new model's tensor that holds it if that one is
    decoded before this one (then it is referred to, not sent again); a
    per-tensor max-abs scale is always tried too."""
    if len(old) != 4 * len(new) or not new:
        return None
    old_f = np.frombuffer(old, "<f4")
    q = np.frombuffer(new, np.int8 if signed else np.uint8).astype(np.int16)
    span = float(np.nanmax(np.abs(old_f)))
    candidates = [(np.asarray(sc, dtype="<f4").reshape(-1), ref) for sc, ref in scales]
    candidates.append((np.array([span / (127 if signed else 255)], dtype="<f4"), None))
    best: bytes | None = None
    for sc, ref in candidates:
        c = sc.size
        if c == 0 or q.size % c or not np.all(np.isfinite(sc)) or np.any(sc <= 0):
            continue
        raw = (q - _quant_predict(old_f, sc, np.zeros(c, np.int16), signed)).reshape(c, -1)
        zp = np.median(raw, axis=1).astype(np.int16)
        zp = np.clip(zp, -128, 127) if signed else np.clip(zp, 0, 255)
        res = ((q - _quant_predict(old_f, sc, zp, signed)) % 256).astype(np.uint8)
        w = Writer()
        w.u8(QUANT)
        w.varint(old_index)
        w.u8(int(signed))
        w.varint(c)
        if ref is None:
            w.u8(0)
            w.raw(sc.astype("<f4").tobytes())
        else:
            w.u8(1)
            w.varint(ref)
        w.raw(encode_stream((zp & 0xFF).astype(np.uint8)))
        w.raw(encode_stream(res))
        rec = w.getvalue()
        if best is None or len(rec) < len(best):
            best = rec
    return best


def decode_quantised(
    r: Reader,
    length: int,
    olds: Sequence[bytes | memoryview],
    what: str,
    decoded: Sequence[bytes | memoryview],
) -> bytes | memoryview:
    old = olds[r.varint(f"{what} base tensor", len(olds) - 1)] if olds else None
    if old is None or len(old) != 4 * length:
        raise CorruptEncodingError(
            f"{what}: quantised record needs a float32 base tensor of {length} values"
        )
    signed = r.u8(f"{what} signedness")
    if signed > 1:
        raise CorruptEncodingError(f"{what}: bad signedness flag {signed}")
    c = r.varint(f"{what} channels", length)
    if c == 0 or length % c:
        raise CorruptEncodingError(f"{what}: {c} channels do not divide {length} values")
    source = r.u8(f"{what} scale source")
    if source == 0:
        scale = np.frombuffer(r.raw(4 * c, f"{what} scales"), "<f4")
    elif source == 1:
        k = r.varint(f"{what} scale tensor", max(0, len(decoded) - 1))
        if k >= len(decoded) or len(decoded[k]) != 4 * c:
            raise CorruptEncodingError(
                f"{what}: scale tensor {k} is not {c} float32 values decoded earlier"
            )
        scale = np.frombuffer(decoded[k], "<f4")
    else:
        raise CorruptEncodingError(f"{what}: unknown scale source {source}")
    zp = decode_stream(r, c, f"{what} zero points")
    if zp.size != c:
        raise CorruptEncodingError(f"{what}: {zp.size} zero points, expected {c}")
    zp = zp.view(np.int8).astype(np.int16) if signed else zp.astype(np.int16)
    res = decode_stream(r, length, f"{what} residuals")
    if res.size != length:
        raise CorruptEncodingError(f"{what}: {res.size} residuals, expected {length}")
    pred = _quant_predict_bytes(np.frombuffer(old, "<f4"), scale, zp, bool(signed))
    pred += res  # uint8 wraps: (prediction + residual) % 256
    return pred.data
