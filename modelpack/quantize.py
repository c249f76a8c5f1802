"""Lossy successors of a model: int8 (ONNX Runtime static quantization, QDQ)
and Deep-Compression-style codebooks with fewer bits.

Both are new versions with their own bytes and a measured fidelity; neither
is a transport trick (see the design notes).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from modelpack import deepcompression as dc
from modelpack.fidelity import evaluation_views, render
from modelpack.imaging import pixels_to_tensor, to_pixels
from modelpack.metadata import ModelInfo
from modelpack.runtime import read_model_info

log = logging.getLogger(__name__)

CALIBRATION_SEED = 202


class ViewsReader(CalibrationDataReader):
    """Calibration inputs: seeded views of the real photos (not the fidelity set's seed)."""

    def __init__(self, info: ModelInfo, n: int, seed: int) -> None:
        self._info = info
        self._views = iter(evaluation_views(n, seed=seed))
        self._cache: dict = {}

    def get_next(self) -> dict[str, np.ndarray] | None:
        view = next(self._views, None)
        if view is None:
            return None
        pre = self._info.preprocessing
        return {
            self._info.input_name: pixels_to_tensor(to_pixels(render(view, self._cache), pre), pre)
        }


def quantize_int8(
    model_bytes: bytes, *, n_calibration: int = 32, seed: int = CALIBRATION_SEED
) -> onnx.ModelProto:
    """Static int8 quantization in QDQ form, per-channel weights, MinMax
    calibration on ``n_calibration`` views. Returns the model without any
    squeeze-ota metadata (the caller writes its own)."""
    info = read_model_info(model_bytes)
    if info is None:
        raise ValueError("model has no ModelInfo")
    src = onnx.load_model_from_string(model_bytes)
    del src.metadata_props[:]
    root = logging.getLogger()
    level = root.level
    # onnxruntime.quantization warns on the root logger that we skipped its optional
    # pre-processing pass (shape inference + graph fusions); the graph is already plain.
    root.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix="ota-int8-") as tmp:
            out = Path(tmp) / "int8.onnx"
            quantize_static(
                src,
                out,
                ViewsReader(info, n_calibration, seed),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
            model = onnx.load_model(out)
    finally:
        root.setLevel(level)
    del model.metadata_props[:]
    return model


def kmeans_1d(values: np.ndarray, counts: np.ndarray, k: int, iters: int = 30) -> np.ndarray:
    """Weighted 1-D k-means with linear initialisation (Deep Compression's
    choice: it keeps the rare large weights). Returns sorted centroids."""
    values = values.astype(np.float64)
    if values.size <= k:
        return np.sort(values)
    cent = np.linspace(values.min(), values.max(), k)
    for _ in range(iters):
        assign = np.argmin(np.abs(values[:, None] - cent[None, :]), axis=1)
        sums = np.bincount(assign, weights=values * counts, minlength=k)
        tots = np.bincount(assign, weights=counts, minlength=k)
        moved = np.where(tots > 0, sums / np.where(tots > 0, tots, 1), cent)
        if np.allclose(moved, cent):
            break
        cent = moved
    return np.sort(cent)


def requantize_codebooks(layers: list[dc.DCLayer], bits: int) -> list[dc.LayerTensors]:
    """Each layer's non-zero weights clustered into 2**bits − 1 shared values
    (zero stays zero, so the pruning is kept): the float32 tensors of that model."""
    k = 2**bits - 1
    out = []
    for layer in layers:
        w = layer.weights()
        nz = w[w != 0]
        values, counts = np.unique(nz, return_counts=True)
        cent = kmeans_1d(values, counts.astype(np.float64), k).astype(np.float32)
        new = w.copy()
        if nz.size:
            idx = np.argmin(
                np.abs(nz[:, None].astype(np.float64) - cent[None, :].astype(np.float64)), axis=1
            )
            new[w != 0] = cent[idx]
        out.append(dc.LayerTensors(layer.name, new, layer.bias.copy()))
    return out
