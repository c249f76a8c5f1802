"""The agent's footprint: peak RSS and CPU while idle, while updating, while serving.

For each zoo model the agent can serve (SqueezeNet 1.0; SqueezeDet when the
zoo has it), a registry and an agent run as real processes; the agent is
sampled from /proc every 100 ms through three phases:

* idle: nothing to do, checking in every second (a car would check in every
  few minutes: this is the pessimistic end),
* updating: three new versions published back to back, each downloaded,
  verified, loaded and self-tested beside the served one, swapped, confirmed,
* serving: two closed-loop clients on the Unix socket.

The budget (``BUDGET``) is checked and the run fails if it is not held.

    python bench/agent_footprint.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from agent_common import (
    REPO,
    Hammer,
    Sampler,
    publish,
    sample,
    start_agent,
    start_registry,
    stop,
    wait_served,
)

from modelpack import zoo
from modelpack.imaging import IMAGES_DIR, load_image, preprocess
from modelpack.runtime import read_model_info
from otawire.v1 import inference_pb2
from testkit.variants import successor
from vehicle_agent.serving import tensor_frame

# What the agent may use on the vehicle, by the model it serves (the systemd unit's MemoryMax
# leaves headroom above the larger). SqueezeDet's 1248×384 input needs about ten times
# SqueezeNet's activation memory per inference; at most two inferences run at once
# (ModelHost), and during an update two sessions are loaded. CPU while idle is per core
# at a 1 s check-in.
BUDGET = {
    "squeezenet1.0": {"rss_peak_mb": 256.0, "idle_cpu_pct": 5.0},
    "squeezedet": {"rss_peak_mb": 512.0, "idle_cpu_pct": 5.0},
}


def measure(name: str, seconds: float, work: Path) -> dict:
    base = zoo.build(name)
    info = read_model_info(base)
    assert info is not None
    image = "kitti_road.png" if info.kind == "detector" else "chelsea.png"
    frame = tensor_frame(preprocess(load_image(IMAGES_DIR / image), info.preprocessing))
    request = (
        inference_pb2.DetectRequest(model=name, frame=frame)
        if info.kind == "detector"
        else inference_pb2.ClassifyRequest(model=name, frame=frame, top_k=5)
    )
    successors = [successor(base, n) for n in (1, 2, 3)]
    registry, address = start_registry(work)
    sock = work / "agent.sock"
    agent = None
    try:
        publish(address, base, name, "1.0.0")
        agent = start_agent(work, address, sock, interval=1.0, health_window=1.0)
        wait_served(sock, name, "1.0.0", "confirmed")
        s = Sampler(agent.pid)
        i0 = s.mark()
        time.sleep(seconds)
        i1 = s.mark()
        for n, data in enumerate(successors, 1):
            publish(address, data, name, f"1.0.{n}")
            wait_served(sock, name, f"1.0.{n}", "confirmed")
        i2 = s.mark()
        h = Hammer(sock, request, 2)
        time.sleep(0.5)
        i3 = s.mark()
        time.sleep(seconds)
        i4 = s.mark()
        h.stop()
        hwm = sample(agent.pid).hwm_mb
        s.close()
        failures = sum(len(c.failures) for c in h.calls)
    finally:
        if agent is not None:
            stop(agent)
        stop(registry)
    return {
        "model": name,
        "bytes": len(base),
        "trained": info.trained,
        "idle": s.phase(i0, i1),
        "updating": s.phase(i1, i2),
        "serving": s.phase(i3, i4),
        "vm_hwm_mb": hwm,
        "serve_failures": failures,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    models = [m for m in ("squeezenet1.0", "squeezedet") if m in zoo.names()]
    results = []
    for name in models:
        with tempfile.TemporaryDirectory(prefix="ota-foot-", dir="/tmp") as tmp:
            results.append(measure(name, args.seconds, Path(tmp)))
    print(
        f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine)"
    )
    print(
        "\n## Agent footprint (budget: "
        + "; ".join(
            f"{m}: peak RSS ≤ {b['rss_peak_mb']:.0f} MB, idle CPU ≤ {b['idle_cpu_pct']:.0f} % of a core"
            for m, b in BUDGET.items()
        )
        + "; idle = checking in every second)\n"
    )
    print("| model | phase | CPU % of a core | RSS peak MB | RSS mean MB |")
    print("|---|---|---:|---:|---:|")
    ok = True
    for r in results:
        for phase in ("idle", "updating", "serving"):
            p = r[phase]
            print(
                f"| {r['model']} ({r['bytes'] / 1e6:.1f} MB{'' if r['trained'] else ', seeded'}) | {phase} | "
                f"{p['cpu_pct']:.1f} | {p['rss_peak_mb']:.0f} | {p['rss_mean_mb']:.0f} |"
            )
        b = BUDGET[r["model"]]
        held = r["vm_hwm_mb"] <= b["rss_peak_mb"] and r["idle"]["cpu_pct"] <= b["idle_cpu_pct"]
        ok &= held and r["serve_failures"] == 0
        print(
            f"| {r['model']} | whole run: VmHWM | | {r['vm_hwm_mb']:.0f} | "
            f"{'budget held' if held else 'OVER BUDGET'} (≤ {b['rss_peak_mb']:.0f}) |"
        )
    missing = [m for m in ("squeezenet1.0", "squeezedet") if m not in models]
    if missing:
        print(f"\nnot measured (not in this build's zoo yet): {', '.join(missing)}")
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "agent_footprint.json").write_text(
        json.dumps({"budget": BUDGET, "results": results}, indent=1)
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
