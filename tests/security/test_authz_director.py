"""Mutual TLS authorisation and the director's manifests and instructions, over real gRPC."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from tuf.api.metadata import Metadata

from otawire import tls
from otawire.v1 import ota_pb2, ota_pb2_grpc
from server.errors import NotFound, PermissionDenied, Replay
from testkit.helpers import publish_released, with_provenance
from tests.conftest import vehicle_identity
from vehicle_agent.manifest import VersionManifest, sign_manifest

MODEL = "squeezenet1.0"


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code()


def test_each_api_refuses_the_other_roles_certificate(registry_server) -> None:
    with registry_server.channel("vehicle", "car-1") as ch:
        pub = ota_pb2_grpc.PublisherStub(ch)
        assert (
            _code(lambda: pub.ListModels(ota_pb2.ListModelsRequest(), timeout=10))
            == grpc.StatusCode.PERMISSION_DENIED
        )
        assert (
            _code(
                lambda: pub.PutMetadata(
                    ota_pb2.PutMetadataRequest(
                        metadata=ota_pb2.SignedMetadata(role="root", data=b"{}")
                    ),
                    timeout=10,
                )
            )
            == grpc.StatusCode.PERMISSION_DENIED
        )
    with registry_server.channel("publisher", "ml-team") as ch:
        vehicle = ota_pb2_grpc.VehicleStub(ch)
        assert (
            _code(
                lambda: vehicle.CheckForUpdate(
                    ota_pb2.CheckForUpdateRequest(vehicle_id="car-1"), timeout=10
                )
            )
            == grpc.StatusCode.PERMISSION_DENIED
        )


def test_a_vehicle_acts_only_for_itself(registry_server) -> None:
    with registry_server.channel("vehicle", "car-1") as ch:
        vehicle = ota_pb2_grpc.VehicleStub(ch)
        assert (
            _code(
                lambda: vehicle.CheckForUpdate(
                    ota_pb2.CheckForUpdateRequest(vehicle_id="car-2"), timeout=10
                )
            )
            == grpc.StatusCode.PERMISSION_DENIED
        )
        report = ota_pb2.ReportInstallRequest(
            vehicle_id="car-2", name=MODEL, status=ota_pb2.INSTALL_STATUS_FAILED
        )
        assert (
            _code(lambda: vehicle.ReportInstall(report, timeout=10))
            == grpc.StatusCode.PERMISSION_DENIED
        )
    assert registry_server.registry.store.list_reports("car-2") == []


def test_no_certificate_or_a_foreign_ca_gets_no_connection(registry_server, tmp_path: Path) -> None:
    ca = (registry_server.pki / tls.CA_CERT).read_bytes()
    with grpc.secure_channel(
        registry_server.address, grpc.ssl_channel_credentials(root_certificates=ca)
    ) as ch:
        assert (
            _code(
                lambda: ota_pb2_grpc.VehicleStub(ch).CheckForUpdate(
                    ota_pb2.CheckForUpdateRequest(vehicle_id="car-1"), timeout=10
                )
            )
            == grpc.StatusCode.UNAVAILABLE
        )
    tls.make_ca(tmp_path / "rogue")
    rogue = tls.issue(tmp_path / "rogue", "vehicle", "car-1")
    _, cert, key = rogue.read()
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )
    with grpc.secure_channel(registry_server.address, creds) as ch:
        assert (
            _code(
                lambda: ota_pb2_grpc.VehicleStub(ch).CheckForUpdate(
                    ota_pb2.CheckForUpdateRequest(vehicle_id="car-1"), timeout=10
                )
            )
            == grpc.StatusCode.UNAVAILABLE
        )


def _manifest(
    pki: Path, vehicle_id: str, counter: int, body_id: str | None = None
) -> ota_pb2.SignedManifest:
    m = VersionManifest(vehicle_id=body_id or vehicle_id, hardware_id="ecu", counter=counter)
    return sign_manifest(m, vehicle_identity(pki, vehicle_id))


def test_director_rejects_manifests_that_fail_to_verify(registry_server, tmp_path: Path) -> None:
    d, pki = registry_server.registry.director, registry_server.pki
    car1 = tls.Identity("vehicle", "car-1")
    good = _manifest(pki, "car-1", 10)
    assert d.process_manifest(good, car1, None).counter == 10
    with pytest.raises(Replay, match="replayed"):
        d.process_manifest(good, car1, None)
    tampered = ota_pb2.SignedManifest()
    tampered.CopyFrom(_manifest(pki, "car-1", 11))
    tampered.signed = tampered.signed.replace(b'"ecu"', b'"ecu-x"')
    with pytest.raises(PermissionDenied, match="signature does not verify"):
        d.process_manifest(tampered, car1, None)
    with pytest.raises(PermissionDenied, match="names vehicle 'car-1' but is signed by 'car-2'"):
        d.process_manifest(_manifest(pki, "car-2", 12, body_id="car-1"), None, None)
    with pytest.raises(PermissionDenied, match="over the connection of car-1"):
        d.process_manifest(_manifest(pki, "car-2", 13), car1, None)
    tls.make_ca(tmp_path / "rogue")
    rogue = sign_manifest(
        VersionManifest("car-1", "ecu", 14), tls.issue(tmp_path / "rogue", "vehicle", "car-1")
    )
    with pytest.raises(PermissionDenied, match="not issued by the fleet CA"):
        d.process_manifest(rogue, None, None)
    assert registry_server.registry.store.get_manifest("car-1").counter == 10
    # Over the wire, a replay is refused with a status the agent can report.
    with registry_server.channel("vehicle", "car-1") as ch:
        assert (
            _code(
                lambda: ota_pb2_grpc.VehicleStub(ch).SubmitManifest(
                    ota_pb2.SubmitManifestRequest(manifest=good), timeout=10
                )
            )
            == grpc.StatusCode.FAILED_PRECONDITION
        )


def _director_targets(registry_server, vehicle_id: str) -> dict:
    with registry_server.channel("vehicle", vehicle_id) as ch:
        stub = ota_pb2_grpc.VehicleStub(ch)
        for name in ("timestamp.json", "targets.json"):  # timestamp first: it refreshes the chain
            data = b"".join(
                c.data
                for c in stub.Download(
                    ota_pb2.DownloadRequest(
                        kind=ota_pb2.FILE_KIND_METADATA, path=f"director/{name}"
                    ),
                    timeout=10,
                )
            )
    return {
        p: (t.custom["version"], t.custom["hardware_id"])
        for p, t in Metadata.from_bytes(data).signed.targets.items()
    }


def test_director_instructs_each_vehicle_its_own_assignment(
    registry_server, squeezenet_bytes
) -> None:
    reg, pki = registry_server.registry, registry_server.pki
    publish_released(reg, MODEL, "1.0.0", squeezenet_bytes)
    publish_released(reg, MODEL, "1.0.1", with_provenance(squeezenet_bytes, "1.0.1"))
    assert reg.director.desired("car-1") == {}, "nothing for a vehicle without a verified manifest"
    for vid in ("car-1", "car-2"):
        reg.director.process_manifest(_manifest(pki, vid, 1), None, None)
    reg.director.assign("car-1", MODEL, "1.0.0")
    assert _director_targets(registry_server, "car-1") == {f"{MODEL}/1.0.0.onnx": ("1.0.0", "ecu")}
    assert _director_targets(registry_server, "car-2") == {f"{MODEL}/1.0.1.onnx": ("1.0.1", "ecu")}
    reg.director.assign("car-1", MODEL, None)
    assert _director_targets(registry_server, "car-1") == {f"{MODEL}/1.0.1.onnx": ("1.0.1", "ecu")}
    with pytest.raises(NotFound, match="no such published version"):
        reg.director.assign("car-1", MODEL, "9.9.9")
    manifest = json.loads(reg.store.get_manifest("car-2").manifest_json)
    assert manifest["vehicle_id"] == "car-2" and manifest["counter"] == 1
