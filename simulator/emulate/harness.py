"""Run real agents against a real registry over shaped links, and the same
scenario through the simulator; compare completion times and bytes per vehicle.

What is real here: the registry (gRPC on loopback, SQLite, TUF signing), the
agents (one process each, in its own network namespace, python-tuf, resumable
download, ONNX Runtime self-test), the SqueezeNet v1.0 package, the kernel's
token bucket shaping each vehicle's downlink. What is emulated: latency and
reachability windows (the relay), because ``netem`` is not in this kernel.
What is compared: the vehicle's last payload byte (the simulator's ``done``)
and the downlink bytes it received at the application level (interface bytes
minus one TCP/IP/Ethernet header per packet).

The simulator's protocol constants for this agent (seconds and round trips
before the payload flows and metadata bytes, for a first and for a resumed
session) and the shaper's drain at a cut are measured by four calibration
agents on links unlike the validated ones, run beside the fleet in the same run
(:mod:`simulator.emulate.calibration`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from simulator.emulate.calibration import calibrate, calibration_vehicles, fit_setup
from simulator.emulate.netns import Namespaces, VehicleLink, _run, check_available
from simulator.emulate.records import (
    HEADER_BYTES,
    PACKAGES,
    Calibration,
    EmulationResult,
    ServedPackage,
    VehicleRun,
)
from simulator.emulate.relay import Relay, VehicleRelay
from simulator.engine import first_contact, transfer
from simulator.fleet import Windows, build_fleet
from simulator.scenario import Scenario

if TYPE_CHECKING:
    from server.registry import Registry

log = logging.getLogger(__name__)

MODEL_NAME = "squeezenet1.0"


def vehicle_windows(
    scenario: Scenario, n: int, horizon_s: float
) -> list[list[tuple[float, float]]]:
    """Each vehicle's reachable windows up to the horizon, from the simulator's model."""
    fleet = build_fleet(scenario, n)
    w = Windows(fleet, np.arange(n))
    w.seek(0.0)
    out: list[list[tuple[float, float]]] = [[] for _ in range(n)]
    while True:
        live = np.flatnonzero(w.start < horizon_s)
        if live.size == 0:
            return out
        for i in live:
            out[i].append((float(w.start[i]), float(min(w.end[i], horizon_s))))
        w.advance(live)


def _rx_counters(ns: Namespaces, link: VehicleLink) -> tuple[int, int]:
    res = _run("ip", "-n", link.netns, "-j", "-s", "link", "show", link.ns_if)
    rx = json.loads(res.stdout)[0]["stats64"]["rx"]
    return int(rx["bytes"]), int(rx["packets"])


def run_agents(
    scenario: Scenario,
    n: int,
    model: bytes,
    horizon_s: float,
    work: Path,
    *,
    package: str = "served",
    windows: list[list[tuple[float, float]]] | None = None,
    retry_attempts: list[int] | None = None,
    echo: Callable[[str], None] = lambda s: None,
    extra: list[VehicleRun] | None = None,
    extra_retry: list[int] | None = None,
) -> tuple[list[VehicleRun], ServedPackage]:
    """Run ``n`` real agents over the scenario's links and windows; measure each.

    ``package``: "served" lets the registry offer what it offers a new vehicle
    (its smallest stand-alone encoding); "full" withdraws the encodings so that
    the agents fetch the full file (the registry before it had encodings).
    ``extra``: more vehicles with their own link and windows (the calibration's),
    run at the same time as the fleet, so that both see the same machine load;
    they come last in the returned list.
    """
    if package not in PACKAGES:
        raise ValueError(f"package must be one of {PACKAGES}, not {package!r}")
    from server.registry import Registry
    from server.service import create_server
    from server.signing.keys import Keystore

    check_available()
    fleet = build_fleet(scenario, n)
    windows = windows or vehicle_windows(scenario, n, horizon_s)
    _, contact = first_contact(fleet, np.arange(n), 0.0)
    links = [scenario.links[fleet.link_names[i]] for i in fleet.link_idx]
    runs = [
        VehicleRun(k, links[k].name, links[k].bandwidth_mbps, links[k].rtt_ms, windows[k])
        for k in range(n)
    ]
    extra = extra or []
    runs += [dataclasses.replace(e, index=n + i) for i, e in enumerate(extra)]
    contacts = [float(c) for c in contact] + [0.0] * len(extra)
    retries = (retry_attempts or [0] * n) + (extra_retry or [0] * len(extra))
    n = len(runs)
    work.mkdir(parents=True, exist_ok=True)
    Keystore.init(work / "keys")
    # Mutual TLS as in the field (security, issue 4): a fleet CA, the registry's
    # certificate, one per emulated vehicle; agents dial relays, so they check the
    # server certificate against the name "localhost".
    from otawire import tls

    pki = work / "pki"
    tls.make_ca(pki)
    server_tls = tls.issue(pki, "server", "registry")
    reg = Registry.open(work / "registry", work / "keys", ca_pem=(pki / tls.CA_CERT).read_bytes())
    reg.publish_bytes(MODEL_NAME, "1.0.0", model)
    reg.release(MODEL_NAME, "1.0.0")  # publishing alone reaches no vehicle (issue 12)
    served = _served_package(reg, model, package)
    server, port = create_server(
        reg, "127.0.0.1:0", max_workers=max(16, 4 * n), tls_files=server_tls
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        horizon_s = max([horizon_s] + [w[-1][1] for w in (r.windows for r in runs) if w])
        with Namespaces([r.rate_mbit for r in runs]) as ns:
            relays = [
                VehicleRelay(k, ns.links[k].host_ip, runs[k].rtt_ms / 2000, runs[k].windows)
                for k in range(n)
            ]
            with Relay(("127.0.0.1", port), relays) as relay:
                specs: list[dict[str, Any]] = []  # each vehicle's spec.json
                for k, link in enumerate(ns.links):
                    d = work / f"vehicle-{k}"
                    d.mkdir(parents=True)
                    ident = tls.issue(pki, "vehicle", f"emu-{k}")
                    spec: dict[str, Any] = {
                        "vehicle": f"emu-{k}",
                        "director_root": str(work / "keys" / "director-root.json"),
                        "tls": [str(ident.ca), str(ident.cert), str(ident.key)],
                        "ifname": link.ns_if,
                        "registry": f"{link.host_ip}:{relays[k].port}",
                        "state": str(d / "state"),
                        "root": str(work / "keys" / "root.json"),
                        "windows": runs[k].windows,
                        "first_contact": contacts[k],
                        "retry_attempts": retries[k],
                        "seed": fleet.seed,
                        "index": k,
                        "horizon_s": horizon_s,
                        "ready": str(d / "ready"),
                        "go": str(d / "go"),
                        "out": str(d / "result.json"),
                    }
                    (d / "spec.json").write_text(json.dumps(spec))
                    specs.append(spec)
                    procs.append(
                        subprocess.Popen(
                            [
                                *ns.exec_prefix(link),
                                sys.executable,
                                "-m",
                                "simulator.emulate.runner",
                                str(d / "spec.json"),
                            ],
                            stdout=subprocess.DEVNULL,
                            stderr=open(d / "stderr.txt", "wb"),  # noqa: SIM115 - closed with the process
                        )
                    )
                echo(f"started {n} agents in their namespaces; waiting for them to load")
                # Agents load in parallel on a few cores: allow them a few CPU-seconds each.
                _wait_for(
                    lambda: (
                        all(Path(s["ready"]).exists() for s in specs)
                        or any(p.poll() not in (None, 0) for p in procs)
                    ),
                    max(180.0, 3.0 * n),
                )
                dead = [k for k, p in enumerate(procs) if p.poll() not in (None, 0)]
                if dead:
                    err = (work / f"vehicle-{dead[0]}" / "stderr.txt").read_text()[-2000:]
                    raise RuntimeError(f"emulated agent {dead[0]} died before the start:\n{err}")
                base_rx = [_rx_counters(ns, link) for link in ns.links]
                t0 = time.time() + 0.5
                relay.start_clock(t0)
                for s in specs:
                    tmp = Path(s["go"] + ".tmp")
                    tmp.write_text(repr(t0))
                    os.replace(tmp, s["go"])
                echo(f"campaign started; horizon {horizon_s:.0f} s")
                for p in procs:
                    p.wait(timeout=max(10.0, t0 + horizon_s + 60 - time.time()))
                for k, link in enumerate(ns.links):
                    rx_b, rx_p = _rx_counters(ns, link)
                    b0, p0 = base_rx[k]
                    runs[k].app_bytes = (rx_b - b0) - HEADER_BYTES * (rx_p - p0)
                    res_path = Path(specs[k]["out"])
                    if res_path.exists():
                        res = json.loads(res_path.read_text())
                        runs[k].done_at = res["done_at"]
                        runs[k].installed_at = res["installed_at"]
                        runs[k].sessions = res["sessions"]
                    else:
                        log.warning(
                            "vehicle %d wrote no result: %s",
                            k,
                            (work / f"vehicle-{k}" / "stderr.txt").read_text()[-500:],
                        )
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        server.stop(None)
        reg.store.close()
    return runs, served


def _served_package(reg: Registry, model: bytes, package: str) -> ServedPackage:
    from server import encodings

    standalone = [
        e for e in encodings.stored_encodings(reg.store, MODEL_NAME, "1.0.0") if e.base_sha256 == ""
    ]
    if package == "full":
        # Withdraw the precomputed encodings (the store's record of them), so the full file is offered.
        reg.store.put_encodings(MODEL_NAME, "1.0.0", [])
        if encodings.stored_encodings(reg.store, MODEL_NAME, "1.0.0"):
            raise RuntimeError(
                "could not withdraw the registry's encodings for the full-file emulation"
            )
        return ServedPackage(len(model), "full", True)
    if standalone:
        best = min(standalone, key=lambda e: e.length)
        if best.length < len(model):
            # The agent fetches an encoding like any download, resumably (vehicle_agent/rebuild.py).
            return ServedPackage(best.length, best.codec, True)
    return ServedPackage(len(model), "full", True)


def _wait_for(cond: Callable[[], bool], timeout: float) -> None:
    end = time.time() + timeout
    while not cond():
        if time.time() > end:
            raise TimeoutError(f"emulated agents not ready after {timeout:.0f} s")
        time.sleep(0.05)


def predict(scenario: Scenario, runs: list[VehicleRun], size: int, horizon_s: float) -> None:
    """The simulator's completion time and bytes for each emulated vehicle."""
    fleet = build_fleet(scenario, len(runs))
    res = transfer(fleet, np.arange(len(runs)), 0.0, size, horizon_s)
    for k, r in enumerate(runs):
        r.sim_done = float(res.done[k])
        r.sim_bytes = float(res.nbytes[k])
        r.sim_sessions = int(res.sessions[k])


def calibrated(scenario: Scenario, cal: Calibration, served: ServedPackage) -> Scenario:
    """The scenario with the agent's measured constants, the shaper's drain and its resume behaviour."""
    from vehicle_agent.download import RetryPolicy

    links = {
        name: dataclasses.replace(lk, drain_s=cal.drain_s) for name, lk in scenario.links.items()
    }
    campaign = dataclasses.replace(scenario.campaign, resumable=served.resumable)
    policy = RetryPolicy()  # what the fleet's agents run with
    protocol = dataclasses.replace(
        cal.protocol(scenario.protocol),
        retry_attempts=policy.attempts,
        retry_base_s=policy.base_s,
        retry_factor=policy.factor,
        retry_cap_s=policy.cap_s,
    )
    return scenario.replace(links=links, protocol=protocol, campaign=campaign)


def emulate(
    scenario: Scenario,
    n: int,
    horizon_s: float,
    *,
    package: str = "served",
    work: Path | None = None,
    echo: Callable[[str], None] = lambda s: None,
    repeats: int = 1,
) -> EmulationResult:
    """Run ``n`` agents and the calibration's four beside them, predict each with the simulator.

    With ``repeats=2`` the fleet runs twice, so that the report can set the
    simulator's error against the spread of real agents between two runs.
    """
    from modelpack import zoo

    t = time.perf_counter()
    model = zoo.build(MODEL_NAME)
    extra, retry = calibration_vehicles(package, len(model))
    results = []
    with tempfile.TemporaryDirectory(prefix="ota-emulate-", dir=work) as d:
        for r in range(repeats):
            echo(f"run {r + 1}/{repeats}: {n} agents and {len(extra)} calibration agents")
            runs, served = run_agents(
                scenario,
                n,
                model,
                horizon_s,
                Path(d) / f"run{r}",
                package=package,
                echo=echo,
                extra=extra,
                extra_retry=retry,
            )
            results.append((runs[:n], runs[n:], served))
    runs, calib_runs, served = results[0]
    cal = calibrate(calib_runs, served)
    fitted = fit_setup(calib_runs + runs, served)
    if fitted is not None:  # the first session's set-up, fitted over the whole run (see fit_setup)
        cal = dataclasses.replace(cal, setup_s=fitted[0], setup_rtts=fitted[1])
    echo(
        f"calibrated: {cal.setup_s:.2f} s + {cal.setup_rtts:.1f} round trips / {cal.resume_setup_s:.2f} s + "
        f"{cal.resume_setup_rtts:.1f}, {cal.session_overhead_bytes:,} / {cal.resume_overhead_bytes:,} B per first / "
        f"resumed session; drain {cal.drain_s:.2f} s"
    )
    sc = calibrated(scenario, cal, served)
    predict(sc, runs, served.nbytes, horizon_s)
    rerun = results[1][0] if repeats > 1 else None
    return EmulationResult(sc, served, cal, runs, time.perf_counter() - t, rerun)


__all__ = [
    "HEADER_BYTES",
    "Calibration",
    "EmulationResult",
    "ServedPackage",
    "VehicleRun",
    "emulate",
    "run_agents",
    "vehicle_windows",
]
