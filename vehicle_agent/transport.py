"""The agent's side of the wire: a small client over the Vehicle service.

Every RPC carries a deadline. A download's deadline follows from the bytes
asked for and a minimum rate (``min_rate_bps``), so a slow-retrieval attack or
a dead link cannot hang the agent; metadata files are small and get the plain
RPC deadline.

The channel is TLS with the vehicle's certificate (mutual authentication);
plain text only when ``insecure`` is asked for explicitly.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from ota import tls
from ota.v1 import ota_pb2, ota_pb2_grpc

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class TransportError(Exception):
    """The registry could not be reached or answered with an error (``code``: the gRPC status name)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class TransportConfig:
    rpc_deadline_s: float = 10.0
    download_deadline_s: float = 600.0  # upper bound for any one download call
    min_rate_bps: int = 16 * 1024  # slower than this and a target download is cut off

    def deadline_for(self, max_bytes: int) -> float:
        if not max_bytes:
            return self.rpc_deadline_s
        return min(self.download_deadline_s, self.rpc_deadline_s + max_bytes / self.min_rate_bps)


# Spread calls over every address the name or list gives (registry replicas
# share one database, so any of them can answer); retry the small idempotent
# calls on another replica when one goes away. Download is not retried here:
# the download loop resumes it from the last byte it holds.
_SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [
                    {"service": "ota.v1.Vehicle", "method": "CheckForUpdate"},
                    {"service": "ota.v1.Vehicle", "method": "ReportInstall"},
                ],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)


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
            families.add(ipaddress.ip_address(host.strip("[]")).version if sep and port.isdigit() else None)
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

    def __init__(self, address: str, config: TransportConfig = TransportConfig(), *,
                 tls_files: tls.TlsFiles | None = None, insecure: bool = False) -> None:
        self.address = address
        self.config = config
        target = channel_target(address)
        if tls_files is not None and not tls_files.server_name and target != address.strip():
            # A list of replicas: each must hold a certificate valid for the first one's name
            # (one name per channel; replicas behind one DNS name are the usual way).
            tls_files = dataclasses.replace(tls_files, server_name=address.split(",")[0].rsplit(":", 1)[0].strip("[] "))
        self._channel = tls.secure_or_insecure_channel(
            target,
            tls_files,
            insecure,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.service_config", _SERVICE_CONFIG),
                ("grpc.enable_retries", 1),
            ],
        )
        self._stub = ota_pb2_grpc.VehicleStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check(self, request: ota_pb2.CheckRequest) -> ota_pb2.CheckResponse:
        try:
            return self._stub.CheckForUpdate(request, timeout=self.config.rpc_deadline_s)
        except grpc.RpcError as e:
            raise TransportError(f"check-in at {self.address} failed: {e.code().name}: {e.details()}") from None

    def download(
        self, kind: int, path: str, offset: int = 0, max_bytes: int = 0, vehicle_id: str = ""
    ) -> Iterator[ota_pb2.DownloadChunk]:
        """Stream chunks of ``path`` from ``offset``; raises TransportError on failure."""
        req = ota_pb2.DownloadRequest(kind=kind, path=path, offset=offset, max_bytes=max_bytes, vehicle_id=vehicle_id)
        call = self._stub.Download(req, timeout=self.config.deadline_for(max_bytes))
        try:
            yield from call
        except grpc.RpcError as e:
            code = e.code()
            if code == grpc.StatusCode.NOT_FOUND:
                raise FileNotFoundError(f"{path}: {e.details()}") from None
            raise TransportError(f"download of {path} at offset {offset} failed: {code.name}: {e.details()}",
                                 code.name) from None
        finally:
            call.cancel()

    def submit_manifest(self, manifest: ota_pb2.SignedManifest) -> ota_pb2.ManifestAck:
        try:
            return self._stub.SubmitManifest(manifest, timeout=self.config.rpc_deadline_s)
        except grpc.RpcError as e:
            raise TransportError(f"manifest to {self.address} refused: {e.code().name}: {e.details()}") from None

    def report(self, report: ota_pb2.InstallReport) -> bool:
        try:
            return self._stub.ReportInstall(report, timeout=self.config.rpc_deadline_s).accepted
        except grpc.RpcError as e:
            log.warning("report to %s failed: %s: %s", self.address, e.code().name, e.details())
            return False
