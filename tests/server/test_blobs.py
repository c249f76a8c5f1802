"""The content store keeps only what was accepted, and serves only what verifies (issue 12, items 3-4).

Uploads are staged apart from the store and committed only once accepted; every refusal
(and a cancelled stream) removes the staged file. ``ota registry gc`` removes blobs no
version or encoding references. A blob is checked against its sha256 when first read after
a start and by ``ota registry verify``; a bad one is taken out of service (logged, counted
in metrics) and neither it nor its encodings are offered.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from otawire import tls
from otawire.v1 import ota_pb2, ota_pb2_grpc
from server import encodings
from server.client import PublisherClient, PublishError
from server.models import model_target
from server.registry import Registry
from server.service import create_server
from server.signing.keys import Keystore
from server.signing.targets import sign_targets
from testkit.helpers import publish_released, with_provenance
from tests.cli_helpers import ota_cli
from tests.conftest import agent_config
from vehicle_agent.agent import VehicleAgent

NAME = "squeezenet1.0"


@dataclass
class Served:
    registry: Registry
    address: str
    data_dir: Path
    keys_dir: Path
    pki: Path

    @property
    def publisher_tls(self) -> tls.TlsFiles:
        return tls.TlsFiles.in_dir(self.pki, "publisher", "ml-team")

    def publisher(self) -> PublisherClient:
        return PublisherClient(self.address, tls_files=self.publisher_tls)


@contextmanager
def serve(
    data_dir: Path, keys_dir: Path, pki: Path, trust_keys: Path | None = None
) -> Iterator[Served]:
    """A real registry over ``data_dir`` on a free port; a new one each time is a restart."""
    reg = Registry.open(data_dir, keys_dir, ca_pem=(pki / tls.CA_CERT).read_bytes())
    server, port = create_server(
        reg, "127.0.0.1:0", tls_files=tls.TlsFiles.in_dir(pki, "server", "registry")
    )
    try:
        yield Served(reg, f"127.0.0.1:{port}", data_dir, trust_keys or keys_dir, pki)
    finally:
        server.stop(None)
        reg.store.close()


def store_snapshot(data_dir: Path) -> dict[str, str]:
    """Every file of the content store, by path, with its sha256."""
    root = data_dir / "blobs"
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def staged(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "staging").rglob("*") if p.is_file()]


@pytest.fixture
def offline_keys(tmp_path: Path) -> tuple[Keystore, Path]:
    """An offline keystore (targets key with the publisher) and the registry's online copy."""
    ks = Keystore.init(tmp_path / "keys")
    ks.export_online(tmp_path / "online")
    return ks, tmp_path / "online"


def test_refused_uploads_leave_the_store_byte_for_byte(
    tmp_path, pki, offline_keys, squeezenet_bytes
) -> None:
    ks, online = offline_keys
    with serve(tmp_path / "reg", online, pki) as srv, srv.publisher() as pub:
        pub.upload(squeezenet_bytes, NAME, "1.0.0", keys=ks)
        before = store_snapshot(srv.data_dir)
        intruder = Keystore.init(
            tmp_path / "intruder"
        )  # a publisher certificate, but not the targets key
        big = with_provenance(squeezenet_bytes, "listed nowhere")

        with pytest.raises(PublishError, match="targets key is offline"):
            pub.upload(big, NAME, "1.0.1")
        forged = sign_targets(
            pub.get_metadata("targets"),
            intruder.signers("targets"),
            intruder.expiries,
            [model_target(NAME, "1.0.1", big, (), "", 2)],
        )
        with pytest.raises(grpc.RpcError) as refused:
            _upload_raw(srv, big, "1.0.1", forged)
        assert "signed targets refused" in refused.value.details()
        with pytest.raises(PublishError, match="not an ONNX model"):
            pub.upload(b"\x00" * 300_000, NAME, "1.0.1", validate=False)
        with pytest.raises(PublishError, match=r"below 1\.0\.0"):
            pub.upload(big, NAME, "0.9.0", keys=ks)

        assert store_snapshot(srv.data_dir) == before
        assert staged(srv.data_dir) == []
        assert [v.version for v in pub.list()] == ["1.0.0"]


def _upload_raw(srv: Served, data: bytes, version: str, signed_targets: bytes) -> None:
    header = ota_pb2.UploadHeader(
        name=NAME,
        version=version,
        length=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        signed_targets=signed_targets,
    )
    with grpc.secure_channel(srv.address, tls.channel_credentials(srv.publisher_tls)) as channel:
        ota_pb2_grpc.PublisherStub(channel).UploadModel(
            iter(
                [
                    ota_pb2.UploadModelRequest(header=header),
                    *(
                        ota_pb2.UploadModelRequest(chunk=data[i : i + (1 << 20)])
                        for i in range(0, len(data), 1 << 20)
                    ),
                ]
            ),
            timeout=60,
        )


def test_a_cancelled_upload_leaves_no_staged_file(
    tmp_path, pki, keys_dir, squeezenet_bytes
) -> None:
    with serve(tmp_path / "reg", keys_dir, pki) as srv:
        before = store_snapshot(srv.data_dir)
        release = threading.Event()
        header = ota_pb2.UploadHeader(
            name=NAME,
            version="1.0.0",
            length=len(squeezenet_bytes),
            sha256=hashlib.sha256(squeezenet_bytes).hexdigest(),
        )

        def requests() -> Iterator[ota_pb2.UploadModelRequest]:
            yield ota_pb2.UploadModelRequest(header=header)
            yield ota_pb2.UploadModelRequest(chunk=squeezenet_bytes[:1_000_000])
            release.wait(60)  # the publisher goes away mid-upload

        channel = grpc.secure_channel(srv.address, tls.channel_credentials(srv.publisher_tls))
        call = ota_pb2_grpc.PublisherStub(channel).UploadModel.future(requests(), timeout=60)
        assert _eventually(lambda: staged(srv.data_dir)), "the registry staged the first megabyte"
        call.cancel()
        release.set()

        assert _eventually(lambda: not staged(srv.data_dir)), f"left behind: {staged(srv.data_dir)}"
        channel.close()
        assert store_snapshot(srv.data_dir) == before
        assert srv.registry.list_versions() == []


def _eventually(cond, within_s: float = 30.0) -> bool:
    """Poll ``cond`` (a condition reached on another thread, not a speed limit)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return bool(cond())


def test_gc_removes_only_unreferenced_blobs(tmp_path, pki, keys_dir, squeezenet_bytes) -> None:
    data = tmp_path / "reg"
    with serve(data, keys_dir, pki) as srv:
        reg = srv.registry
        publish_released(reg, NAME, "1.0.0", squeezenet_bytes)
        publish_released(reg, NAME, "1.0.1", with_provenance(squeezenet_bytes, "1.0.1"))
        referenced = {r.sha256 for r in reg.list_versions()} | {
            e.blob_sha256
            for r in reg.list_versions()
            for e in encodings.stored_encodings(reg.store, r.name, r.version)
        }
        old_orphan = reg.blobs.put_bytes(b"left by an upload refused before issue 12" * 1000)
        young_orphan = reg.blobs.put_bytes(b"committed a moment ago, its version not recorded yet")
        week_ago = time.time() - 7 * 86400
        os.utime(reg.blobs.path(old_orphan), (week_ago, week_ago))

    out = ota_cli("registry", "gc", "--data", str(data), "--dry-run")
    assert old_orphan[:12] in out and young_orphan[:12] not in out
    assert (data / "blobs" / old_orphan[:2] / old_orphan).exists(), "--dry-run removes nothing"
    out = ota_cli("registry", "gc", "--data", str(data))
    assert "removed 1 unreferenced blob" in out
    remaining = {p.name for p in (data / "blobs").rglob("*") if p.is_file() and len(p.name) == 64}
    assert remaining == referenced | {young_orphan}
    ota_cli("registry", "gc", "--data", str(data), "--min-age", "0")
    remaining = {p.name for p in (data / "blobs").rglob("*") if p.is_file() and len(p.name) == 64}
    assert remaining == referenced


def test_a_flipped_blob_is_not_served_after_a_restart(
    tmp_path, pki, keys_dir, squeezenet_bytes, caplog
) -> None:
    from server.metrics import RegistryMetrics

    data = tmp_path / "reg"
    with serve(data, keys_dir, pki) as srv:
        v0 = publish_released(srv.registry, NAME, "1.0.0", squeezenet_bytes)
        car = VehicleAgent(agent_config(srv, "car-1", tmp_path / "car-1"))
        assert [o.version for o in car.update_once()] == ["1.0.0"]
        v1 = publish_released(
            srv.registry, NAME, "1.0.1", with_provenance(squeezenet_bytes, "1.0.1")
        )
        [v0_standalone] = [
            e
            for e in encodings.stored_encodings(srv.registry.store, NAME, "1.0.0")
            if not e.base_sha256
        ]
        car.close()
    _flip(data, v1.sha256)
    _flip(data, v0_standalone.blob_sha256)

    with serve(data, keys_dir, pki) as srv, caplog.at_level(logging.WARNING, logger="server"):
        metrics = RegistryMetrics()
        metrics.watch_blobs(srv.registry)
        car = VehicleAgent(agent_config(srv, "car-1", tmp_path / "car-1"))
        assert car.update_once() == [], "1.0.1's blob is bad: it is not offered"
        assert car.models[NAME].version == "1.0.0"
        newcomer = VehicleAgent(agent_config(srv, "car-2", tmp_path / "car-2"))
        [o] = newcomer.update_once()
        assert (o.status, o.version, o.encoding) == ("installed", "1.0.0", "full"), (
            "the bad encoding is not offered"
        )
        car.close()
        newcomer.close()
        served = {d.path for d in srv.registry.downloads if d.kind in ("target", "encoding")}
        assert not any(v1.sha256 in p or v0_standalone.blob_sha256 in p for p in served)
        bad = [r.getMessage() for r in caplog.records if "out of service" in r.getMessage()]
        assert any(v1.sha256[:12] in m for m in bad) and any(
            v0_standalone.blob_sha256[:12] in m for m in bad
        )
        assert metrics.registry.get_sample_value("ota_registry_bad_blobs_total") == 2
        assert v0.sha256 not in str(bad)


def test_registry_verify_finds_and_quarantines_a_flipped_blob(
    tmp_path, pki, keys_dir, squeezenet_bytes
) -> None:
    data = tmp_path / "reg"
    with serve(data, keys_dir, pki) as srv:
        rec = publish_released(srv.registry, NAME, "1.0.0", squeezenet_bytes)
    assert "all" in ota_cli("registry", "verify", "--data", str(data))
    _flip(data, rec.sha256)

    out = ota_cli("registry", "verify", "--data", str(data), ok=False)

    assert rec.sha256[:12] in out and f"{NAME} 1.0.0" in out and "re-publish" in out
    assert not (data / "blobs" / rec.sha256[:2] / rec.sha256).exists()
    assert (data / "quarantine" / rec.sha256).exists(), "kept aside for inspection"
    with serve(data, keys_dir, pki) as srv, srv.publisher() as pub:
        pub.upload(squeezenet_bytes, NAME, "1.0.0")  # the same bytes again restore the blob
    assert "all" in ota_cli("registry", "verify", "--data", str(data))


def _flip(data: Path, sha256: str) -> None:
    blob = data / "blobs" / sha256[:2] / sha256
    b = bytearray(blob.read_bytes())
    b[len(b) // 2] ^= 0x01
    blob.write_bytes(bytes(b))
