"""The committed gRPC stubs must match what protoc generates from protos/."""

from __future__ import annotations

from pathlib import Path

import pytest

from otawire import protogen


def test_committed_stubs_are_not_stale(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    generated = protogen.generate(tmp_path)
    assert generated, "protoc generated nothing"
    committed_dir = protogen.REPO / "otawire" / "v1"
    for f in generated:
        committed = committed_dir / f.name
        assert committed.exists(), f"{committed} is missing: run `make protos`"
        assert committed.read_bytes() == f.read_bytes(), f"{committed} is stale: run `make protos`"


def test_stubs_import_and_expose_services() -> None:
    from otawire.v1 import ota_pb2, ota_pb2_grpc

    names = {s.name for s in ota_pb2.DESCRIPTOR.services_by_name.values()}
    assert names == {"Publisher", "Vehicle"}
    assert hasattr(ota_pb2_grpc, "VehicleServicer")
    # Download must accept a byte offset: resumable downloads depend on it.
    assert "offset" in ota_pb2.DownloadRequest.DESCRIPTOR.fields_by_name
