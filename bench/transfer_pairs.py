"""The model pairs the transfer benchmark runs on.

Uses ``modelpack.lineage`` when it exists; until then, pairs derived
reproducibly (fixed seeds) from the real SqueezeNet v1.0 weights, labelled
"derived" in every table. What each derived pair stands for:

* head retrain: conv10 weights moved (noise of 5% of their spread) and
  re-quantised to a fresh 256-entry codebook, pruning mask kept; all other
  layers frozen (a retrained classifier head).
* codebook retrain: every layer's 256 codebook values moved by ~2%, indices
  kept (Deep Compression's codebook fine-tuning).
* dense fine-tune: every non-zero weight and bias times (1 + N(0, 0.01)),
  float32, pruning mask kept: no codebook structure left.
* next fine-tune: the same step again from the fine-tuned model.
* fp32 -> int8: ONNX Runtime's real ``quantize_dynamic`` (QInt8 weights).
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelpack import deepcompression as dc
from modelpack import zoo
from modelpack.zoo.squeezenet import build_from_tensors


@dataclass(frozen=True)
class Pair:
    name: str
    kind: str  # "first" | "structured" | "dense" | "quantised" | "architecture"
    provenance: str
    base: bytes | None
    new: bytes


def _requantise(w: np.ndarray, rng: np.random.Generator, spread: float) -> np.ndarray:
    mask = w != 0
    moved = w[mask] + rng.normal(0, spread * float(w[mask].std()), size=int(mask.sum()))
    centroids = np.quantile(moved, np.linspace(0, 1, 255)).astype(np.float32)
    centroids = centroids[centroids != 0]
    idx = np.clip(np.searchsorted(centroids, moved), 0, centroids.size - 1)
    out = np.zeros_like(w)
    out[mask] = centroids[idx]
    return out


def _dense_step(tensors: list[dc.LayerTensors], seed: int) -> list[dc.LayerTensors]:
    rng = np.random.default_rng(seed)
    out = []
    for t in tensors:
        w = (t.weight * (1 + rng.normal(0, 0.01, size=t.weight.shape))).astype(np.float32)
        b = (t.bias * (1 + rng.normal(0, 0.01, size=t.bias.shape))).astype(np.float32)
        out.append(dataclasses.replace(t, weight=w, bias=b))
    return out


def derived_pairs() -> list[Pair]:
    tensors = dc.load_shipped_tensors()
    v10 = zoo.build("squeezenet1.0")
    pairs = [Pair("first install (v1.0)", "first", "real weights", None, v10)]

    rng = np.random.default_rng(20)
    head = [
        dataclasses.replace(t, weight=_requantise(t.weight, rng, 0.05), bias=(t.bias + rng.normal(0, 0.01, t.bias.shape)).astype(np.float32))
        if t.name == "conv10"
        else t
        for t in tensors
    ]
    pairs.append(Pair("v1.0 -> head retrain", "structured", "derived (seed 20)", v10, build_from_tensors(head)))

    rng = np.random.default_rng(21)
    books = []
    for t in tensors:
        values, inverse = np.unique(t.weight, return_inverse=True)
        moved = np.where(values == 0, 0, values * (1 + rng.normal(0, 0.02, size=values.size))).astype(np.float32)
        books.append(dataclasses.replace(t, weight=moved[inverse.reshape(-1)].reshape(t.weight.shape)))
    pairs.append(Pair("v1.0 -> codebook retrain", "structured", "derived (seed 21)", v10, build_from_tensors(books)))

    ft1 = _dense_step(tensors, 22)
    ft1_bytes = build_from_tensors(ft1)
    pairs.append(Pair("v1.0 -> dense fine-tune", "dense", "derived (seed 22)", v10, ft1_bytes))
    pairs.append(
        Pair("fine-tune -> next fine-tune", "dense", "derived (seed 23)", ft1_bytes, build_from_tensors(_dense_step(ft1, 23)))
    )

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "fp32.onnx", Path(d) / "int8.onnx"
        src.write_bytes(v10)
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
        int8 = dst.read_bytes()
    pairs.append(Pair("v1.0 fp32 -> int8", "quantised", "ORT quantize_dynamic of the real model", v10, int8))
    return pairs


def lineage_pairs(out_dir: Path) -> list[Pair] | None:
    """Pairs from ``modelpack.lineage`` once that lands (None until then)."""
    try:
        from modelpack import lineage  # type: ignore[attr-defined]
    except ImportError:
        return None
    pairs_fn = getattr(lineage, "benchmark_pairs", None)
    if pairs_fn is None:
        return None
    return [Pair(p.name, p.kind, p.provenance, p.base, p.new) for p in pairs_fn(out_dir)]


def all_pairs(out_dir: Path) -> tuple[list[Pair], str]:
    pairs = lineage_pairs(out_dir)
    if pairs is not None:
        return pairs, "modelpack.lineage"
    return derived_pairs(), "derived in bench/transfer_pairs.py (modelpack.lineage not merged yet)"
