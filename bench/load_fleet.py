"""Lite vehicles for ``bench/load_bench.py``: thousands of them as coroutines in one process.

Each lite vehicle has its own ``grpc.aio`` channel (its own TCP connection, as
a car would) and does what loads the registry in a real update: check in
(``CheckForUpdate``) until offered, stream the offered file with ``Download``
(resuming where a stream broke), check the bytes' sha256 and length against
what the registry published, and report ``INSTALLED``. Labelled *lite*
because what costs only the car is left out: the TUF refresh (the full agent
is measured in tests and ``docs/simulator.md``), the model rebuild from the
delta and ONNX Runtime. A share of the fleet reads **slowly**: the client
takes each message no faster than its link-rate cap, and with HTTP/2 BDP
probing off its receive window stays at 64 KiB, so the server's stream
really waits on it, as on a slow cellular link.

The bare peer (``serve_bare``) is a ``grpc.aio`` server that streams the same
bytes from memory with the same ``Download`` RPC and chunk size: transport with
no registry logic.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio

if TYPE_CHECKING:
    from otawire.v1 import ota_pb2

MODEL = "squeezenet1.0"
HARDWARE = "ecu-load"
TAG = "fleet=load"


@dataclass
class Result:
    checkins_ms: list[float] = field(default_factory=list)
    download_s: float = 0.0
    bytes: int = 0
    slow: bool = False
    error: str = ""


@dataclass(frozen=True)
class Want:
    """What every vehicle should end up with: the offered file, as published."""

    kind: ota_pb2.FileKind
    path: str
    length: int
    sha256: str
    base_version: str
    base_sha256: str
    new_version: str


def channel(address: str, slow: bool) -> aio.Channel:
    options = [("grpc.max_receive_message_length", 8 << 20)]
    if slow:  # the receive window stays small, so the server's stream waits on this reader
        options.append(("grpc.http2.bdp_probe", 0))
    return aio.insecure_channel(address, options=options)


def check_request(vid: str, want: Want):
    from otawire.v1 import ota_pb2

    return ota_pb2.CheckForUpdateRequest(
        vehicle_id=vid,
        hardware_id=HARDWARE,
        tags=[TAG],
        wanted_models=[MODEL],
        installed=[
            ota_pb2.InstalledModel(name=MODEL, version=want.base_version, sha256=want.base_sha256)
        ],
    )


async def download(
    stub,
    vid: str,
    kind: ota_pb2.FileKind,
    path: str,
    length: int,
    rate_bps: float,
    deadline_s: float,
    res: Result,
) -> bytes:
    """The whole file, resuming after a broken stream; at most ``rate_bps`` if given."""
    from otawire.v1 import ota_pb2

    parts: list[bytes] = []
    got, tries = 0, 0
    t_end = time.perf_counter() + deadline_s
    while got < length:
        tries += 1
        try:
            call = stub.Download(
                ota_pb2.DownloadRequest(vehicle_id=vid, kind=kind, path=path, offset=got),
                timeout=max(1.0, t_end - time.perf_counter()),
            )
            async for chunk in call:
                if chunk.offset != got:
                    raise ValueError(f"chunk at {chunk.offset}, expected {got}")
                parts.append(chunk.data)
                got += len(chunk.data)
                if rate_bps:
                    await asyncio.sleep(len(chunk.data) * 8 / rate_bps)
        except grpc.aio.AioRpcError as e:
            if tries >= 5 or time.perf_counter() > t_end:
                raise
            res.error = f"retry after {e.code().name}"
            await asyncio.sleep(0.2 * tries)
    res.error = ""
    res.bytes = got
    return b"".join(parts)


async def update(
    address: str,
    vid: str,
    want: Want,
    go: asyncio.Event,
    slow_bps: float,
    poll_s: float,
    deadline_s: float,
    registry: bool,
) -> Result:
    """One vehicle's update (``registry`` False: the bare peer, download only)."""
    from otawire.v1 import ota_pb2, ota_pb2_grpc

    res = Result(slow=bool(slow_bps))
    ch = channel(address, res.slow)
    stub = ota_pb2_grpc.VehicleStub(ch)
    try:
        await go.wait()
        t_end = time.perf_counter() + deadline_s
        if registry:
            while True:
                t = time.perf_counter()
                resp = await stub.CheckForUpdate(check_request(vid, want), timeout=deadline_s)
                res.checkins_ms.append((time.perf_counter() - t) * 1000)
                if resp.offers:
                    break
                if time.perf_counter() > t_end:
                    res.error = "never offered"
                    return res
                await asyncio.sleep(poll_s * random.uniform(0.5, 1.5))
            o = resp.offers[0]
            kind = (
                ota_pb2.FILE_KIND_TARGET
                if o.encoding in (ota_pb2.ENCODING_UNSPECIFIED, ota_pb2.ENCODING_FULL)
                else ota_pb2.FILE_KIND_ENCODING
            )
            if (o.download_path, o.download_length) != (want.path, want.length):
                res.error = f"offered {o.download_path} ({o.download_length} B), not {want.path}"
                return res
        else:
            kind = want.kind
        t = time.perf_counter()
        data = await download(
            stub, vid, kind, want.path, want.length, slow_bps, t_end - time.perf_counter(), res
        )
        if len(data) != want.length or hashlib.sha256(data).hexdigest() != want.sha256:
            res.error = f"got {len(data)} B with another sha256"
            return res
        res.download_s = time.perf_counter() - t
        if registry:
            await stub.ReportInstall(
                ota_pb2.ReportInstallRequest(
                    vehicle_id=vid,
                    hardware_id=HARDWARE,
                    name=MODEL,
                    version=want.new_version,
                    status=ota_pb2.INSTALL_STATUS_INSTALLED,
                    from_version=want.base_version,
                    bytes_downloaded=res.bytes,
                    duration_s=res.download_s,
                    active_version=want.new_version,
                ),
                timeout=deadline_s,
            )
    except (grpc.aio.AioRpcError, ValueError) as e:
        code = e.code().name if isinstance(e, grpc.aio.AioRpcError) else "ValueError"
        res.error = f"{code}: {e.details() if isinstance(e, grpc.aio.AioRpcError) else e}"
    finally:
        await ch.close()
    return res


async def checkin(
    address: str, vid: str, want: Want, go: asyncio.Event, deadline_s: float
) -> Result:
    from otawire.v1 import ota_pb2_grpc

    res = Result()
    ch = channel(address, False)
    try:
        stub = ota_pb2_grpc.VehicleStub(ch)
        await go.wait()
        t = time.perf_counter()
        resp = await stub.CheckForUpdate(check_request(vid, want), timeout=deadline_s)
        res.checkins_ms.append((time.perf_counter() - t) * 1000)
        if resp.offers:
            res.error = "offered before any campaign"
    except grpc.aio.AioRpcError as e:
        res.error = f"{e.code().name}: {e.details()}"
    finally:
        await ch.close()
    return res


async def fleet(
    n: int,
    vehicle: Callable[[str, asyncio.Event], Coroutine[Any, Any, Result]],
    connect_s: float = 0.0,
) -> tuple[list[Result], float]:
    """n vehicles released at once; (results, wall seconds until the last is done)."""
    go = asyncio.Event()
    tasks = [asyncio.create_task(vehicle(f"car-{i:05d}", go)) for i in range(n)]
    await asyncio.sleep(connect_s or min(5.0, 0.5 + n / 4000))  # every vehicle at the gate
    t0 = time.perf_counter()
    go.set()
    results = await asyncio.gather(*tasks)
    return list(results), time.perf_counter() - t0


async def hammer(address: str, want: Want, seconds: float, concurrency: int, channels: int) -> dict:
    """Closed loop: ``concurrency`` check-ins in flight over ``channels`` connections for ``seconds``."""
    from otawire.v1 import ota_pb2_grpc

    chans = [channel(address, False) for _ in range(channels)]
    stubs = [ota_pb2_grpc.VehicleStub(c) for c in chans]
    done, failed, lat = 0, 0, []
    # Every caller is one known vehicle, connected and in the inventory before the clock
    # starts: the figure is steady check-ins, not first sightings (those write the inventory).
    for i in range(concurrency):
        await stubs[i % len(stubs)].CheckForUpdate(check_request(f"car-{i:03d}", want), timeout=60)
    t_end = time.perf_counter() + seconds
    cpu0 = time.process_time()

    async def worker(i: int) -> None:
        nonlocal done, failed
        stub = stubs[i % len(stubs)]
        req = check_request(f"car-{i:03d}", want)
        while time.perf_counter() < t_end:
            t = time.perf_counter()
            try:
                await stub.CheckForUpdate(req, timeout=30)
                done += 1
                lat.append((time.perf_counter() - t) * 1000)
            except grpc.aio.AioRpcError:
                failed += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    for c in chans:
        await c.close()
    lat.sort()
    return {
        "checkins_per_s": done / wall,
        "failed": failed,
        "wall_s": wall,
        "generator_cpu_s": cpu,
        "p50_ms": lat[len(lat) // 2] if lat else float("nan"),
        "p99_ms": lat[int(0.99 * (len(lat) - 1))] if lat else float("nan"),
    }


def serve_bare(data: bytes, chunk_size: int) -> tuple[aio.Server, Callable[[], Awaitable[int]]]:
    """The peer: ``Download`` only, the same bytes from memory, on ``grpc.aio``."""
    from otawire.v1 import ota_pb2, ota_pb2_grpc

    class Bare(ota_pb2_grpc.VehicleServicer):
        async def Download(self, request, context):
            end = (
                len(data)
                if not request.max_bytes
                else min(len(data), request.offset + request.max_bytes)
            )
            for off in range(request.offset, end, chunk_size):
                yield ota_pb2.DownloadChunk(
                    offset=off, data=data[off : min(end, off + chunk_size)], total_length=len(data)
                )

    server = aio.server(options=[("grpc.max_send_message_length", 8 << 20)])
    ota_pb2_grpc.add_VehicleServicer_to_server(Bare(), server)

    async def start() -> int:
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return port

    return server, start
