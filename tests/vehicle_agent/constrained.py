"""Run the real agent as a car would: a cgroup of one CPU and a memory limit, and a
read-only root file system except its state directory.

PID 1 here is not systemd, so the cgroup (v1 memory, cpu, cpuset) is made by writing
its files directly; the read-only root is a private mount namespace (``unshare -m``)
in which ``/`` is bind-remounted read-only after the state directory was bound onto
itself (a mount of its own, which stays writable). ``why_not()`` says what this
machine lacks, for the skip.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from otawire.v1 import inference_pb2
from otawire.wire import UPDATE_STATE, to_str
from vehicle_agent.serving import connect

CGROUP = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "cpu", "cpuset")
REPO = Path(__file__).resolve().parents[2]


def why_not() -> str:
    """Empty when the agent can be confined here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "needs root (cgroup files and mount namespaces)"
    if shutil.which("unshare") is None:
        return "needs unshare(1) (util-linux)"
    for c in CONTROLLERS:
        if not (CGROUP / c / "cgroup.procs").exists():
            return f"needs a cgroup v1 {c} hierarchy at {CGROUP / c}"
    probe = subprocess.run(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -o remount,bind,ro / && ! touch /.ota-ro-probe 2>/dev/null",
        ],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"cannot remount / read-only in a mount namespace: {probe.stderr.strip() or probe.returncode}"
    return ""


@dataclass
class Cgroup:
    """One cgroup in each v1 controller: ``cpus`` CPUs (quota and cpuset) and ``memory`` bytes."""

    memory: int
    cpus: int = 1
    name: str = field(default_factory=lambda: f"ota-test-{uuid.uuid4().hex[:8]}")

    def dir(self, controller: str) -> Path:
        return CGROUP / controller / self.name

    def __enter__(self) -> Cgroup:
        for c in CONTROLLERS:
            self.dir(c).mkdir()
        mem = self.dir("memory")
        (mem / "memory.limit_in_bytes").write_text(str(self.memory))
        if (mem / "memory.memsw.limit_in_bytes").exists():  # no swap to hide behind
            (mem / "memory.memsw.limit_in_bytes").write_text(str(self.memory))
        period = int((self.dir("cpu") / "cpu.cfs_period_us").read_text())
        (self.dir("cpu") / "cpu.cfs_quota_us").write_text(str(period * self.cpus))
        cpus = (CGROUP / "cpuset" / "cpuset.effective_cpus").read_text().strip()
        first = int(cpus.split(",")[0].split("-")[0])
        (self.dir("cpuset") / "cpuset.cpus").write_text(f"{first}-{first + self.cpus - 1}")
        (self.dir("cpuset") / "cpuset.mems").write_text(
            (CGROUP / "cpuset" / "cpuset.mems").read_text().strip()
        )
        return self

    def join_cmd(self) -> str:
        return "; ".join(f"echo $$ > {self.dir(c) / 'cgroup.procs'}" for c in CONTROLLERS)

    def peak(self) -> int:
        return int((self.dir("memory") / "memory.max_usage_in_bytes").read_text())

    def oom_kills(self) -> int:
        for line in (self.dir("memory") / "memory.oom_control").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return int((self.dir("memory") / "memory.failcnt").read_text()) and -1

    def __exit__(self, *exc: object) -> None:
        for c in CONTROLLERS:
            d = self.dir(c)
            for _ in range(50):  # the last task may still be exiting
                try:
                    d.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


def confined(cmd: list[str], cgroup: Cgroup, writable: Path) -> list[str]:
    """``cmd`` in ``cgroup`` with everything but ``writable`` read-only (and so no writable /tmp)."""
    inner = (
        f"mount --bind {shlex.quote(str(writable))} {shlex.quote(str(writable))} && "
        f"mount -o remount,bind,ro / && exec {shlex.join(cmd)}"
    )
    return [
        "sh",
        "-c",
        f"{cgroup.join_cmd()}; exec unshare -m --propagation private sh -c {shlex.quote(inner)}",
    ]


def agent_cmd(
    server,
    vehicle_id: str,
    state: Path | str,
    sock: Path | str,
    health_window: float,
    exe: Sequence[str] = (sys.executable, "-m", "ota.cli"),
    where: Callable[[Path], str] = str,
    interval: float = 0.5,
) -> list[str]:
    """``ota agent run`` for ``vehicle_id`` against ``server`` (mutual TLS, both trust roots).

    ``exe`` is the ``ota`` to run; ``where`` maps each file the agent reads (roots,
    certificate, key) to the path it sees it at (``tests/embedded`` copies them into a root).
    """
    ident = server.vehicle_tls(vehicle_id)
    return [
        *exe,
        "agent",
        "run",
        "--registry",
        server.address,
        "--state",
        str(state),
        "--trusted-root",
        where(server.keys_dir / "root.json"),
        "--director-root",
        where(server.keys_dir / "director-root.json"),
        "--ca",
        where(ident.ca),
        "--cert",
        where(ident.cert),
        "--key",
        where(ident.key),
        "--vehicle-id",
        vehicle_id,
        "--interval",
        str(interval),
        "--health-window",
        str(health_window),
        "--serve",
        str(sock),
    ]


def vm_hwm(pid: int) -> int:
    """Peak resident memory of ``pid`` (bytes), or 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Clients:
    """Closed-loop clients on the agent's socket; every call's served version or failure."""

    def __init__(self, sock: Path, method: str, request, n: int = 2) -> None:
        self.versions: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(sock, method, request), daemon=True)
            for _ in range(n)
        ]
        for t in self._threads:
            t.start()

    def _run(self, sock: Path, method: str, request) -> None:
        channel, stub = connect(sock)
        call = getattr(stub, method)
        while not self._stop.is_set():
            try:
                v = call(request, timeout=30).served.version
                with self._lock:
                    self.versions.append(v)
            except grpc.RpcError as e:
                with self._lock:
                    self.failures.append(f"{e.code().name}: {e.details()}")
        channel.close()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)


def served(sock: Path) -> dict[str, tuple[str, str]]:
    """What the agent on ``sock`` serves: model → (version, journal state); {} while it is not up."""
    channel, stub = connect(sock)
    try:
        return {
            m.served.model: (m.served.version, to_str(UPDATE_STATE, m.update_state))
            for m in stub.ListServed(inference_pb2.ListServedRequest(), timeout=10).models
        }
    except grpc.RpcError:
        return {}
    finally:
        channel.close()


def wait_confirmed(
    sock: Path, want: dict[str, str], proc: subprocess.Popen, timeout: float = 300
) -> None:
    """Until every model in ``want`` is served at its version, confirmed; the agent must live."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"agent exited with {proc.returncode}"
        now = served(sock)
        if all(now.get(n) == (v, "confirmed") for n, v in want.items()):
            return
        time.sleep(0.2)
    raise AssertionError(f"not served within {timeout} s: {want}; serving {served(sock)}")


def installed_encoding(reg, name: str, version: str, vehicle_id: str = "car-acc") -> str:
    """The encoding the vehicle reported installing ``name`` ``version`` with ("none": not yet)."""
    return next(
        (
            r.encoding
            for r in reg.store.list_reports(vehicle_id)
            if (r.name, r.version, r.status) == (name, version, "installed")
        ),
        "none",
    )
