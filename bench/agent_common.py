"""Shared pieces of the agent benchmarks: a registry and an agent as real processes,
closed-loop clients on the agent's Unix socket, and /proc sampling of the agent."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from otawire.v1 import inference_pb2
from otawire.wire import UPDATE_STATE, to_str
from vehicle_agent.serving import connect

OTA = [sys.executable, "-m", "ota.cli"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


_PKI: list[Path] = [Path()]  # the fleet PKI of the registry start_registry made, for publish()


def _creds(work: Path, role: str, name: str) -> list[str]:
    """--ca/--cert/--key of ``role``/``name`` in the bench's fleet PKI (issued on first use)."""
    from otawire import tls

    f = tls.ensure(work / "pki", role, name)
    return ["--ca", str(f.ca), "--cert", str(f.cert), "--key", str(f.key)]


def start_registry(work: Path) -> tuple[subprocess.Popen, str]:
    import shutil

    from otawire import tls

    subprocess.run(
        OTA + ["keys", "init", "--keys", str(work / "keys"), "--force"],
        check=True,
        capture_output=True,
        cwd=REPO,
    )
    shutil.rmtree(work / "pki", ignore_errors=True)
    tls.make_ca(work / "pki")
    _PKI[0] = work / "pki"
    proc = subprocess.Popen(
        OTA
        + [
            "registry",
            "serve",
            "--data",
            str(work / "registry"),
            "--keys",
            str(work / "keys"),
            "--listen",
            "127.0.0.1:0",
            *_creds(work, "server", "registry"),
        ],
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    stderr = proc.stderr
    assert stderr is not None  # stderr=PIPE
    for line in stderr:
        m = re.search(r"registry serving on (\S+)", line)
        if m:
            threading.Thread(
                target=lambda: [None for _ in stderr], daemon=True
            ).start()  # keep draining
            return proc, m.group(1)
    raise RuntimeError("registry did not start")


def start_agent(
    work: Path,
    registry: str,
    sock: Path,
    interval: float,
    health_window: float,
    ota: list[str] | None = None,
    cwd: Path = REPO,
) -> subprocess.Popen:
    """``ota agent run`` (``ota``: another installation's command, e.g. a lean venv's bin/ota)."""
    return subprocess.Popen(
        (ota or OTA)
        + [
            "agent",
            "run",
            "--registry",
            registry,
            "--state",
            str(work / "agent"),
            "--trusted-root",
            str(work / "keys" / "root.json"),
            "--director-root",
            str(work / "keys" / "director-root.json"),
            *_creds(work, "vehicle", "bench-car"),
            "--vehicle-id",
            "bench-car",
            "--interval",
            str(interval),
            "--health-window",
            str(health_window),
            "--serve",
            str(sock),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(work / "agent.log", "w"),
        cwd=cwd,
    )


def publish(registry: str, data: bytes, name: str, version: str) -> None:
    from otawire import tls
    from server.client import PublisherClient

    with PublisherClient(registry, tls_files=tls.ensure(_PKI[0], "publisher", "bench")) as pub:
        pub.upload(data, name, version)
        pub.release(name, version, "fleet")  # publishing alone reaches no vehicle (issue 12)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class ProcSample:
    """CPU seconds and memory of one process, read from /proc."""

    cpu_s: float
    rss_mb: float
    hwm_mb: float
    t: float = field(default_factory=time.monotonic)


def sample(pid: int) -> ProcSample:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    return ProcSample(cpu, rss, hwm)


class Sampler:
    """Samples a process every 100 ms; reports CPU % of one core and peak RSS over a phase."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[ProcSample] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.samples.append(sample(self.pid))
            except (OSError, AttributeError):
                return

    def mark(self) -> int:
        self.samples.append(sample(self.pid))
        return len(self.samples) - 1

    def phase(self, start: int, end: int) -> dict[str, float]:
        s = self.samples[start : end + 1]
        dt = s[-1].t - s[0].t
        return {
            "cpu_pct": 100 * (s[-1].cpu_s - s[0].cpu_s) / dt if dt else 0.0,
            "rss_peak_mb": max(x.rss_mb for x in s),
            "rss_mean_mb": float(np.mean([x.rss_mb for x in s])),
        }

    def close(self) -> None:
        self._stop.set()


@dataclass
class Calls:
    start: list[float] = field(default_factory=list)
    ms: list[float] = field(default_factory=list)
    version: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


class Hammer:
    """Closed-loop clients on the agent's socket, each recording every call."""

    def __init__(
        self,
        sock: Path,
        request: inference_pb2.ClassifyRequest | inference_pb2.DetectRequest,
        clients: int,
    ) -> None:
        self.calls = [Calls() for _ in range(clients)]
        self._stop = threading.Event()
        self._method = "Detect" if isinstance(request, inference_pb2.DetectRequest) else "Classify"
        self._threads = [
            threading.Thread(target=self._run, args=(sock, request, c), daemon=True)
            for c in self.calls
        ]
        for t in self._threads:
            t.start()

    def _run(self, sock: Path, request, calls: Calls) -> None:
        channel, stub = connect(sock)
        call = getattr(stub, self._method)
        while not self._stop.is_set():
            t = time.perf_counter()
            try:
                r = call(request, timeout=10)
            except grpc.RpcError as e:
                calls.failures.append(f"{e.code().name}: {e.details()}")
                continue
            calls.start.append(t)
            calls.ms.append((time.perf_counter() - t) * 1e3)
            calls.version.append(r.served.version)
        channel.close()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def between(self, t0: float, t1: float) -> tuple[np.ndarray, list[str]]:
        ms = [m for c in self.calls for s, m in zip(c.start, c.ms, strict=False) if t0 <= s < t1]
        return np.asarray(ms), [f for c in self.calls for f in c.failures]


def wait_served(sock: Path, name: str, version: str, state: str = "", timeout: float = 120) -> None:
    channel, stub = connect(sock)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                for m in stub.ListServed(inference_pb2.ListServedRequest(), timeout=5).models:
                    if (
                        m.served.model == name
                        and m.served.version == version
                        and (not state or to_str(UPDATE_STATE, m.update_state) == state)
                    ):
                        return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    finally:
        channel.close()
    raise TimeoutError(f"{name} {version} {state} not served within {timeout} s")


def pct(ms: np.ndarray, q: float) -> float:
    return float(np.percentile(ms, q)) if ms.size else float("nan")
