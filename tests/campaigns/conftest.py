"""Fixtures for campaign tests: a registry whose campaign manager runs on a clock we control."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from otawire import tls
from server.campaigns.manager import CampaignManager
from server.registry import Registry
from server.service import create_server


class FakeClock:
    """Seconds since the epoch that move only when a test says so: soak times without sleeping."""

    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class CampaignRegistry:
    """A real registry on loopback that can be stopped and restarted on the same port and data."""

    data_dir: Path
    keys_dir: Path
    clock: FakeClock
    pki: Path
    registry: Registry | None = None
    server: grpc.Server | None = None
    port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def manager(self) -> CampaignManager:
        assert self.registry is not None and isinstance(self.registry.rollouts, CampaignManager)
        return self.registry.rollouts

    def start(self) -> None:
        self.registry = Registry.open(
            self.data_dir, self.keys_dir, ca_pem=(self.pki / tls.CA_CERT).read_bytes()
        )
        # refresh_s=0: derive state on every call, so tests see each report at once.
        self.registry.rollouts = CampaignManager(self.registry.store, clock=self.clock, refresh_s=0)
        self.server, self.port = create_server(
            self.registry,
            f"127.0.0.1:{self.port}",
            tls_files=tls.TlsFiles.in_dir(self.pki, "server", "registry"),
        )

    @property
    def publisher_tls(self) -> tls.TlsFiles:
        return tls.TlsFiles.in_dir(self.pki, "publisher", "ml-team")

    def vehicle_tls(self, vehicle_id: str) -> tls.TlsFiles:
        return tls.ensure(self.pki, "vehicle", vehicle_id)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(None)
            self.server = None
        if self.registry is not None:
            self.registry.store.close()
            self.registry = None

    def restart(self) -> None:
        """A registry restart: every in-memory cache is gone, the database and blobs stay."""
        self.stop()
        self.start()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry_server(
    tmp_path: Path, keys_dir: Path, clock: FakeClock, pki: Path
) -> Iterator[CampaignRegistry]:
    """Overrides the root fixture: same registry, campaign manager on the fake clock."""
    reg = CampaignRegistry(tmp_path / "registry", keys_dir, clock, pki)
    reg.start()
    try:
        yield reg
    finally:
        reg.stop()
