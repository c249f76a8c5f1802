"""The model zoo: ONNX graphs built on demand, deterministically.

``build(name)`` returns the ONNX bytes of a zoo model; the same name gives the
same bytes on every build. Each model embeds its ``ModelInfo`` (kind,
preprocessing, provenance, self-test) in ``metadata_props``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelpack import cache
from modelpack.zoo.alexnet import build_alexnet
from modelpack.zoo.squeezedet import build_squeezedet
from modelpack.zoo.squeezenet import build_squeezenet_v10
from modelpack.zoo.squeezenet11 import build_squeezenet_v11


@dataclass(frozen=True)
class ZooModel:
    name: str
    builder: Callable[[], bytes]
    trained: str  # "yes", "no (seeded)", "partly (...)": repeated in every report
    description: str


MODELS: dict[str, ZooModel] = {
    "squeezenet1.0": ZooModel(
        "squeezenet1.0",
        build_squeezenet_v10,
        "yes",
        "SqueezeNet v1.0, real trained ImageNet weights (Deep Compression release)",
    ),
    "squeezenet1.1": ZooModel(
        "squeezenet1.1",
        build_squeezenet_v11,
        "no (seeded)",
        "SqueezeNet v1.1 graph, seeded weights: UNTRAINED",
    ),
    "squeezedet": ZooModel(
        "squeezedet",
        build_squeezedet,
        "partly (fire3..9 real ImageNet)",
        "SqueezeDet (KITTI); fire3..fire9 from real v1.0, other layers seeded: UNTRAINED detector",
    ),
    "alexnet": ZooModel(
        "alexnet",
        build_alexnet,
        "no (seeded)",
        "AlexNet (BVLC), seeded weights: size/speed baseline only, ~244 MB, UNTRAINED",
    ),
}

# Bump when any builder's output changes, so stale cache entries are not reused.
ZOO_VERSION = "2"


def names() -> list[str]:
    return list(MODELS)


def build(name: str) -> bytes:
    """The ONNX bytes of zoo model ``name`` (see ``names()``)."""
    try:
        entry = MODELS[name]
    except KeyError:
        raise KeyError(f"unknown zoo model {name!r}; known: {', '.join(MODELS)}") from None
    return entry.builder()


def build_cached(name: str, *, root: Path | None = None) -> Path:
    """Zoo model ``name`` as a file in the cache (built on first use)."""
    if name not in MODELS:
        raise KeyError(f"unknown zoo model {name!r}; known: {', '.join(MODELS)}")
    return cache.cached(f"zoo/v{ZOO_VERSION}/{name}.onnx", MODELS[name].builder, root=root)
