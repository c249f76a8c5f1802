"""Prometheus metrics of one replica (SQLite, no PostgreSQL needed)."""

from __future__ import annotations

import urllib.request

import grpc
import pytest

from otawire.v1 import ota_pb2, ota_pb2_grpc
from server.metrics import RegistryMetrics
from server.registry import Registry
from server.service import create_server
from testkit.helpers import publish_released
from tests.scaleout.helpers import tiny_onnx
from vehicle_agent.agent import VehicleAgent


@pytest.fixture
def metered(tmp_path, keys_dir, pki):
    """A metered registry as deployed: mutual TLS, director on."""
    from otawire import tls
    from tests.conftest import RunningRegistry

    reg = Registry.open(tmp_path / "registry", keys_dir, ca_pem=(pki / tls.CA_CERT).read_bytes())
    metrics = RegistryMetrics(
        codec_of=lambda sha: e.codec if (e := reg.store.encoding_by_blob(sha)) else None
    )
    server, port = create_server(
        reg,
        "127.0.0.1:0",
        metrics=metrics,
        tls_files=tls.TlsFiles.in_dir(pki, "server", "registry"),
    )
    try:
        yield (
            reg,
            metrics,
            RunningRegistry(reg, f"127.0.0.1:{port}", tmp_path / "registry", keys_dir, pki),
        )
    finally:
        server.stop(None)
        reg.store.close()


def test_calls_are_counted_by_status_and_timed(metered) -> None:
    _reg, m, running = metered
    with running.channel("vehicle", "car-1") as ch:
        stub = ota_pb2_grpc.VehicleStub(ch)
        with pytest.raises(grpc.RpcError):
            stub.CheckForUpdate(
                ota_pb2.CheckForUpdateRequest(vehicle_id="car-2")
            )  # not the certificate's vehicle
        stub.CheckForUpdate(ota_pb2.CheckForUpdateRequest(vehicle_id="car-1"))
        with pytest.raises(grpc.RpcError):
            list(
                stub.Download(
                    ota_pb2.DownloadRequest(
                        kind=ota_pb2.FILE_KIND_TARGET, path="x/" + "0" * 64 + ".y"
                    )
                )
            )
    vehicle = {"service": "ota.v1.Vehicle"}
    assert (
        m.sample(
            "ota_registry_requests_total", {**vehicle, "method": "CheckForUpdate", "code": "OK"}
        )
        == 1
    )
    assert (
        m.sample(
            "ota_registry_requests_total",
            {**vehicle, "method": "CheckForUpdate", "code": "PERMISSION_DENIED"},
        )
        == 1
    )
    assert (
        m.sample(
            "ota_registry_requests_total", {**vehicle, "method": "Download", "code": "NOT_FOUND"}
        )
        == 1
    )
    assert (
        m.sample("ota_registry_request_seconds_count", {**vehicle, "method": "CheckForUpdate"}) == 2
    )
    assert m.sample("ota_registry_downloads_in_flight", {"kind": "target"}) == 0


def test_bytes_served_by_encoding_and_resumes(metered, tmp_path, keys_dir) -> None:
    reg, m, running = metered
    model = tiny_onnx("metered")
    rec = publish_released(reg, "tiny", "1.0.0", model)
    agent = VehicleAgent(running.agent_config("car-1", tmp_path / "car"))
    try:
        [outcome] = agent.update_once()
    finally:
        agent.close()
    label = (
        {"kind": "encoding", "encoding": outcome.encoding}
        if outcome.encoding != "full"
        else {"kind": "target", "encoding": "full"}
    )
    assert m.sample("ota_registry_bytes_served_total", label) == outcome.bytes_downloaded > 0
    assert (
        m.sample("ota_registry_bytes_served_total", {"kind": "metadata", "encoding": "metadata"})
        > 0
    )
    path = f"tiny/{rec.sha256}.1.0.0.onnx"
    with running.channel("vehicle", "car-1") as ch:  # a vehicle resuming a full download at byte 10
        chunks = list(
            ota_pb2_grpc.VehicleStub(ch).Download(
                ota_pb2.DownloadRequest(kind=ota_pb2.FILE_KIND_TARGET, path=path, offset=10)
            )
        )
    assert b"".join(c.data for c in chunks) == model[10:]
    assert m.sample("ota_registry_download_resumes_total", {"kind": "target"}) == 1


def test_metrics_are_served_over_http(metered) -> None:
    _, m, _ = metered
    server, port = m.serve_http("127.0.0.1:0")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    finally:
        server.shutdown()
    assert "# TYPE ota_registry_requests_total counter" in text
    assert (
        "ota_registry_request_seconds_bucket" in text
        or "# TYPE ota_registry_request_seconds histogram" in text
    )
