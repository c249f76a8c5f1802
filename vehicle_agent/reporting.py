"""The engine's Reporter: each update step becomes an ``ReportInstallRequest`` to the registry.

Steps reported: downloading, installed (switched, health window running),
confirmed, failed (with the reason), rolled_back (with the reason) and
attack_detected. A report that cannot be delivered is logged and dropped: the
vehicle's own state never waits on the registry.
"""

from __future__ import annotations

import logging
from typing import Protocol

from otawire.v1 import ota_pb2
from otawire.wire import ENCODING, INSTALL_STATUS, UnknownEnumName, from_str
from vehicle_agent.journal import Entry
from vehicle_agent.runtime import ModelHost
from vehicle_agent.transport import RegistryClient

log = logging.getLogger(__name__)


def install_status(step: str) -> ota_pb2.InstallStatus:
    """A step's name (``"rolled_back"``) as the wire's InstallStatus; an unknown one reads as FAILED."""
    try:
        return from_str(INSTALL_STATUS, step) or ota_pb2.INSTALL_STATUS_FAILED
    except UnknownEnumName:
        return ota_pb2.INSTALL_STATUS_FAILED


def encoding_pb(encoding: str) -> ota_pb2.Encoding:
    """A codec's name as the wire's Encoding; one the contract cannot name is reported UNSPECIFIED."""
    try:
        return from_str(ENCODING, encoding)
    except UnknownEnumName:
        return ota_pb2.ENCODING_UNSPECIFIED


class _Fetched(Protocol):
    fetched: dict[tuple[str, str], int]


class RegistryReporter:
    def __init__(
        self,
        client: RegistryClient,
        vehicle_id: str,
        hardware_id: str,
        host: ModelHost,
        fetcher: _Fetched,
    ) -> None:
        self.client = client
        self.vehicle_id = vehicle_id
        self.hardware_id = hardware_id
        self.host = host
        self.fetcher = fetcher
        self.sent: list[tuple[str, str, str]] = []  # (name, version, step), for the operator's log

    def report(self, entry: Entry, step: str) -> None:
        job = entry.job
        if job is None:
            return
        active = self.host.get(entry.name)
        self.sent.append((entry.name, job.version, step))
        self.client.report(
            ota_pb2.ReportInstallRequest(
                vehicle_id=self.vehicle_id,
                hardware_id=self.hardware_id,
                name=entry.name,
                version=job.version,
                sha256=job.sha256,
                status=install_status(step),
                reason=entry.reason,
                from_version=entry.previous_version,
                encoding=encoding_pb(job.encoding),
                bytes_downloaded=self.fetcher.fetched.get((job.sha256, job.encoding), 0),
                duration_s=max(0.0, entry.updated_at - entry.activated_at)
                if step == "confirmed"
                else 0.0,
                active_version=active.version if active else "",
            )
        )
