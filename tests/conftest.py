"""Shared pytest fixtures: real keys, a real registry on loopback, real agents."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests: no per-example deadline (this machine's 2 cores are often shared,
# and a slow example is not a wrong one); in CI the same examples every run, so a
# failure there is reproducible and never a coin toss.
settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


# `make test` runs the suite on two pytest-xdist workers. A test marked ``alone`` (a timing
# comparison, shaped links, a cgroup of one CPU) never runs beside another test of the same run:
# it holds the run's lock exclusively, every other test holds it shared. The turnstile lets a
# waiting ``alone`` test in before the other worker's next test. Without xdist, nothing to do.
_locks: dict[str, int] = {}


def _run_lock(config: pytest.Config, name: str) -> int:
    if name not in _locks:
        # Every worker's base temp is a folder of the run's own (``.../pytest-N/popen-gwK``).
        root = config._tmp_path_factory.getbasetemp().parent  # type: ignore[attr-defined]
        _locks[name] = os.open(root / f"ota-{name}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    return _locks[name]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    turnstile, run = _run_lock(item.config, "turnstile"), _run_lock(item.config, "run")
    alone = item.get_closest_marker("alone") is not None
    fcntl.flock(turnstile, fcntl.LOCK_EX)
    fcntl.flock(run, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
    if not alone:
        fcntl.flock(turnstile, fcntl.LOCK_UN)
    try:
        yield
    finally:
        fcntl.flock(run, fcntl.LOCK_UN)
        if alone:
            fcntl.flock(turnstile, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def squeezenet_bytes() -> bytes:
    """The ONNX bytes of SqueezeNet v1.0 with the real weights, built once per session."""
    from modelpack import zoo

    return zoo.build("squeezenet1.0")


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TUF keystore (ed25519 keys per role, signed root v1), made once."""
    from server.signing.keys import Keystore

    path = tmp_path_factory.mktemp("keys")
    Keystore.init(path)
    return path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fleet PKI: a CA, the registry's server certificate and a publisher certificate."""
    from otawire import tls

    path = tmp_path_factory.mktemp("pki")
    tls.make_ca(path)
    tls.issue(path, "server", "registry")
    tls.issue(path, "publisher", "ml-team")
    return path


def vehicle_identity(pki: Path, vehicle_id: str) -> otawire.tls.TlsFiles:  # type: ignore[name-defined]  # noqa: F821
    """The vehicle's certificate and key, issued on first use."""
    from otawire import tls

    files = tls.TlsFiles.in_dir(pki, "vehicle", vehicle_id)
    return files if files.cert.exists() else tls.issue(pki, "vehicle", vehicle_id)


def agent_config(
    server, vehicle_id: str, state_dir: Path, address: str | None = None, **kw
) -> vehicle_agent.agent.AgentConfig:  # type: ignore[name-defined]  # noqa: F821
    """An agent's configuration for a test registry (anything with ``address``, ``keys_dir``,
    ``pki``): both trust roots, its certificate, that registry (or ``address``)."""
    from vehicle_agent.agent import AgentConfig

    return AgentConfig(
        registry=address or server.address,
        state_dir=state_dir,
        vehicle_id=vehicle_id,
        trusted_root=server.keys_dir / "root.json",
        director_root=server.keys_dir / "director-root.json",
        identity=vehicle_identity(server.pki, vehicle_id),
        **kw,
    )


@dataclass
class RunningRegistry:
    registry: server.registry.Registry  # type: ignore[name-defined]  # noqa: F821
    address: str
    data_dir: Path
    keys_dir: Path
    pki: Path

    @property
    def publisher_tls(self) -> otawire.tls.TlsFiles:  # type: ignore[name-defined]  # noqa: F821
        from otawire import tls

        return tls.TlsFiles.in_dir(self.pki, "publisher", "ml-team")

    def publisher(self, **kw) -> server.client.PublisherClient:  # type: ignore[name-defined]  # noqa: F821
        """A publisher client with the publisher's certificate (mutual TLS)."""
        from server.client import PublisherClient

        return PublisherClient(self.address, tls_files=self.publisher_tls, **kw)

    def agent_config(
        self, vehicle_id: str, state_dir: Path, address: str | None = None, **kw
    ) -> vehicle_agent.agent.AgentConfig:  # type: ignore[name-defined]  # noqa: F821
        return agent_config(self, vehicle_id, state_dir, address, **kw)

    def vehicle_tls(self, vehicle_id: str = "car-1") -> otawire.tls.TlsFiles:  # type: ignore[name-defined]  # noqa: F821
        return vehicle_identity(self.pki, vehicle_id)

    def channel(self, role: str = "publisher", name: str = "ml-team") -> grpc.Channel:  # type: ignore[name-defined]  # noqa: F821
        """A raw TLS channel holding ``role``'s certificate, for tests that speak the wire directly."""
        import grpc

        from otawire import tls

        files = (
            vehicle_identity(self.pki, name)
            if role == "vehicle"
            else tls.TlsFiles.in_dir(self.pki, role, name)
        )
        return grpc.secure_channel(self.address, tls.channel_credentials(files))


@pytest.fixture
def registry_server(tmp_path: Path, keys_dir: Path, pki: Path) -> Iterator[RunningRegistry]:
    """A real registry gRPC server (mutual TLS, director on) on a free loopback port."""
    from otawire import tls
    from server.registry import Registry
    from server.service import create_server

    reg = Registry.open(tmp_path / "registry", keys_dir, ca_pem=(pki / tls.CA_CERT).read_bytes())
    server, port = create_server(
        reg, "127.0.0.1:0", tls_files=tls.TlsFiles.in_dir(pki, "server", "registry")
    )
    try:
        yield RunningRegistry(reg, f"127.0.0.1:{port}", tmp_path / "registry", keys_dir, pki)
    finally:
        server.stop(None)
        reg.store.close()


@pytest.fixture
def make_agent(tmp_path: Path, registry_server: RunningRegistry):
    """Factory for vehicle agents talking to ``registry_server`` over gRPC."""
    from vehicle_agent.agent import VehicleAgent

    agents = []

    def make(vehicle_id: str = "car-1", state: str | None = None, **kw) -> VehicleAgent:
        agent = VehicleAgent(
            agent_config(
                registry_server, vehicle_id, tmp_path / (state or f"state-{vehicle_id}"), **kw
            )
        )
        agents.append(agent)
        return agent

    yield make
    for a in agents:
        a.close()
