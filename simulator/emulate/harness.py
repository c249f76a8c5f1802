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

The simulator's protocol constants for this agent (round trips before the
payload flows and metadata bytes, for a first and for a resumed session) and
the shaper's drain at a cut are calibrated first on two agents over a link
unlike the validated ones (see :func:`calibrate`).

Long file: one emulation run, set-up to comparison, reads best in one place.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simulator.emulate.netns import Namespaces, VehicleLink, _run, check_available
from simulator.emulate.relay import Relay, VehicleRelay
from simulator.engine import first_contact, transfer
from simulator.fleet import Windows, build_fleet
from simulator.scenario import Protocol, Scenario, scenario_from_dict

log = logging.getLogger(__name__)

HEADER_BYTES = 66  # Ethernet 14 + IPv4 20 + TCP 20 + timestamps option 12
MODEL_NAME = "squeezenet1.0"


@dataclass
class VehicleRun:
    """One real agent's run and the simulator's prediction for the same vehicle."""

    index: int
    link: str
    rate_mbit: float
    rtt_ms: float
    windows: list[tuple[float, float]]
    done_at: float | None = None  # last payload byte, s after the campaign start
    installed_at: float | None = None
    sessions: list[dict] = field(default_factory=list)  # type: ignore[type-arg]
    app_bytes: int = 0
    sim_done: float = math.nan
    sim_bytes: float = math.nan
    sim_sessions: int = 0

    @property
    def time_error(self) -> float:
        if self.done_at is None or not math.isfinite(self.sim_done):
            return math.nan
        return (self.sim_done - self.done_at) / self.done_at

    @property
    def bytes_error(self) -> float:
        return (self.sim_bytes - self.app_bytes) / self.app_bytes if self.app_bytes else math.nan


@dataclass(frozen=True)
class ServedPackage:
    """What the registry sends a vehicle that has no model yet."""

    nbytes: int
    encoding: str  # "full" or the codec of the registry's stand-alone encoding
    resumable: bool  # whether the agent resumes it across sessions


PACKAGES = ("served", "full")


@dataclass
class Calibration:
    """The agent's protocol constants, measured on two calibration vehicles."""

    setup_rtts: float  # first session: round trips (and agent CPU) before payload
    session_overhead_bytes: int  # first session: downlink besides the payload
    resume_setup_rtts: float  # the same for a resumed session
    resume_overhead_bytes: int
    drain_s: float  # payload that still arrives after the link drops (the shaper's queue)
    rtt_ms: float
    rate_mbit: float
    cut_at_s: float

    def protocol(self, base: Protocol) -> Protocol:
        return dataclasses.replace(
            base,
            setup_rtts=round(self.setup_rtts, 2),
            resume_setup_rtts=round(self.resume_setup_rtts, 2),
            session_overhead_bytes=self.session_overhead_bytes,
            resume_overhead_bytes=self.resume_overhead_bytes,
        )


@dataclass
class EmulationResult:
    scenario: Scenario
    package: ServedPackage
    calibration: Calibration
    vehicles: list[VehicleRun]
    wall_s: float

    def finished(self) -> list[VehicleRun]:
        return [v for v in self.vehicles if v.done_at is not None]

    def time_errors(self) -> np.ndarray:
        return np.array([v.time_error for v in self.finished()])

    def bytes_errors(self) -> np.ndarray:
        return np.array([v.bytes_error for v in self.finished()])

    def overall_time_error(self) -> float:
        """Error of the fleet's mean completion time."""
        fin = self.finished()
        if not fin:
            return math.nan
        emu = sum(v.done_at for v in fin)  # type: ignore[misc]
        return (sum(v.sim_done for v in fin) - emu) / emu

    def overall_bytes_error(self) -> float:
        fin = self.finished()
        emu = sum(v.app_bytes for v in fin)
        return (sum(v.sim_bytes for v in fin) - emu) / emu if emu else math.nan


def vehicle_windows(scenario: Scenario, n: int, horizon_s: float) -> list[list[tuple[float, float]]]:
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
) -> tuple[list[VehicleRun], ServedPackage]:
    """Run ``n`` real agents over the scenario's links and windows; measure each.

    ``package``: "served" lets the registry offer what it offers a new vehicle
    (its smallest stand-alone encoding); "full" withdraws the encodings so that
    the agents fetch the full file (the registry before it had encodings).
    """
    if package not in PACKAGES:
        raise ValueError(f"package must be one of {PACKAGES}, not {package!r}")
    from server import encodings
    from server.signing.keys import Keystore
    from server.registry import Registry
    from server.service import create_server

    check_available()
    fleet = build_fleet(scenario, n)
    windows = windows or vehicle_windows(scenario, n, horizon_s)
    _, contact = first_contact(fleet, np.arange(n), 0.0)
    links = [scenario.links[fleet.link_names[i]] for i in fleet.link_idx]
    runs = [
        VehicleRun(k, links[k].name, links[k].bandwidth_mbps, links[k].rtt_ms, windows[k]) for k in range(n)
    ]
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
    served = _served_package(reg, encodings, model, package)
    server, port = create_server(reg, "127.0.0.1:0", max_workers=max(16, 4 * n), tls_files=server_tls)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with Namespaces([r.rate_mbit for r in runs]) as ns:
            relays = [VehicleRelay(k, ns.links[k].host_ip, runs[k].rtt_ms / 2000, runs[k].windows) for k in range(n)]
            with Relay(("127.0.0.1", port), relays) as relay:
                specs = []
                for k, link in enumerate(ns.links):
                    d = work / f"vehicle-{k}"
                    d.mkdir(parents=True)
                    ident = tls.issue(pki, "vehicle", f"emu-{k}")
                    spec = {
                        "vehicle": f"emu-{k}",
                        "director_root": str(work / "keys" / "director-root.json"),
                        "tls": [str(ident.ca), str(ident.cert), str(ident.key)],
                        "ifname": link.ns_if,
                        "registry": f"{link.host_ip}:{relays[k].port}",
                        "state": str(d / "state"),
                        "root": str(work / "keys" / "root.json"),
                        "windows": runs[k].windows,
                        "first_contact": float(contact[k]),
                        "retry_attempts": retry_attempts[k] if retry_attempts else 0,
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
                            [*ns.exec_prefix(link), sys.executable, "-m", "simulator.emulate.runner", str(d / "spec.json")],
                            stdout=subprocess.DEVNULL,
                            stderr=open(d / "stderr.txt", "wb"),  # noqa: SIM115 - closed with the process
                        )
                    )
                echo(f"started {n} agents in their namespaces; waiting for them to load")
                _wait_for(lambda: all(Path(s["ready"]).exists() for s in specs) or any(p.poll() not in (None, 0) for p in procs), 180)
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
                        log.warning("vehicle %d wrote no result: %s", k, (work / f"vehicle-{k}" / "stderr.txt").read_text()[-500:])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        server.stop(None)
        reg.store.close()
    return runs, served


def _served_package(reg, encodings, model: bytes, package: str) -> ServedPackage:  # type: ignore[no-untyped-def]
    standalone = [e for e in encodings.stored_encodings(reg.store, MODEL_NAME, "1.0.0") if e.base_sha256 == ""]
    if package == "full":
        # Withdraw the precomputed encodings (the store's record of them), so the full file is offered.
        reg.store.put_encodings(MODEL_NAME, "1.0.0", [])
        if encodings.stored_encodings(reg.store, MODEL_NAME, "1.0.0"):
            raise RuntimeError("could not withdraw the registry's encodings for the full-file emulation")
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


CALIB_RATE_MBIT = 0.5  # slow enough that the served package (~0.5 MB) flows for ~9 s
CALIB_RTT_MS = 300.0
# Inside the first session's payload. Set-up over mutual TLS with the signed manifest and both
# repositories' metadata takes about 18-26 round trips (5-8 s at this RTT; measured), then the
# payload flows for ~9 s.
CALIB_CUT_S = 11.0
CALIBRATION = {
    "name": "calibration",
    "description": "Two agents on a 0.5 Mbit/s, 300 ms link: one always reachable, one cut once mid-download.",
    "seed": 1,
    "links": {
        "calib": {
            "base": "lte", "bandwidth_mbps": CALIB_RATE_MBIT, "rtt_ms": CALIB_RTT_MS,
            "loss": 0.0, "jitter": 0.0, "dropouts_per_hour": 0.0,
        }
    },
    "campaign": {"waves": [1.0], "poll_min": 0.0, "install_failure_rate": 0.0},
    "fleet": [{"share": 1.0, "link": "calib", "pattern": "always_on"}],
}


def _session_bytes(sess: dict) -> int:  # type: ignore[type-arg]
    b0, p0 = sess["rx_start"]
    b1, p1 = sess["rx_end"]
    return (b1 - b0) - HEADER_BYTES * (p1 - p0)


def _setup_s(sess: dict, rate: float, payload: int) -> float:  # type: ignore[type-arg]
    """Time before the payload flowed: the first whole stream chunk, less its transfer time."""
    if sess.get("first_byte") is None:
        raise RuntimeError(f"calibration session delivered no payload chunk: {sess}")
    return float(sess["first_byte"]) - float(sess["start"]) - min(262144, payload) / rate


def calibrate(model: bytes, work: Path, package: str = "served", echo: Callable[[str], None] = lambda s: None) -> Calibration:
    """The agent's protocol constants, from two real agents on the calibration link.

    Vehicle 0 is always reachable: its one session gives the first-session set-up
    and metadata bytes. Vehicle 1 loses its link ``CALIB_CUT_S`` into its first
    session and gets it back a second later; told to give up at the first failed
    retry, it opens a second session then, which gives the resumed-session constants, and the bytes of its first session beyond what
    had flowed by the cut give the shaper's drain.
    """
    sc = scenario_from_dict(json.loads(json.dumps(CALIBRATION)), "calibration")
    # Long enough for the cut vehicle's second session to fetch the whole file when it is served.
    horizon = 90.0 if package == "served" else 90.0 + 1.3 * len(model) * 8 / (CALIB_RATE_MBIT * 1e6)
    wins = [[(0.0, horizon)], [(0.0, CALIB_CUT_S), (CALIB_CUT_S + 1.0, horizon)]]
    # Vehicle 1 gives up at the first failed retry, so that the link's return opens a new session.
    runs, served = run_agents(sc, 2, model, horizon, work, package=package, windows=wins, retry_attempts=[0, 1], echo=echo)
    whole, cut = runs
    if whole.done_at is None or cut.done_at is None or len(cut.sessions) < 2:
        raise RuntimeError(f"calibration agents did not behave as planned: {whole.sessions} / {cut.sessions}")
    rate = sc.links["calib"].goodput_bytes_per_s()
    rtt = CALIB_RTT_MS / 1000
    first = whole.sessions[0]
    setup1 = _setup_s(first, rate, served.nbytes)
    overhead1 = _session_bytes(first) - served.nbytes
    last = cut.sessions[-1]
    payload2 = int(last.get("bytes_downloaded") or 0)
    setup2 = _setup_s(last, rate, payload2)
    overhead2 = _session_bytes(last) - payload2
    flowed = max(0.0, CALIB_CUT_S - setup1) * rate
    drained = _session_bytes(cut.sessions[0]) - overhead1 - flowed
    return Calibration(
        setup_rtts=max(0.0, setup1 / rtt),
        session_overhead_bytes=max(0, overhead1),
        resume_setup_rtts=max(0.0, setup2 / rtt),
        resume_overhead_bytes=max(0, overhead2),
        drain_s=max(0.0, drained / rate),
        rtt_ms=CALIB_RTT_MS,
        rate_mbit=CALIB_RATE_MBIT,
        cut_at_s=CALIB_CUT_S,
    )


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

    links = {name: dataclasses.replace(lk, drain_s=cal.drain_s) for name, lk in scenario.links.items()}
    campaign = dataclasses.replace(scenario.campaign, resumable=served.resumable)
    policy = RetryPolicy()  # what the fleet's agents run with
    protocol = dataclasses.replace(
        cal.protocol(scenario.protocol),
        retry_attempts=policy.attempts, retry_base_s=policy.base_s, retry_factor=policy.factor, retry_cap_s=policy.cap_s,
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
) -> EmulationResult:
    """Calibrate on one agent, run ``n`` agents, predict each with the simulator."""
    from modelpack import zoo

    t = time.perf_counter()
    model = zoo.build(MODEL_NAME)
    with tempfile.TemporaryDirectory(prefix="ota-emulate-", dir=work) as d:
        echo(f"calibrating on two agents ({CALIB_RATE_MBIT:g} Mbit/s, {CALIB_RTT_MS:g} ms; one cut once)")
        cal = calibrate(model, Path(d) / "calibration", package, echo)
        echo(
            f"calibrated: {cal.setup_rtts:.1f} / {cal.resume_setup_rtts:.1f} round trips and "
            f"{cal.session_overhead_bytes:,} / {cal.resume_overhead_bytes:,} B per first / resumed session; drain {cal.drain_s:.2f} s"
        )
        runs, served = run_agents(scenario, n, model, horizon_s, Path(d) / "fleet", package=package, echo=echo)
    sc = calibrated(scenario, cal, served)
    predict(sc, runs, served.nbytes, horizon_s)
    return EmulationResult(sc, served, cal, runs, time.perf_counter() - t)
