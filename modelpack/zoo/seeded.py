"""Seeded (untrained) weights for layers that have no trained values here.

Every layer draws from its own generator, seeded from the model's seed and the
layer's name, so one layer's values never depend on which other layers exist
and a build is reproducible bit for bit.
"""

from __future__ import annotations

import zlib

import numpy as np

from modelpack.deepcompression import LayerTensors


def layer_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def he_conv(
    seed: int, name: str, shape: tuple[int, ...], *, std: float | None = None
) -> LayerTensors:
    """He-normal weights (the usual ReLU init), zero bias."""
    fan_in = int(np.prod(shape[1:]))
    scale = std if std is not None else float(np.sqrt(2.0 / fan_in))
    w = layer_rng(seed, name).standard_normal(size=shape, dtype=np.float32) * np.float32(scale)
    return LayerTensors(name, w.astype(np.float32), np.zeros(shape[0], dtype=np.float32))


def seeded_fire(seed: int, idx: int, in_ch: int, squeeze: int, expand: int) -> list[LayerTensors]:
    p = f"fire{idx}"
    return [
        he_conv(seed, f"{p}/squeeze1x1", (squeeze, in_ch, 1, 1)),
        he_conv(seed, f"{p}/expand1x1", (expand, squeeze, 1, 1)),
        he_conv(seed, f"{p}/expand3x3", (expand, squeeze, 3, 3)),
    ]
