"""Vehicles on slow links hold streams open for minutes; the registry must still answer others.

Issue 14: the registry serves on ``grpc.aio``, so a stream whose reader has
stopped costs a coroutine and a buffer, not one of the threads that run
check-ins. With the former thread-per-stream server, 500 stalled downloads held
all 16 threads and a fresh vehicle's check-in never got one.
"""

from __future__ import annotations

import time

import grpc

from otawire import tls
from otawire.paths import consistent_target_path
from otawire.v1 import ota_pb2, ota_pb2_grpc
from testkit.helpers import publish_released
from tests.conftest import vehicle_identity

STALLED = 500
PER_CHANNEL = 50
DEADLINE_S = 30.0  # generous for a busy 2-core machine; a starved server never answers at all


def test_500_stalled_downloads_do_not_block_a_fresh_check_in(
    registry_server, squeezenet_bytes
) -> None:
    rec = publish_released(registry_server.registry, "squeezenet1.0", "1.0.0", squeezenet_bytes)
    path = consistent_target_path(rec.target_path, rec.sha256)
    creds = tls.channel_credentials(vehicle_identity(registry_server.pki, "car-slow"))
    # BDP probing off: the receive window stays at 64 KiB, so the server's streams really wait.
    channels = [
        grpc.secure_channel(registry_server.address, creds, options=[("grpc.http2.bdp_probe", 0)])
        for _ in range(STALLED // PER_CHANNEL)
    ]
    streams = []
    try:
        for i in range(STALLED):
            stub = ota_pb2_grpc.VehicleStub(channels[i // PER_CHANNEL])
            call = stub.Download(
                ota_pb2.DownloadRequest(kind=ota_pb2.FILE_KIND_TARGET, path=path), timeout=120
            )
            first = next(call)  # the stream is open and serving; then this reader stops reading
            assert first.offset == 0 and first.total_length == rec.length
            streams.append(call)

        fresh = ota_pb2_grpc.VehicleStub(registry_server.channel("vehicle", "car-fresh"))
        t = time.monotonic()
        resp = fresh.CheckForUpdate(
            ota_pb2.CheckForUpdateRequest(
                vehicle_id="car-fresh", hardware_id="ecu-a", wanted_models=["squeezenet1.0"]
            ),
            timeout=DEADLINE_S,
        )
        took = time.monotonic() - t
        assert [o.version for o in resp.offers] == ["1.0.0"], (
            "the fresh vehicle is answered, within its deadline"
        )

        # The stalled streams were still open all along: each resumes where it stopped.
        for call in streams[::PER_CHANNEL]:
            nxt = next(call)
            assert nxt.offset == len(first.data)
        assert took < DEADLINE_S
    finally:
        for call in streams:
            call.cancel()
        for ch in channels:
            ch.close()
