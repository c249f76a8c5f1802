"""Stateless replicas sharing one PostgreSQL database, as real processes on loopback."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tuf.ngclient import Updater

from otawire import tls
from server.client import PublisherClient
from tests.scaleout.conftest import vehicle_config
from tests.scaleout.helpers import tiny_onnx, update_each, verify_tuf_history
from vehicle_agent.fetcher import METADATA_URL, TARGET_URL, GrpcFetcher
from vehicle_agent.transport import RegistryClient

pytestmark = pytest.mark.postgres


def _publisher(pki: Path, address: str) -> PublisherClient:
    return PublisherClient(address, tls_files=tls.TlsFiles.in_dir(pki, "publisher", "ml-team"))


def test_any_replica_answers_and_agents_spread_over_all(
    cluster, pg_registry, keys_dir, tmp_path, pki
) -> None:
    replicas = cluster(3)
    with _publisher(pki, replicas[0].address) as pub:
        pub.upload(tiny_onnx("v1"), "tiny", "1.0.0")
        pub.release("tiny", "1.0.0", "fleet")
    with _publisher(pki, replicas[2].address) as pub:  # another replica sees it at once
        assert [(v.name, v.version) for v in pub.list()] == [("tiny", "1.0.0")]
    for r in replicas:  # the standard health service on every replica
        creds = tls.channel_credentials(tls.ensure(pki, "vehicle", "car-0"))
        with grpc.secure_channel(r.address, creds) as ch:
            resp = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service="ota.v1.Vehicle")
            )
            assert resp.status == health_pb2.HealthCheckResponse.SERVING

    everyone = ",".join(r.address for r in replicas)
    outcomes = update_each(
        [
            vehicle_config(pki, keys_dir, everyone, tmp_path / f"car-{i}", f"car-{i}")
            for i in range(3)
        ]
    )

    assert outcomes == [[("installed", "1.0.0")]] * 3
    calls = [
        r.metric("ota_registry_requests_total", {"service": "ota.v1.Vehicle", "code": "OK"})
        for r in replicas
    ]
    assert all(c > 0 for c in calls), f"round_robin left a replica idle: {calls}"
    served = sum(
        r.metric("ota_registry_bytes_served_total", {"kind": "target", "encoding": "full"})
        for r in replicas
    )
    assert served == 3 * len(tiny_onnx("v1"))
    checkins = sum(
        r.metric("ota_registry_request_seconds_count", {"method": "CheckForUpdate"})
        for r in replicas
    )
    assert checkins == 3
    assert sorted(
        r.vehicle_id for r in pg_registry.store.list_reports() if r.status == "installed"
    ) == ["car-0", "car-1", "car-2"]


def _refresh(metadata_dir: Path, address: str, pki: Path) -> Updater:
    """One TUF refresh as an agent does it, keeping trusted state in ``metadata_dir``."""
    client = RegistryClient(address, tls_files=tls.ensure(pki, "vehicle", "watcher"))
    try:
        updater = Updater(
            str(metadata_dir),
            METADATA_URL,
            str(metadata_dir / "targets"),
            TARGET_URL,
            fetcher=GrpcFetcher(client),
            bootstrap=None,
        )
        updater.refresh()
        return updater
    finally:
        client.close()


def test_concurrent_publishes_across_replicas_make_one_valid_chain(
    cluster, pg_registry, keys_dir, tmp_path, pki
) -> None:
    replicas = cluster(3)
    everyone = ",".join(r.address for r in replicas)
    n = 24
    models = {f"tiny/1.0.{i}.onnx": tiny_onnx(f"model {i}") for i in range(n)}
    watcher = (
        tmp_path / "watcher"
    )  # a vehicle refreshing all through the race keeps its trusted state
    watcher.mkdir()
    (watcher / "root.json").write_bytes((keys_dir / "root.json").read_bytes())
    stop, watch_errors, watch_refreshes = threading.Event(), [], [0]

    def watch() -> None:
        while not stop.is_set():
            try:
                _refresh(watcher, everyone, pki)
                watch_refreshes[0] += 1
            except Exception as e:
                watch_errors.append(e)
                return

    def publish(i: int) -> str:
        with _publisher(pki, replicas[i % 3].address) as pub:
            # Twelve racing publishers land versions out of order; the downgrade guard would
            # refuse the late lower ones, and this test is about the signing chain, not semver.
            return pub.upload(
                models[f"tiny/1.0.{i}.onnx"],
                "tiny",
                f"1.0.{i}",
                allow_downgrade=True,
                reason="concurrency test: versions arrive out of order",
            ).sha256

    watcher_thread = threading.Thread(target=watch)
    watcher_thread.start()
    try:
        with ThreadPoolExecutor(12) as pool:
            shas = list(pool.map(publish, range(n)))
    finally:
        stop.set()
        watcher_thread.join()

    assert watch_errors == [] and watch_refreshes[0] > 0
    history = verify_tuf_history(pg_registry.store)
    # One signing per publish, none lost, none doubled: versions 1 (empty) .. n+1.
    assert len(history.targets) == len(history.snapshots) == len(history.timestamps) == n + 1
    assert {p: tf.hashes["sha256"] for p, tf in history.targets[-1].signed.targets.items()} == dict(
        zip(models, shas, strict=True)
    )
    # A fresh vehicle trusts the chain end to end and installs the newest version, once released.
    pg_registry.release("tiny", f"1.0.{n - 1}")
    fresh = _refresh(_fresh_dir(tmp_path, keys_dir), everyone, pki)
    for path, sha in zip(models, shas, strict=True):
        assert fresh.get_targetinfo(path).hashes["sha256"] == sha
    assert update_each(
        [vehicle_config(pki, keys_dir, everyone, tmp_path / "fresh-car", "fresh-car")]
    ) == [[("installed", f"1.0.{n - 1}")]]


def _fresh_dir(tmp_path: Path, keys_dir: Path) -> Path:
    d = tmp_path / "fresh"
    d.mkdir()
    (d / "root.json").write_bytes((keys_dir / "root.json").read_bytes())
    return d
