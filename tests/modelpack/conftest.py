"""Zoo models built once per test session (each build is deterministic)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def squeezedet_bytes() -> bytes:
    from modelpack.zoo.squeezedet import build_squeezedet

    return build_squeezedet()


@pytest.fixture(scope="session")
def squeezenet11_bytes() -> bytes:
    from modelpack.zoo.squeezenet11 import build_squeezenet_v11

    return build_squeezenet_v11()
