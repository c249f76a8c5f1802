"""The model zoo: ONNX graphs built on demand, deterministically.

``build(name)`` returns the ONNX bytes of a zoo model; the same name gives the
same bytes on every build. Each model embeds its ``ModelInfo`` (kind,
preprocessing, provenance, self-test) in ``metadata_props``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from modelpack.zoo.squeezenet import build_squeezenet_v10


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
}


def names() -> list[str]:
    return list(MODELS)


def build(name: str) -> bytes:
    """The ONNX bytes of zoo model ``name`` (see ``names()``)."""
    try:
        entry = MODELS[name]
    except KeyError:
        raise KeyError(f"unknown zoo model {name!r}; known: {', '.join(MODELS)}") from None
    return entry.builder()
