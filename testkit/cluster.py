"""Start real ``ota registry serve`` replicas as processes on loopback.

Shared by the scale-out tests and ``bench/replicas_bench.py``: each replica is
its own process (so it can be killed with SIGKILL), on a free port, sharing
one PostgreSQL database, with a Prometheus endpoint on another free port.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

_SERVING = re.compile(r"registry serving on ([\d.]+):(\d+)")
_METRICS = re.compile(r"metrics on http://([\d.]+):(\d+)/metrics")


class ReplicaError(Exception):
    pass


@dataclass
class Replica:
    proc: subprocess.Popen
    name: str
    port: int = 0
    metrics_port: int = 0
    lines: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels``."""
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as r:
            text = r.read().decode()
        total = 0.0
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in (labels or {}).items()):
                    total += s.value
        return total

    def kill(self) -> None:
        """SIGKILL: no grace, no cleanup, like a machine that loses power."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log_tail(self, n: int = 20) -> str:
        return "\n".join(self.lines[-n:])


def _pump(replica: Replica, ready: threading.Event) -> None:
    assert replica.proc.stderr is not None
    for raw in replica.proc.stderr:
        line = raw.rstrip()
        replica.lines.append(line)
        if m := _METRICS.search(line):
            replica.metrics_port = int(m.group(2))
        if m := _SERVING.search(line):
            replica.port = int(m.group(2))
            ready.set()
    ready.set()  # the process ended


def start_replicas(
    n: int,
    db: str,
    keys_dir: Path,
    extra_args: Sequence[str] = (),
    timeout_s: float = 60.0,
    nice: int = 0,
) -> list[Replica]:
    """Start ``n`` replicas in parallel and wait until each serves; stop them all on failure."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started: list[tuple[Replica, threading.Event]] = []
    for i in range(n):
        cmd = [
            sys.executable,
            "-m",
            "ota",
            "registry",
            "serve",
            "--db",
            db,
            "--keys",
            str(keys_dir),
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            *extra_args,
        ]
        if nice:
            cmd = ["nice", "-n", str(nice), *cmd]
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        replica, ready = Replica(proc, f"replica-{i}"), threading.Event()
        threading.Thread(target=_pump, args=(replica, ready), daemon=True).start()
        started.append((replica, ready))
    deadline = time.monotonic() + timeout_s
    replicas = [r for r, _ in started]
    for replica, ready in started:
        if not ready.wait(max(0.0, deadline - time.monotonic())) or not replica.port:
            stop_all(replicas)
            raise ReplicaError(f"{replica.name} did not start serving:\n{replica.log_tail()}")
    return replicas


def stop_all(replicas: Sequence[Replica]) -> None:
    for r in replicas:
        r.stop()
