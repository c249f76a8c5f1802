"""Shared pytest fixtures: real keys, a real registry on loopback, real agents."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def squeezenet_bytes() -> bytes:
    """The ONNX bytes of SqueezeNet v1.0 with the real weights, built once per session."""
    from modelpack import zoo

    return zoo.build("squeezenet1.0")


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TUF keystore (ed25519 keys per role, signed root v1), made once."""
    from server.keys import Keystore

    path = tmp_path_factory.mktemp("keys")
    Keystore.init(path)
    return path


@dataclass
class RunningRegistry:
    registry: "server.registry.Registry"  # type: ignore[name-defined]  # noqa: F821
    address: str
    data_dir: Path
    keys_dir: Path


@pytest.fixture
def registry_server(tmp_path: Path, keys_dir: Path) -> Iterator[RunningRegistry]:
    """A real registry gRPC server on a free loopback port, with its own data dir."""
    from server.registry import Registry
    from server.service import create_server

    reg = Registry.open(tmp_path / "registry", keys_dir)
    server, port = create_server(reg, "127.0.0.1:0")
    try:
        yield RunningRegistry(reg, f"127.0.0.1:{port}", tmp_path / "registry", keys_dir)
    finally:
        server.stop(None)
        reg.store.close()


@pytest.fixture
def make_agent(tmp_path: Path, registry_server: RunningRegistry):
    """Factory for vehicle agents talking to ``registry_server`` over gRPC."""
    from vehicle_agent.agent import AgentConfig, VehicleAgent

    agents = []

    def make(vehicle_id: str = "car-1", state: str | None = None, **kw) -> VehicleAgent:
        cfg = AgentConfig(
            registry=registry_server.address,
            state_dir=tmp_path / (state or f"state-{vehicle_id}"),
            vehicle_id=vehicle_id,
            trusted_root=registry_server.keys_dir / "root.json",
            **kw,
        )
        agent = VehicleAgent(cfg)
        agents.append(agent)
        return agent

    yield make
    for a in agents:
        a.close()
