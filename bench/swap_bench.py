"""Hot swap under load: does any request fail or stall while models are replaced?

A registry and an agent run as real processes (``ota registry serve``,
``ota agent run --serve``). Closed-loop clients send the same preprocessed
camera frame (chelsea.png as a 1×3×227×227 float32 tensor) to the agent's Unix
socket while the benchmark publishes new SqueezeNet versions one after the
other; each is downloaded, verified, staged, loaded and self-tested beside the
serving one, swapped in, watched for the health window and confirmed.

In the same run, the same number of threads call plain
``onnxruntime.InferenceSession.run`` on the same tensor in this process: the
peer that shows what serving through the agent costs. The agent's CPU and
memory are sampled from /proc in each phase.

    python bench/swap_bench.py [--clients 2] [--seconds 12] [--swaps 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from agent_common import (
    REPO,
    Hammer,
    Sampler,
    pct,
    publish,
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

NAME = "squeezenet1.0"


PEER = """
import json, sys, threading, time
import numpy as np
from modelpack.runtime import make_session
model, tensor, clients, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
session = make_session(model)  # the agent's session settings: 1 intra-op thread
x = np.load(tensor)
for _ in range(20):
    session.run(None, {"data": x})  # warm, as the agent's session is
out = [[] for _ in range(clients)]
stop = threading.Event()
def run(ms):
    while not stop.is_set():
        t = time.perf_counter()
        session.run(None, {"data": x})
        ms.append((time.perf_counter() - t) * 1e3)
threads = [threading.Thread(target=run, args=(o,)) for o in out]
[t.start() for t in threads]
time.sleep(seconds)
stop.set()
[t.join() for t in threads]
print(json.dumps([m for o in out for m in o]))
"""


def plain_ort(model: Path, tensor: Path, clients: int, seconds: float) -> np.ndarray:
    """The peer: plain ``InferenceSession.run`` in its own process (as the agent is), same threads, same tensor."""
    r = subprocess.run(
        [sys.executable, "-c", PEER, str(model), str(tensor), str(clients), str(seconds)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return np.asarray(json.loads(r.stdout))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument(
        "--seconds", type=float, default=12.0, help="length of the steady and plain-ORT phases"
    )
    ap.add_argument("--swaps", type=int, default=8)
    ap.add_argument("--health-window", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=4, help="plain-ORT / agent slices, interleaved")
    args = ap.parse_args()
    out_dir = REPO / "bench" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    base = zoo.build(NAME)
    info = read_model_info(base)
    assert info is not None
    x = preprocess(load_image(IMAGES_DIR / "chelsea.png"), info.preprocessing)
    versions = [(f"1.0.{n}", successor(base, n)) for n in range(1, args.swaps + 1)]
    request = inference_pb2.ClassifyRequest(model=NAME, frame=tensor_frame(x), top_k=5)
    with tempfile.TemporaryDirectory(prefix="ota-swap-", dir="/tmp") as tmp:
        work = Path(tmp)
        model_path, tensor_path = work / "model.onnx", work / "frame.npy"
        model_path.write_bytes(base)
        np.save(tensor_path, x)
        registry, address = start_registry(work)
        sock = work / "agent.sock"
        agent = None
        try:
            publish(address, base, NAME, "1.0.0")
            agent = start_agent(work, address, sock, interval=0.3, health_window=args.health_window)
            wait_served(sock, NAME, "1.0.0", "confirmed")
            sampler = Sampler(agent.pid)
            i_idle = sampler.mark()
            time.sleep(5.0)
            i_idle_end = sampler.mark()
            # The machine is shared: plain ORT and the agent take turns in short slices,
            # so that both see the same background load.
            ort_parts, steady_parts, steady_cpu = [], [], []
            for _ in range(args.rounds):
                ort_parts.append(
                    plain_ort(model_path, tensor_path, args.clients, args.seconds / args.rounds)
                )
                h = Hammer(sock, request, args.clients)
                time.sleep(0.3)  # warm-up, not counted
                t0, i0 = time.perf_counter(), sampler.mark()
                time.sleep(args.seconds / args.rounds)
                t1, i1 = time.perf_counter(), sampler.mark()
                h.stop()
                steady_parts.append(h.between(t0, t1))
                steady_cpu.append((i0, i1))
            ort_ms = np.concatenate(ort_parts)
            hammer = Hammer(sock, request, args.clients)
            time.sleep(0.3)
            t_steady = time.perf_counter()
            i_steady_end = sampler.mark()
            windows = []
            for version, data in versions:
                t_pub = time.perf_counter()
                publish(address, data, NAME, version)
                wait_served(sock, NAME, version, "confirmed")
                windows.append((version, t_pub, time.perf_counter()))
            i_swaps_end = sampler.mark()
            t_end = time.perf_counter()
            hammer.stop()
            sampler.close()
        finally:
            if agent is not None:
                stop(agent)
            stop(registry)
    steady = np.concatenate([ms for ms, _ in steady_parts])
    failures = [f for _, fs in steady_parts for f in fs] + hammer.between(0, 0)[1]
    during = np.concatenate([hammer.between(a, b)[0] for _, a, b in windows])
    swap_instants = []
    for c in hammer.calls:
        swap_instants += [
            s for s, v0, v1 in zip(c.start[1:], c.version, c.version[1:], strict=False) if v0 != v1
        ]
    around = (
        np.concatenate([hammer.between(s - 0.25, s + 0.25)[0] for s in swap_instants])
        if swap_instants
        else np.array([])
    )
    all_calls = sum(len(c.ms) for c in hammer.calls) + steady.size
    versions_seen = sorted({v for c in hammer.calls for v in c.version})
    rows = [
        ("plain onnxruntime (own process, same threads)", ort_ms, 0),
        ("agent over Unix socket, steady", steady, 0),
        (f"agent, during {len(windows)} updates (publish → confirmed)", during, 0),
        ("agent, ±250 ms around each swap", around, 0),
    ]
    print(
        f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine)"
    )
    print(
        f"\n## Hot swap under load ({args.clients} closed-loop clients, SqueezeNet 1.0, 1×3×227×227 tensor frames)\n"
    )
    print("| path | calls | p50 ms | p99 ms | max ms | failed |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, ms, _ in rows:
        print(
            f"| {label} | {ms.size:,} | {pct(ms, 50):.2f} | {pct(ms, 99):.2f} | {ms.max() if ms.size else float('nan'):.2f} | "
            f"{len(failures) if label.startswith('agent') else 0} |"
        )
    print(
        f"\nfailed requests in the whole run: {len(failures)} of {all_calls + len(failures):,}; versions served: "
        f"{', '.join(versions_seen)}"
    )
    print(
        f"agent overhead at p50: {pct(steady, 50) - pct(ort_ms, 50):+.2f} ms ({pct(steady, 50) / pct(ort_ms, 50):.2f}× plain ORT); "
        f"p99 during updates / steady: {pct(during, 99) / pct(steady, 99):.2f}×"
    )
    upd = [b - a for _, a, b in windows]
    print(
        f"publish → confirmed per update: median {np.median(upd):.2f} s (health window {args.health_window:g} s)"
    )
    phases = {
        "idle (check-in every 0.3 s)": sampler.phase(i_idle, i_idle_end),
        "serving, steady": {
            k: float(np.mean([sampler.phase(a, b)[k] for a, b in steady_cpu]))
            if k != "rss_peak_mb"
            else max(sampler.phase(a, b)[k] for a, b in steady_cpu)
            for k in ("cpu_pct", "rss_peak_mb", "rss_mean_mb")
        },
        "serving + updating": sampler.phase(i_steady_end, i_swaps_end),
    }
    print("\n## Agent footprint in this run (from /proc; CPU in % of one core)\n")
    print("| phase | CPU % | RSS peak MB | RSS mean MB |")
    print("|---|---:|---:|---:|")
    for k, v in phases.items():
        print(f"| {k} | {v['cpu_pct']:.1f} | {v['rss_peak_mb']:.0f} | {v['rss_mean_mb']:.0f} |")
    (out_dir / "swap_bench.json").write_text(
        json.dumps(
            {
                "clients": args.clients,
                "failures": failures,
                "calls": all_calls,
                "versions_seen": versions_seen,
                "rows": {
                    label: {"n": int(ms.size), "p50": pct(ms, 50), "p99": pct(ms, 99)}
                    for label, ms, _ in rows
                },
                "update_s": upd,
                "footprint": phases,
                "elapsed_s": t_end - t_steady,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
