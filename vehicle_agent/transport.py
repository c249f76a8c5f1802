"""The agent's side of the wire: a small client over the Vehicle service.

Every RPC carries a deadline; a stream that stops delivering bytes for
``stall_timeout_s`` is treated as broken, and a download's deadline follows
from the bytes asked for and a minimum rate (``min_rate_bps``), so neither a
stalled nor a trickling (slow-retrieval) stream can hang the agent.

The channel is TLS with the vehicle's certificate (mutual authentication);
plain text only when ``insecure`` is asked for explicitly.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from otawire import tls
from otawire.rpcerrors import describe
from otawire.v1 import ota_pb2, ota_pb2_grpc

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# The status codes of a call the link broke (a cut, a reset, a deadline run out on a dead link).
TRANSIENT_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"})


class TransportError(Exception):
    """The registry could not be reached or answered with an error (``code``: the gRPC status name).

    ``unreachable``: nothing listens at the address (or it does not resolve), so the rest of this
    update cycle would fail the same way; the message names the cause and the fix.
    """

    def __init__(self, message: str, code: str = "", unreachable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.unreachable = unreachable

    @property
    def transient(self) -> bool:
        """The link broke under the call (not a refusal): it may work once the link is back."""
        return self.code in TRANSIENT_CODES


@dataclass(frozen=True)
class TransportConfig:
    rpc_deadline_s: float = 10.0
    download_deadline_s: float = 600.0
    stall_timeout_s: float = (
        15.0  # no bytes for this long: the stream is dead (or a slow-retrieval attack)
    )
    min_rate_bps: int = (
        16 * 1024
    )  # a sized download slower than this on average is cut off (slow retrieval)

    def deadline_for(self, max_bytes: int) -> float:
        """The deadline of a download of ``max_bytes`` (0: unknown size, e.g. metadata)."""
        if not max_bytes:
            return self.download_deadline_s
        return min(self.download_deadline_s, self.rpc_deadline_s + max_bytes / self.min_rate_bps)


# Spread calls over every address the name or list gives (registry replicas
# share one database, so any of them can answer). round_robin fails a call at
# once while no replica is connected, so a call refused with UNAVAILABLE is
# retried with backoff (a replica restarting, or going away mid-call, costs a
# second, not an update cycle). gRPC retries only until the first response
# arrives; a Download broken later is resumed from its last byte by the caller.
SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{"service": "ota.v1.Vehicle"}],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)
# Reconnect to a replica that went away sooner than gRPC's default (1 s, growing to 120 s).
RECONNECT_BACKOFF_MS = (100, 5000)
# gRPC reads "min_reconnect_backoff" as the least time one connection attempt may take:
# a TLS handshake over a slow, long link needs several round trips (3 at 300 ms RTT is
# 0.9 s), so this stays at gRPC's default while the backoff above starts small.
MIN_CONNECT_TIMEOUT_MS = 20_000


def channel_target(address: str) -> str:
    """A gRPC target for one address or a comma-separated list of replicas.

    ``host:port`` stays as it is (a DNS name resolves to all its addresses);
    ``10.0.0.1:50051,10.0.0.2:50051`` becomes ``ipv4:10.0.0.1:50051,10.0.0.2:50051``
    (``[::1]:50051,…`` becomes ``ipv6:…``). A list must hold IP literals: gRPC
    resolves one name per channel, so a fleet of names belongs in DNS or behind
    a load balancer.
    """
    parts = [a.strip() for a in address.split(",") if a.strip()]
    if len(parts) <= 1 or address.startswith(("ipv4:", "ipv6:", "dns:", "unix:")):
        return address.strip()  # one address, or already a gRPC target
    families = set()
    for part in parts:
        host, sep, port = part.rpartition(":")
        try:
            families.add(
                ipaddress.ip_address(host.strip("[]")).version if sep and port.isdigit() else None
            )
        except ValueError:
            families.add(None)
    if None in families or len(families) != 1:
        raise ValueError(
            f"registry address list {address!r}: give IP:PORT entries of one family "
            "(e.g. 127.0.0.1:50051,127.0.0.1:50052), or one DNS name with several addresses"
        )
    return f"ipv{families.pop()}:{','.join(parts)}"


class RegistryClient:
    """Vehicle-side stub wrapper: check-in, chunked downloads, reports.

    ``address`` may list several registry replicas; calls are spread over them
    round-robin and a replica that goes away is skipped.
    """

    def __init__(
        self,
        address: str,
        config: TransportConfig = TransportConfig(),
        *,
        tls_files: tls.TlsFiles | None = None,
        insecure: bool = False,
    ) -> None:
        self.address = address
        self.config = config
        target = channel_target(address)
        if tls_files is not None and not tls_files.server_name and target != address.strip():
            # A list of replicas: each must hold a certificate valid for the first one's name
            # (one name per channel; replicas behind one DNS name are the usual way).
            tls_files = dataclasses.replace(
                tls_files, server_name=address.split(",")[0].rsplit(":", 1)[0].strip("[] ")
            )
        self._tls, self._insecure = tls_files, insecure
        # Seconds every channel of this client spent unable to connect (TRANSIENT_FAILURE):
        # the link was down, not the registry slow (see ``link_down_s``).
        self._down_s = 0.0
        self._down_since: float | None = None
        self._was_ready = False  # any channel of this client connected: our certificate is accepted
        self._connect()

    def _connect(self) -> None:
        self._channel = (
            tls.secure_or_insecure_channel(  # security (issue 4): mutual TLS unless --insecure
                channel_target(self.address),
                self._tls,
                self._insecure,
                options=[
                    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.service_config", SERVICE_CONFIG),
                    ("grpc.enable_retries", 1),
                    ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[0]),
                    ("grpc.min_reconnect_backoff_ms", MIN_CONNECT_TIMEOUT_MS),
                    ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[1]),
                ],
            )
        )
        self._stub = ota_pb2_grpc.VehicleStub(self._channel)
        # Whether this channel ever connected: a download that gets no byte on a channel that
        # never did is a registry not listening, not a stalled stream.
        self._ever_ready = False
        self._channel.subscribe(self._on_state, try_to_connect=False)

    def _on_state(self, state: grpc.ChannelConnectivity) -> None:
        if state == grpc.ChannelConnectivity.READY:
            self._ever_ready = self._was_ready = True
        now = time.monotonic()
        if state == grpc.ChannelConnectivity.TRANSIENT_FAILURE:
            if self._down_since is None:
                self._down_since = now
        elif self._down_since is not None:
            self._down_s += now - self._down_since
            self._down_since = None

    def link_down_s(self) -> float:
        """Seconds so far in which the channel could not connect (the link was down).

        A download's minimum-rate guard leaves them out: it measures the registry's rate while
        it can be reached. An attacker who refuses connections blocks the car anyway; one
        that accepts them and trickles is READY, and its time counts.
        """
        since = self._down_since
        return self._down_s + (time.monotonic() - since if since is not None else 0.0)

    def _failed(self, what: str, e: grpc.RpcError) -> TransportError:
        f = describe(e, self.address, self._insecure, connected_before=self._was_ready)
        code = e.code()
        return TransportError(f"{what}: {f}", code.name if code else "", f.unreachable)

    def reconnect(self) -> None:
        """Drop the connection and open a fresh one: a stalled TCP connection
        would otherwise carry the retry too (HTTP/2 multiplexes calls on it)."""
        self._channel.close()
        self._connect()

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check(self, request: ota_pb2.CheckForUpdateRequest) -> ota_pb2.CheckForUpdateResponse:
        try:
            return self._stub.CheckForUpdate(request, timeout=self.config.rpc_deadline_s)
        except grpc.RpcError as e:
            raise self._failed("check-in failed", e) from None

    def download(
        self,
        kind: ota_pb2.FileKind,
        path: str,
        offset: int = 0,
        max_bytes: int = 0,
        vehicle_id: str = "",
    ) -> Iterator[ota_pb2.DownloadChunk]:
        """Stream chunks of ``path`` from ``offset``; raises TransportError on failure.

        A watchdog cancels the call when no chunk arrives for
        ``stall_timeout_s``: a deadline alone would let a trickling stream hold
        the agent for the whole download deadline.
        """
        req = ota_pb2.DownloadRequest(
            kind=kind, path=path, offset=offset, max_bytes=max_bytes, vehicle_id=vehicle_id
        )
        # wait_for_ready: a call made while the channel reconnects after a drop waits for it
        # (bounded by the stall watchdog) instead of failing at once and costing a retry.
        call = self._stub.Download(
            req, timeout=self.config.deadline_for(max_bytes), wait_for_ready=True
        )
        watchdog = _StallWatchdog(call, self.config.stall_timeout_s)
        received = 0
        try:
            for chunk in call:
                watchdog.feed()
                received += len(chunk.data)
                yield chunk
        except grpc.RpcError as e:
            code = e.code()
            if watchdog.fired and not received and not self._ever_ready:
                self.reconnect()
                raise TransportError(
                    f"download of {path}: registry at {self.address} accepted no connection in "
                    f"{self.config.stall_timeout_s:g} s (not listening, or a TLS mismatch): start "
                    "it with `ota registry serve`, or check --registry / OTA_REGISTRY",
                    "UNAVAILABLE",
                    unreachable=True,
                ) from None
            if watchdog.fired:
                self.reconnect()
                raise TransportError(
                    f"download of {path} stalled: no bytes for {self.config.stall_timeout_s:g} s "
                    f"at offset {offset + received}"
                ) from None
            if code == grpc.StatusCode.NOT_FOUND:
                raise FileNotFoundError(f"{path}: {e.details()}") from None
            raise self._failed(
                f"download of {path} at offset {offset + received} failed", e
            ) from None
        finally:
            watchdog.stop()
            call.cancel()

    def submit_manifest(self, manifest: ota_pb2.SignedManifest) -> ota_pb2.SubmitManifestResponse:
        try:
            return self._stub.SubmitManifest(
                ota_pb2.SubmitManifestRequest(manifest=manifest), timeout=self.config.rpc_deadline_s
            )
        except grpc.RpcError as e:
            raise self._failed("manifest not delivered", e) from None

    def report(self, report: ota_pb2.ReportInstallRequest) -> bool:
        try:
            return self._stub.ReportInstall(report, timeout=self.config.rpc_deadline_s).accepted
        except grpc.RpcError as e:
            f = describe(e, self.address, self._insecure, connected_before=self._was_ready)
            log.log(
                logging.INFO if f.unreachable else logging.WARNING, "report not delivered: %s", f
            )
            return False


class _StallWatchdog:
    """Cancels a streaming call that has delivered nothing for ``timeout_s``."""

    def __init__(self, call: grpc.Future, timeout_s: float) -> None:
        self._call = call
        self._timeout_s = timeout_s
        self._last = time.monotonic()
        self._done = threading.Event()
        self.fired = False
        self._thread = threading.Thread(target=self._run, name="download-watchdog", daemon=True)
        self._thread.start()

    def feed(self) -> None:
        self._last = time.monotonic()

    def stop(self) -> None:
        self._done.set()

    def _run(self) -> None:
        tick = min(0.25, self._timeout_s / 4)
        while not self._done.wait(tick):
            if time.monotonic() - self._last > self._timeout_s:
                self.fired = True
                log.warning("download stream stalled for %.1f s; cancelling it", self._timeout_s)
                self._call.cancel()
                return
