"""Small helpers shared by tests (not fixtures)."""

from __future__ import annotations

import dataclasses

import onnx

from modelpack.runtime import read_model_info, set_model_info


def with_provenance(model_bytes: bytes, note: str) -> bytes:
    """Same weights, different package metadata: a new version with new bytes."""
    model = onnx.load_model_from_string(model_bytes)
    info = read_model_info(model)
    assert info is not None
    set_model_info(model, dataclasses.replace(info, provenance=f"{info.provenance} | {note}"))
    return model.SerializeToString(deterministic=True)


def publish_released(registry, name: str, version: str, data: bytes, **kw):
    """Publish, then release to the whole fleet: what a test that expects vehicles to install needs.

    Publishing alone reaches no vehicle (issue 12); ``kw`` goes to ``publish_bytes``.
    """
    rec = registry.publish_bytes(name, version, data, **kw)
    registry.release(name, version)
    return rec
