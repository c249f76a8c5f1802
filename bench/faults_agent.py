"""The agent process that the power-cut campaign (``bench/faults.py``) kills.

It starts like the real service (the constructor loads the active slots and
recovers the journal), proves what it serves by hashing the loaded slot and
running one inference, then checks in every 50 ms. It prints one JSON line per
event on stdout for the campaign to read:

    {"event": "up", "served": {name: [version, sha256]}, "recovery_s": ...}
    {"event": "idle", "served": {...}}        nothing offered, no health window running
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

t_start = time.perf_counter()

from vehicle_agent.agent import AgentConfig, VehicleAgent
from vehicle_agent.health import HealthPolicy
from vehicle_agent.journal import State


def emit(event: str, **kw) -> None:
    sys.stdout.write(json.dumps({"event": event, **kw}) + "\n")
    sys.stdout.flush()


def served(agent: VehicleAgent) -> dict[str, list[str]]:
    """What the agent serves, checked: the loaded slot's bytes hash to the record, one inference runs."""
    out = {}
    for name, model in agent.models.items():
        m = agent.slots.load()[name]
        assert m.active is not None  # a model the agent serves was installed into a slot
        data = agent.slots.model_path(name, m.active).read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        x = np.zeros(model.info.input_shape, dtype=np.float32)
        y, _ = agent.host.run(name, x)
        assert np.all(np.isfinite(y))
        out[name] = [model.version, sha if sha == model.sha256 else f"MISMATCH:{sha}"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--registry", required=True)
    ap.add_argument("--state", type=Path, required=True)
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--health-window", type=float, default=0.15)
    ap.add_argument(
        "--pki",
        type=Path,
        required=True,
        help="fleet PKI: the vehicle's certificate is issued from it",
    )
    ap.add_argument(
        "--gate",
        type=Path,
        help="check in only while this file exists (the campaign publishes first)",
    )
    args = ap.parse_args()
    from otawire import tls

    agent = VehicleAgent(
        AgentConfig(
            registry=args.registry,
            state_dir=args.state,
            vehicle_id="faults-car",
            trusted_root=args.root,
            health=HealthPolicy(window_s=args.health_window),
            director_root=args.root.parent / "director-root.json",
            identity=tls.ensure(args.pki, "vehicle", "faults-car"),
        )
    )
    emit("up", served=served(agent), recovery_s=time.perf_counter() - t_start)
    was_idle = False
    while True:
        if args.gate is not None and not args.gate.exists():
            agent.poll()
            time.sleep(0.01)
            continue
        outcomes = agent.update_once()
        busy = any(e.state == State.ACTIVE for e in agent.journal.entries())
        idle = not outcomes and not busy
        if idle and not was_idle:
            emit("idle", served=served(agent))
        was_idle = idle
        time.sleep(0.05)


if __name__ == "__main__":
    main()
