"""Publishing over real gRPC: validation, immutability, signing."""

from __future__ import annotations

import hashlib

import grpc
import pytest
from tuf.api.metadata import Metadata

from otawire.v1 import ota_pb2, ota_pb2_grpc
from server.client import PublishError
from server.errors import RegistryError
from server.models import semver_key
from testkit.helpers import with_provenance


def test_upload_is_signed_as_a_tuf_target(registry_server, squeezenet_bytes) -> None:
    with registry_server.publisher() as pub:
        resp = pub.upload(squeezenet_bytes, "squeezenet1.0", "1.0.0", hardware_ids=("ecu-a",))
        [listed] = pub.list()
    assert resp.sha256 == hashlib.sha256(squeezenet_bytes).hexdigest()
    assert (listed.name, listed.version, listed.length) == (
        "squeezenet1.0",
        "1.0.0",
        len(squeezenet_bytes),
    )
    tuf = registry_server.registry.tuf
    targets = Metadata.from_bytes(tuf.get_file("2.targets.json"))
    root = Metadata.from_bytes(tuf.get_file("1.root.json"))
    root.signed.verify_delegate(
        "targets", targets.signed_bytes, targets.signatures
    )  # raises if unsigned
    tf = targets.signed.targets["squeezenet1.0/1.0.0.onnx"]
    assert tf.hashes["sha256"] == resp.sha256 and tf.length == len(squeezenet_bytes)
    assert tf.custom["hardware_ids"] == ["ecu-a"]
    assert '"kind": "classifier"' in tf.custom["model_info_json"]


def test_non_onnx_upload_is_refused_with_a_clear_error(registry_server) -> None:
    with registry_server.publisher() as pub:
        with pytest.raises(RegistryError, match="not an ONNX model"):
            pub.upload(
                b"#!/bin/sh\necho pwned\n", "squeezenet1.0", "1.0.0"
            )  # refused before upload
        with pytest.raises(PublishError, match="INVALID_ARGUMENT.*not an ONNX model"):
            pub.upload(b"#!/bin/sh\necho pwned\n", "squeezenet1.0", "1.0.0", validate=False)
        assert pub.list() == []
    assert "squeezenet1.0/1.0.0.onnx" not in registry_server.registry.tuf.targets()


def test_broken_onnx_fails_the_checker(registry_server, squeezenet_bytes) -> None:
    import onnx

    model = onnx.load_model_from_string(squeezenet_bytes)
    model.graph.node[0].input[0] = "no_such_tensor"
    with registry_server.publisher() as pub, pytest.raises(PublishError, match="onnx.checker"):
        pub.upload(model.SerializeToString(), "squeezenet1.0", "1.0.0", validate=False)


def test_versions_are_immutable(registry_server, squeezenet_bytes) -> None:
    with registry_server.publisher() as pub:
        pub.upload(squeezenet_bytes, "squeezenet1.0", "1.0.0")
        pub.upload(squeezenet_bytes, "squeezenet1.0", "1.0.0")  # same bytes: idempotent
        with pytest.raises(PublishError, match="ALREADY_EXISTS.*immutable"):
            pub.upload(with_provenance(squeezenet_bytes, "other"), "squeezenet1.0", "1.0.0")
        assert len(pub.list()) == 1


def test_truncated_and_corrupted_uploads_are_refused(registry_server, squeezenet_bytes) -> None:
    channel = registry_server.channel()
    stub = ota_pb2_grpc.PublisherStub(channel)
    header = ota_pb2.UploadHeader(
        name="m",
        version="1.0.0",
        length=len(squeezenet_bytes),
        sha256=hashlib.sha256(squeezenet_bytes).hexdigest(),
    )
    truncated = [
        ota_pb2.UploadModelRequest(header=header),
        ota_pb2.UploadModelRequest(chunk=squeezenet_bytes[:1000]),
    ]
    with pytest.raises(grpc.RpcError) as e:
        stub.UploadModel(iter(truncated), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "truncated" in e.value.details()
    flipped = bytearray(squeezenet_bytes)
    flipped[10] ^= 1
    corrupted = [
        ota_pb2.UploadModelRequest(header=header),
        ota_pb2.UploadModelRequest(chunk=bytes(flipped[:3_000_000])),
        ota_pb2.UploadModelRequest(chunk=bytes(flipped[3_000_000:])),
    ]
    with pytest.raises(grpc.RpcError) as e:
        stub.UploadModel(iter(corrupted), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "corrupted" in e.value.details()
    no_header = [ota_pb2.UploadModelRequest(chunk=b"x")]
    with pytest.raises(grpc.RpcError) as e:
        stub.UploadModel(iter(no_header), timeout=10)
    assert "header" in e.value.details()
    channel.close()
    assert registry_server.registry.list_versions() == []


@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "01.0.0", "1.0.0-", ""])
def test_bad_versions_are_refused(version: str) -> None:
    with pytest.raises(RegistryError, match="semantic version"):
        semver_key(version)


def test_semver_ordering() -> None:
    ordered = ["0.9.9", "1.0.0-rc.1", "1.0.0-rc.2", "1.0.0", "1.0.1", "1.10.0"]
    assert sorted(ordered, key=semver_key) == ordered


def test_each_publish_produces_a_monotonic_signed_chain(registry_server, squeezenet_bytes) -> None:
    reg = registry_server.registry
    for v in ["1.0.0", "1.0.1", "1.1.0"]:
        reg.publish_bytes("squeezenet1.0", v, with_provenance(squeezenet_bytes, v))
    ts = Metadata.from_bytes(reg.tuf.get_file("timestamp.json"))
    snap = Metadata.from_bytes(reg.tuf.get_file(f"{ts.signed.snapshot_meta.version}.snapshot.json"))
    targets_v = snap.signed.meta["targets.json"].version
    assert targets_v == 4  # empty v1, then one version per publish
    assert set(
        Metadata.from_bytes(reg.tuf.get_file(f"{targets_v}.targets.json")).signed.targets
    ) == {"squeezenet1.0/1.0.0.onnx", "squeezenet1.0/1.0.1.onnx", "squeezenet1.0/1.1.0.onnx"}
    with pytest.raises(FileNotFoundError):
        reg.tuf.get_file("99.targets.json")


def test_list_models_pages_by_resource_name(registry_server, squeezenet_bytes) -> None:
    """ListModels pages (page_size/page_token), names each version, and times it."""
    reg = registry_server.registry
    for v in ["1.0.0", "1.0.1", "1.1.0"]:
        reg.publish_bytes("squeezenet1.0", v, with_provenance(squeezenet_bytes, v))
    with registry_server.publisher() as pub:
        assert [m.version for m in pub.list(page_size=1)] == ["1.0.0", "1.0.1", "1.1.0"]
        stub = ota_pb2_grpc.PublisherStub(pub._channel)
        first = stub.ListModels(ota_pb2.ListModelsRequest(page_size=2), timeout=30)
        assert [m.resource_name for m in first.versions] == [
            "models/squeezenet1.0/versions/1.0.0",
            "models/squeezenet1.0/versions/1.0.1",
        ]
        assert first.next_page_token
        v = first.versions[0]
        rec = registry_server.registry.store.get_model(v.name, v.version)
        assert rec is not None and v.publish_time.ToJsonString() == rec.published_at
        rest = stub.ListModels(
            ota_pb2.ListModelsRequest(page_size=2, page_token=first.next_page_token), timeout=30
        )
        assert [m.version for m in rest.versions] == ["1.1.0"] and rest.next_page_token == ""
        with pytest.raises(grpc.RpcError) as err:
            stub.ListModels(ota_pb2.ListModelsRequest(page_token="bogus"), timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a next_page_token" in err.value.details()
