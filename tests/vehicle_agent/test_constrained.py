"""Acceptance: the real agent under one CPU and its memory budget, on a read-only root.

``ota agent run`` runs in a cgroup (v1 memory + cpu quota + cpuset: one CPU) with
``/`` read-only except its state directory (so no writable /tmp either). Clients on
its socket call inference without pause while it installs a delta update, swaps and
confirms; no request may fail, the agent must not be killed, and its peak memory
stays under the limit. SqueezeDet is served next to SqueezeNet under SqueezeDet's
budget (512 MB), the case that once got the agent killed for memory.

Short by default (one update); ``OTA_ACCEPTANCE_FULL=1`` runs three updates per model.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from modelpack import zoo
from modelpack.imaging import IMAGES_DIR
from otawire.v1 import inference_pb2
from testkit.helpers import publish_released
from testkit.variants import successor
from tests.vehicle_agent.constrained import (
    Cgroup,
    Clients,
    agent_cmd,
    confined,
    installed_encoding,
    vm_hwm,
    wait_confirmed,
    why_not,
)

pytestmark = [
    pytest.mark.skipif(bool(why_not()), reason=why_not() or "ok"),
    pytest.mark.alone,  # one CPU of its own, against budgets
]

MB = 1 << 20
FULL = os.environ.get("OTA_ACCEPTANCE_FULL", "") not in ("", "0")
UPDATES = 3 if FULL else 1
REQUESTS = {
    "squeezenet1.0": (
        "Classify",
        inference_pb2.ClassifyRequest(
            model="squeezenet1.0",
            frame=inference_pb2.Frame(image=(IMAGES_DIR / "coffee.png").read_bytes()),
            top_k=1,
        ),
    ),
    "squeezedet": (
        "Detect",
        inference_pb2.DetectRequest(
            model="squeezedet",
            frame=inference_pb2.Frame(image=(IMAGES_DIR / "kitti_road.png").read_bytes()),
        ),
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("models", "update", "limit_mb"),
    [
        (("squeezenet1.0",), "squeezenet1.0", 512),
        (("squeezedet", "squeezenet1.0"), "squeezedet", 512),
    ],
    ids=["squeezenet-512MB", "squeezedet+squeezenet-512MB"],
)
def test_agent_updates_and_serves_under_one_cpu_and_its_memory_budget_on_a_read_only_root(
    registry_server, models, update, limit_mb
) -> None:
    reg = registry_server.registry
    base = {n: zoo.build(n) for n in models}
    for n in models:
        publish_released(reg, n, "1.0.0", base[n])
    work = Path(
        tempfile.mkdtemp(prefix="ota-acc-", dir="/tmp")
    )  # short: the socket path is limited
    sock, state, log = work / "agent.sock", work / "state", work / "agent.log"
    limit = limit_mb * MB
    with Cgroup(memory=limit, cpus=1) as cg, open(log, "w") as err:
        proc = subprocess.Popen(
            confined(
                agent_cmd(registry_server, "car-acc", state, sock, health_window=2.0), cg, work
            ),
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        clients: list[Clients] = []
        try:
            wait_confirmed(sock, {n: "1.0.0" for n in models}, proc)
            clients = [Clients(sock, *REQUESTS[n], n=2 if len(models) == 1 else 1) for n in models]
            i = deltas = 0
            while deltas < UPDATES and i < UPDATES + 2:
                i += 1
                # Pinned to the served version while the new one is published, then assigned:
                # the agent sees the new version only once its delta is precomputed. (The loop
                # allows two more versions should an update still arrive as the full model.)
                reg.director.assign("car-acc", update, f"1.0.{i - 1}")
                publish_released(reg, update, f"1.0.{i}", successor(base[update], i))
                reg.director.assign("car-acc", update, f"1.0.{i}")
                wait_confirmed(sock, {update: f"1.0.{i}"}, proc)
                deltas += installed_encoding(reg, update, f"1.0.{i}") != "full"
            time.sleep(1.0)  # serve the new version a little longer
            for c in clients:
                c.stop()
            assert proc.poll() is None, (
                f"agent exited with {proc.returncode}: {log.read_text()[-2000:]}"
            )
            hwm = vm_hwm(proc.pid)
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        finally:
            for c in clients:
                c.stop()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        peak, ooms = cg.peak(), cg.oom_kills()
    text = log.read_text()
    shutil.rmtree(work, ignore_errors=True)

    assert proc.returncode == 0, text[-3000:]
    for c, n in zip(clients, models, strict=True):
        assert c.failures == [], (n, c.failures[:3])
        expected = {f"1.0.{v}" for v in range(i + 1)} if n == update else {"1.0.0"}
        assert set(c.versions) == expected, (n, sorted(set(c.versions)))
    assert ooms == 0
    assert 0 < hwm < limit and peak <= limit, (hwm / MB, peak / MB)
    assert deltas == UPDATES, (
        [(v, installed_encoding(reg, update, f"1.0.{v}")) for v in range(1, i + 1)],
        text[-3000:],
    )
    print(
        f"\n{'+'.join(models)} under 1 CPU / {limit_mb} MB, read-only root: {deltas} delta update(s) of {update} "
        f"({i} in all), "
        f"{sum(len(c.versions) for c in clients)} requests, 0 failed; agent VmHWM {hwm / MB:.0f} MB, "
        f"cgroup peak {peak / MB:.0f} MB (with page cache)"
    )
