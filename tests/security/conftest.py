"""The attack bench: an honest registry, and a malicious one in front of it.

``Scene`` runs the real registry (own keystore per test, so tests may rotate
and revoke keys) and a second gRPC server, speaking mutual TLS with the
registry's own server certificate, whose Vehicle service passes everything
through to the real registry unless ``scene.attack`` replaces a download: a
compromised registry or mirror, or a man in the middle holding the server key.
The agents under attack talk to that server.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from modelpack.imaging import IMAGES_DIR
from otawire import tls
from otawire.v1 import ota_pb2, ota_pb2_grpc
from server.registry import Registry
from server.service import VehicleServicer, create_server
from server.signing.keys import Keystore
from testkit.helpers import publish_released, with_provenance
from tests.conftest import vehicle_identity
from vehicle_agent.agent import AgentConfig, UpdateOutcome, VehicleAgent
from vehicle_agent.transport import RegistryClient, TransportConfig

MODEL = "squeezenet1.0"
Honest = Callable[[], Iterator[ota_pb2.DownloadChunk]]
Attack = Callable[
    [ota_pb2.DownloadRequest, grpc.ServicerContext, Honest], Iterator[ota_pb2.DownloadChunk]
]


class MaliciousVehicle(VehicleServicer):
    """The Vehicle service of the real registry, with downloads open to tampering."""

    def __init__(self, registry: Registry) -> None:
        super().__init__(registry)
        self.attack: Attack | None = None
        self.offers: (
            Callable[[ota_pb2.CheckForUpdateResponse], ota_pb2.CheckForUpdateResponse] | None
        ) = None

    def CheckForUpdate(self, request, context):
        resp = VehicleServicer.CheckForUpdate(self, request, context)
        return self.offers(resp) if self.offers else resp

    def Download(self, request, context):
        def honest() -> Iterator[ota_pb2.DownloadChunk]:
            return VehicleServicer.Download(self, request, context)

        if self.attack is None:
            yield from honest()
        else:
            yield from self.attack(request, context, honest)


@dataclass
class Scene:
    registry: Registry
    keys: Keystore
    pki: Path
    honest_address: str
    evil_address: str
    evil: MaliciousVehicle
    tmp: Path
    agents: list[VehicleAgent] = field(default_factory=list)

    def set_attack(self, attack: Attack | None) -> None:
        self.evil.attack = attack

    def agent(
        self,
        vehicle_id: str = "car-1",
        transport: TransportConfig | None = None,
        via_evil: bool = True,
        **kw,
    ) -> VehicleAgent:
        address = self.evil_address if via_evil else self.honest_address
        identity = vehicle_identity(self.pki, vehicle_id)
        cfg = AgentConfig(
            registry=address,
            state_dir=self.tmp / f"state-{vehicle_id}",
            vehicle_id=vehicle_id,
            trusted_root=self.keys.path / "root.json",
            director_root=self.keys.path / "director-root.json",
            identity=identity,
            **kw,
        )
        agent = VehicleAgent(
            cfg, RegistryClient(address, transport or TransportConfig(), tls_files=identity)
        )
        self.agents.append(agent)
        return agent

    def metadata(self, path: str, vehicle_id: str = "car-1") -> bytes:
        """A metadata file exactly as the honest registry serves it now."""
        return b"".join(
            d for _, d, _ in self.registry.read_chunks("metadata", path, 0, 0, 1 << 20, vehicle_id)
        )


@pytest.fixture
def scene(tmp_path: Path, pki: Path) -> Iterator[Scene]:
    keys = Keystore.init(tmp_path / "keys")
    reg = Registry.open(tmp_path / "registry", keys.path, ca_pem=(pki / tls.CA_CERT).read_bytes())
    server_tls = tls.TlsFiles.in_dir(pki, "server", "registry")
    honest, honest_port = create_server(reg, "127.0.0.1:0", tls_files=server_tls)
    evil_servicer = MaliciousVehicle(reg)
    evil = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=[("grpc.max_send_message_length", 64 << 20)],
    )
    ota_pb2_grpc.add_VehicleServicer_to_server(evil_servicer, evil)
    evil_port = evil.add_secure_port("127.0.0.1:0", tls.server_credentials(server_tls))
    evil.start()
    s = Scene(
        reg,
        keys,
        pki,
        f"127.0.0.1:{honest_port}",
        f"127.0.0.1:{evil_port}",
        evil_servicer,
        tmp_path,
    )
    try:
        yield s
    finally:
        for a in s.agents:
            a.close()
        evil.stop(None)
        honest.stop(None)
        reg.store.close()


@pytest.fixture(scope="session")
def successor_bytes(squeezenet_bytes: bytes) -> bytes:
    return with_provenance(squeezenet_bytes, "1.0.1")


@pytest.fixture
def running(scene: Scene, squeezenet_bytes: bytes, successor_bytes: bytes) -> VehicleAgent:
    """car-1 runs 1.0.0 (installed through the malicious server while it behaved); 1.0.1 is out."""
    publish_released(scene.registry, MODEL, "1.0.0", squeezenet_bytes)
    agent = scene.agent()
    [out] = agent.update_once()
    assert out.status == "installed", out.reason
    publish_released(scene.registry, MODEL, "1.0.1", successor_bytes)
    return agent


def assert_refused(
    agent: VehicleAgent,
    outcomes: list[UpdateOutcome],
    scene: Scene,
    status: str,
    reason: str,
    serving: str = "1.0.0",
    attack: str | None = None,
) -> None:
    """The agent refused, still serves ``serving`` (and classifies with it), and reported why.

    ``attack``: what the agent must have recorded as an attack and delivered in its
    next signed manifest (default: ``reason`` when ``status`` is attack_detected).
    """
    assert outcomes, "the agent did nothing"
    assert all(o.status != "installed" for o in outcomes), outcomes
    assert any(o.status == status and re.search(reason, o.reason) for o in outcomes), [
        (o.status, o.reason) for o in outcomes
    ]
    assert agent.models[MODEL].version == serving
    assert agent.slots.load()[MODEL].active_record().version == serving
    assert agent.classify(MODEL, IMAGES_DIR / "coffee.png", 1)[0].label == "espresso"
    reports = scene.registry.store.list_reports(agent.config.vehicle_id)
    assert any(r.status == status and re.search(reason, r.reason) for r in reports), [
        (r.status, r.reason) for r in reports
    ]
    attack = attack or (reason if status == "attack_detected" else None)
    if attack:
        # The next signed version manifest carries it to the director.
        assert any(re.search(attack, a) for a in agent.trust.state.attacks), (
            agent.trust.state.attacks
        )
        agent.trust.send_manifest({n: (r.version, r.sha256) for n, r in agent.installed().items()})
        vehicle = scene.registry.store.get_manifest(agent.config.vehicle_id)
        assert vehicle is not None and any(re.search(attack, a) for a in vehicle.attacks), vehicle
