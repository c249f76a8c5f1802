"""One emulated vehicle: the real agent, run inside its network namespace.

Started by the harness as ``ip netns exec NS python -m simulator.emulate.runner
SPEC.json``. It imports everything first, says it is ready, waits for the
harness's start time, then behaves as the simulator assumes a vehicle does: it
checks in when the campaign starts if reachable, else when its next window
opens, and keeps trying in each window until the update is installed (the
agent resumes its partial download across windows). What it measured goes to
the spec's ``out`` file as JSON.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from ota.tls import TlsFiles
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
    for start, end in spec["windows"]:
        if t0 + end <= time.time():
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


def _session(spec: dict, t0: float, result: dict[str, object]) -> dict[str, object]:  # type: ignore[type-arg]
    """One session: a fresh connection, as after a vehicle regains its link."""
    rec: dict[str, object] = {"start": time.time() - t0, "first_byte": None}
    first: list[float] = []

    def progress(name: str, done: int, total: int) -> None:
        now = time.time() - t0
        if not first:
            first.append(now)
        if done >= total and result["done_at"] is None:
            result["done_at"] = now

    ca, cert, key = (Path(p) for p in spec["tls"])
    identity = TlsFiles(ca, cert, key, server_name="localhost")
    client = RegistryClient(spec["registry"], TransportConfig(rpc_deadline_s=20.0, download_deadline_s=600.0),
                            tls_files=identity)
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
            outcomes = agent.update_once(progress=progress)
        finally:
            agent.close()
    except Exception as e:  # noqa: BLE001 - a session that dies with the link is data, not a crash
        outcomes = []
        rec["status"], rec["reason"] = "error", f"{type(e).__name__}: {e}"
    finally:
        client.close()
    if outcomes:
        o = outcomes[0]
        rec.update(status=o.status, reason=o.reason, bytes_downloaded=o.bytes_downloaded, length=o.length)
        if o.status == "installed":
            result["installed_at"] = time.time() - t0
            result["length"] = o.length
    elif "status" not in rec:
        rec["status"] = "nothing offered"
    rec["first_byte"] = first[0] if first else None
    rec["end"] = time.time() - t0
    return rec


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main(sys.argv[1]))
