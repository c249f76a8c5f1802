"""One emulated vehicle: the real agent, run inside its network namespace.

Started by the harness as ``ip netns exec NS python -m simulator.emulate.runner
SPEC.json``. It imports everything first, says it is ready, waits for the
harness's start time, then behaves as the simulator assumes a vehicle does: it
checks in at its first check-in after the campaign starts if reachable (the
simulator's poll phase), else when its next window opens, and keeps trying in each window until the update is installed (the
agent resumes its partial download across windows). What it measured goes to
the spec's ``out`` file as JSON. The time of the last payload byte is taken
at the transport (a subclass of the agent's own gRPC client), whichever path
the agent takes: the registry's encoding or the full file.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from ota.tls import TlsFiles
from ota.v1 import ota_pb2
from vehicle_agent.agent import AgentConfig, VehicleAgent
from vehicle_agent.transport import RegistryClient, TransportConfig

log = logging.getLogger("simulator.emulate.runner")


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    out = Path(spec["out"])
    Path(spec["ready"]).write_text("ready")
    go = Path(spec["go"])
    deadline = time.time() + 300
    while not go.exists():
        if time.time() > deadline:
            return 2
        time.sleep(0.02)
    t0 = float(go.read_text())
    end_by = t0 + float(spec["horizon_s"])
    sessions: list[dict[str, object]] = []
    result: dict[str, object] = {"vehicle": spec["vehicle"], "sessions": sessions, "done_at": None, "installed_at": None}
    not_before = float(spec.get("first_contact", 0.0))  # the simulator's first check-in
    for start, end in spec["windows"]:
        start = max(start, not_before)
        if start >= end or t0 + end <= time.time():
            continue
        if t0 + start >= end_by:
            break
        time.sleep(max(0.0, t0 + start - time.time()))
        while time.time() < t0 + end - 0.01:
            rec = _session(spec, t0, result)
            sessions.append(rec)
            if rec["status"] == "installed":
                break
            time.sleep(0.05)
        if result["installed_at"] is not None:
            break
    out.write_text(json.dumps(result))
    return 0


class TimedClient(RegistryClient):
    """The real client, noting when payload streams (target or encoding) deliver and finish."""

    def __init__(self, address: str, config: TransportConfig, t0: float, tls_files: TlsFiles) -> None:
        super().__init__(address, config, tls_files=tls_files)
        self.t0 = t0
        self.first_payload: float | None = None
        self.payload_done: float | None = None

    def download(self, kind, path, offset=0, max_bytes=0, vehicle_id=""):  # type: ignore[no-untyped-def]
        payload = kind in (ota_pb2.FILE_KIND_TARGET, ota_pb2.FILE_KIND_ENCODING)
        for chunk in super().download(kind, path, offset, max_bytes, vehicle_id):
            if payload and self.first_payload is None:
                self.first_payload = time.time() - self.t0
            yield chunk
        if payload:  # the stream ended normally: the last byte of this payload is in
            self.payload_done = time.time() - self.t0


def _session(spec: dict, t0: float, result: dict[str, object]) -> dict[str, object]:  # type: ignore[type-arg]
    """One session: a fresh connection, as after a vehicle regains its link."""
    rec: dict[str, object] = {"start": time.time() - t0, "rx_start": _rx(spec)}
    ca, cert, key = (Path(p) for p in spec["tls"])
    identity = TlsFiles(ca, cert, key, server_name="localhost")  # dialled through a relay's address
    client = TimedClient(spec["registry"], TransportConfig(rpc_deadline_s=20.0, download_deadline_s=600.0), t0,
                         identity)
    cfg = AgentConfig(
        registry=spec["registry"],
        state_dir=Path(spec["state"]),
        vehicle_id=spec["vehicle"],
        trusted_root=Path(spec["root"]),
        director_root=Path(spec["director_root"]),
        identity=identity,
    )
    try:
        agent = VehicleAgent(cfg, client)
        try:
            outcomes = agent.update_once()
        finally:
            agent.close()
    except Exception as e:  # noqa: BLE001 - a session that dies with the link is data, not a crash
        outcomes = []
        rec["status"], rec["reason"] = "error", f"{type(e).__name__}: {e}"
    finally:
        client.close()
    if outcomes:
        o = outcomes[0]
        rec.update(status=o.status, reason=o.reason, encoding=o.encoding, bytes_downloaded=o.bytes_downloaded, length=o.length)
        if o.status == "installed":
            result["installed_at"] = time.time() - t0
            result["done_at"] = client.payload_done
            result["encoding"] = o.encoding
    elif "status" not in rec:
        rec["status"] = "nothing offered"
    rec["first_byte"] = client.first_payload
    rec["end"] = time.time() - t0
    rec["rx_end"] = _rx(spec)
    return rec


def _rx(spec: dict) -> list[int]:  # type: ignore[type-arg]
    """Bytes and packets received so far on this namespace's interface."""
    stats = Path("/sys/class/net") / spec["ifname"] / "statistics"
    try:
        return [int((stats / "rx_bytes").read_text()), int((stats / "rx_packets").read_text())]
    except OSError:
        return [0, 0]


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main(sys.argv[1]))
