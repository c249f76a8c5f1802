"""Shared pytest fixtures."""

import pytest


@pytest.fixture(scope="session")
def squeezenet_bytes() -> bytes:
    """The ONNX bytes of SqueezeNet v1.0 with the real weights, built once per session."""
    from modelpack import zoo

    return zoo.build("squeezenet1.0")
