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
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from otawire.tls import TlsFiles
from otawire.v1 import ota_pb2
from vehicle_agent.agent import AgentConfig, VehicleAgent
from vehicle_agent.download import RetryPolicy
from vehicle_agent.transport import RegistryClient, TransportConfig

log = logging.getLogger("simulator.emulate.runner")


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    out = Path(spec["out"])
    Path(spec["ready"]).write_text("ready")
    go = Path(spec["go"])
    deadline = (
        time.time() + 900
    )  # the harness waits for every agent to load (minutes for a hundred on two cores)
    while not go.exists():
        if time.time() > deadline:
            return 2
        time.sleep(0.02)
    t0 = float(go.read_text())
    end_by = t0 + float(spec["horizon_s"])
    sessions: list[dict[str, object]] = []
    result: dict[str, object] = {
        "vehicle": spec["vehicle"],
        "sessions": sessions,
        "done_at": None,
        "installed_at": None,
    }
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

    def __init__(
        self, address: str, config: TransportConfig, t0: float, tls_files: TlsFiles
    ) -> None:
        super().__init__(address, config, tls_files=tls_files)
        self.t0 = t0
        self.first_payload: float | None = None
        self.payload_done: float | None = None
        self.requests: list[
            list[float]
        ] = []  # [start, offset, max_bytes, end, bytes, ok] per payload request

    def download(
        self,
        kind: ota_pb2.FileKind,
        path: str,
        offset: int = 0,
        max_bytes: int = 0,
        vehicle_id: str = "",
    ) -> Iterator[ota_pb2.DownloadChunk]:
        payload = kind in (ota_pb2.FILE_KIND_TARGET, ota_pb2.FILE_KIND_ENCODING)
        req = [time.time() - self.t0, offset, max_bytes, 0.0, 0, 0]
        if payload:
            self.requests.append(req)
        for chunk in super().download(kind, path, offset, max_bytes, vehicle_id):
            if payload and self.first_payload is None:
                self.first_payload = time.time() - self.t0
            req[4] += len(chunk.data)
            req[3] = time.time() - self.t0
            yield chunk
        if payload:  # the stream ended normally: the last byte of this payload is in
            self.payload_done = time.time() - self.t0
            req[3], req[5] = self.payload_done, 1


class SharedJitter:
    """``random.Random.uniform`` for the agent's RetryPolicy, from the simulator's draws.

    Common random numbers: the real agent's backoff jitter after a cut in window
    j is the simulator's ``rng.uniform(seed, "retry", vehicle, (j + 1) * 64 + i)``
    for its i-th retry, so that the comparison measures the model, not two
    different dice. The agent's code is unchanged; this only feeds its rng hook.
    """

    def __init__(
        self,
        seed: int,
        vehicle: int,
        windows: list[tuple[float, float]],
        t0: float,
        base_s: float,
        factor: float,
    ) -> None:
        self.seed, self.vehicle, self.windows, self.t0 = seed, vehicle, windows, t0
        self.base_s, self.factor = base_s, factor

    def uniform(self, a: float, b: float) -> float:
        from simulator import rng

        d = 2 * b  # RetryPolicy.delay draws uniform(0, d/2)
        i = 7 if d >= 30 else round(math.log(max(d, self.base_s) / self.base_s, self.factor)) + 1
        now = time.time() - self.t0
        # The simulator keys the draws by the window that follows the cut (key = j on day 0).
        j = sum(1 for start, _ in self.windows if start <= now)
        u = float(rng.uniform(self.seed, "retry", self.vehicle, j * 64 + i))
        return a + (b - a) * u


def _session(spec: dict[str, Any], t0: float, result: dict[str, object]) -> dict[str, object]:
    """One session: a fresh connection, as after a vehicle regains its link."""
    rec: dict[str, object] = {"start": time.time() - t0, "rx_start": _rx(spec)}
    ca, cert, key = (Path(p) for p in spec["tls"])
    identity = TlsFiles(ca, cert, key, server_name="localhost")  # dialled through a relay's address
    client = TimedClient(
        spec["registry"],
        TransportConfig(rpc_deadline_s=20.0, download_deadline_s=600.0),
        t0,
        identity,
    )
    cfg = AgentConfig(
        registry=spec["registry"],
        state_dir=Path(spec["state"]),
        vehicle_id=spec["vehicle"],
        trusted_root=Path(spec["root"]),
        # The agent's own policy, unless the calibration needs a session to end at a cut.
        retry=_retry_policy(spec, t0),
        director_root=Path(spec["director_root"]),
        identity=identity,
    )
    try:
        agent = VehicleAgent(cfg, client)
        try:
            outcomes = agent.update_once()
        finally:
            agent.close()
    except Exception as e:
        outcomes = []
        rec["status"], rec["reason"] = "error", f"{type(e).__name__}: {e}"
    finally:
        client.close()
    if outcomes:
        o = outcomes[0]
        rec.update(
            status=o.status,
            reason=o.reason,
            encoding=o.encoding,
            bytes_downloaded=o.bytes_downloaded,
            length=o.length,
        )
        if o.status == "installed":
            result["installed_at"] = time.time() - t0
            result["done_at"] = client.payload_done
            result["encoding"] = o.encoding
    elif "status" not in rec:
        rec["status"] = "nothing offered"
    rec["first_byte"] = client.first_payload
    rec["requests"] = client.requests  # for diagnosing a vehicle the simulator misses
    rec["end"] = time.time() - t0
    rec["rx_end"] = _rx(spec)
    return rec


def _retry_policy(spec: dict[str, Any], t0: float) -> RetryPolicy:
    """The agent's own policy with the simulator's jitter, or the calibration's give-up-at-once."""
    if spec.get("retry_attempts"):
        return RetryPolicy(attempts=spec["retry_attempts"])
    base = RetryPolicy()
    jitter = SharedJitter(
        spec["seed"], spec["index"], spec["windows"], t0, base.base_s, base.factor
    )
    return RetryPolicy(rng=jitter)  # type: ignore[arg-type]  # duck-types Random.uniform, all RetryPolicy calls


def _rx(spec: dict[str, Any]) -> list[int]:
    """Bytes and packets received so far on this namespace's interface."""
    stats = Path("/sys/class/net") / spec["ifname"] / "statistics"
    try:
        return [int((stats / "rx_bytes").read_text()), int((stats / "rx_packets").read_text())]
    except OSError:
        return [0, 0]


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main(sys.argv[1]))
