"""The model pairs the transfer benchmark runs on.

From ``modelpack.lineage`` (real SqueezeNet v1.0 and its realistic
successors, each with its provenance in its ModelInfo): the first install,
base -> full fine-tune (PyTorch SGD on every layer, when the bench extra is
installed), base -> head retrain (conv10 retrained by gradient descent, mask
kept), base -> 6-bit codebooks, base -> static int8 (QDQ, per-channel). From
the zoo: SqueezeNet 1.0 -> 1.1 (1.1's weights are seeded: it has no released
trained weights here). The lineage has no second fine-tune and no codebook
retrain, so these are derived reproducibly (fixed seeds) from the real
weights and labelled "derived" in every table:

* codebook retrain: every layer's 256 codebook values moved by ~2%, indices
  kept (Deep Compression's codebook fine-tuning).
* dense fine-tune: every non-zero weight and bias times (1 + N(0, 0.01)),
  float32, pruning mask kept: no codebook structure left.
* next fine-tune: the same step again from the fine-tuned model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelpack import deepcompression as dc
from modelpack import zoo
from modelpack.zoo.squeezenet import build_from_tensors


@dataclass(frozen=True)
class Pair:
    name: str
    kind: str  # "first" | "structured" | "head" (frozen layers, dense head) | "dense" | "quantised" | "architecture"
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


def derived_pairs(v10: bytes) -> list[Pair]:
    tensors = dc.load_shipped_tensors()
    pairs = []
    rng = np.random.default_rng(21)
    books = []
    for t in tensors:
        values, inverse = np.unique(t.weight, return_inverse=True)
        moved = np.where(
            values == 0, 0, values * (1 + rng.normal(0, 0.02, size=values.size))
        ).astype(np.float32)
        books.append(
            dataclasses.replace(t, weight=moved[inverse.reshape(-1)].reshape(t.weight.shape))
        )
    pairs.append(
        Pair(
            "v1.0 -> codebook retrain",
            "structured",
            "derived, seed 21",
            v10,
            build_from_tensors(books),
        )
    )
    ft1 = _dense_step(tensors, 22)
    ft1_bytes = build_from_tensors(ft1)
    pairs.append(Pair("v1.0 -> dense fine-tune", "dense", "derived, seed 22", v10, ft1_bytes))
    pairs.append(
        Pair(
            "fine-tune -> next fine-tune",
            "dense",
            "derived, seed 23",
            ft1_bytes,
            build_from_tensors(_dense_step(ft1, 23)),
        )
    )
    return pairs


def lineage_pairs(out_dir: Path) -> list[Pair]:
    from modelpack.lineage import LineageRecipe, build_lineage

    try:
        import torch  # noqa: F401  (the full fine-tune member needs the bench extra)

        recipe = LineageRecipe(finetune=True)
    except ImportError:
        recipe = LineageRecipe()
    paths = build_lineage(out_dir, recipe=recipe)
    base = paths["base"].read_bytes()
    member = {k: paths[k].read_bytes() for k in ("head", "cb6", "int8", "finetune") if k in paths}
    finetune = (
        [
            Pair(
                "v1.0 -> full fine-tune",
                "dense",
                "lineage: PyTorch SGD on all layers",
                base,
                member["finetune"],
            )
        ]
        if "finetune" in member
        else []
    )
    return finetune + [
        Pair("first install (v1.0)", "first", "lineage base: real weights", None, base),
        Pair(
            "v1.0 -> head retrain", "head", "lineage: conv10 retrained by GD", base, member["head"]
        ),
        Pair(
            "v1.0 -> 6-bit codebooks",
            "structured",
            "lineage: re-clustered codebooks",
            base,
            member["cb6"],
        ),
        Pair(
            "v1.0 fp32 -> int8",
            "quantised",
            "lineage: ORT static QDQ, per-channel",
            base,
            member["int8"],
        ),
        Pair(
            "SqueezeNet 1.0 -> 1.1",
            "architecture",
            "zoo: 1.1 weights seeded",
            zoo.build("squeezenet1.0"),
            zoo.build("squeezenet1.1"),
        ),
    ]


def all_pairs(out_dir: Path) -> tuple[list[Pair], str]:
    return lineage_pairs(out_dir) + derived_pairs(
        zoo.build("squeezenet1.0")
    ), "modelpack.lineage, the zoo, and derived pairs"
