"""The agent on aarch64, as a car's image holds it (issue 17): slow and opt-in, ``make embedded-arm64``.

An arm64 Debian bookworm root (debootstrap, cached in ``build/embedded-arm64``) with the
agent's lean install of this checkout (``squeeze-ota[agent]``: PyPI's manylinux aarch64
wheels) runs under qemu-user. The real agent, aarch64 Python, talks mutual TLS to a real
registry on this (x86) host, installs SqueezeNet 1.0.0, takes a delta update to 1.0.1 and
answers ``ota agent infer`` on the shipped photo, run in the root too. What it measured goes
to ``build/embedded-arm64/figures.json`` and is printed (docs/agent.md, "What an embedded
image needs").
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from modelpack import zoo
from modelpack.imaging import IMAGES_DIR
from testkit.helpers import publish_released
from testkit.variants import successor
from tests.embedded import arm64
from tests.vehicle_agent.constrained import agent_cmd, installed_encoding, vm_hwm, wait_confirmed

ENABLED = os.environ.get("OTA_EMBEDDED_ARM64", "") not in ("", "0")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not ENABLED,
        reason="slow, opt-in: run it with `make embedded-arm64` (sets OTA_EMBEDDED_ARM64=1; "
        "needs root, debootstrap and qemu-user-static, which the target installs)",
    ),
]

NAME = "squeezenet1.0"
CAR = "car-arm64"
ESPRESSO = 967
MB = 1 << 20
SLOW = 900  # seconds: ONNX Runtime and Python under qemu-user, on a shared host


@pytest.mark.timeout(3600)
def test_the_aarch64_agent_installs_a_delta_update_over_mutual_tls_and_serves(
    registry_server,
) -> None:
    if reason := arm64.why_not():
        pytest.fail(f"OTA_EMBEDDED_ARM64 is set but this host cannot run it: {reason}")
    t_check = time.monotonic()
    made = arm64.ensure_root()
    facts = arm64.facts()
    assert facts["machine"] == "aarch64", facts
    wheel = arm64.build_wheel()
    arm64.download_wheels(wheel, facts["python"], facts["glibc"])
    t = time.monotonic()
    arm64.ensure_venv(wheel)
    venv_s = time.monotonic() - t

    reg = registry_server.registry
    base = zoo.build(NAME)
    publish_released(reg, NAME, "1.0.0", base)
    work = Path(tempfile.mkdtemp(prefix="ota-", dir=arm64.ROOT / "tmp"))
    inside = f"/tmp/{work.name}"  # the same directory, as the agent in the root sees it
    sock = work / "agent.sock"

    def into_root(path: Path) -> str:
        shutil.copy2(path, work / path.name)
        return f"{inside}/{path.name}"

    photo = into_root(IMAGES_DIR / "coffee.png")
    ota = [f"{arm64.VENV}/bin/ota"]
    cmd = agent_cmd(
        registry_server,
        CAR,
        f"{inside}/state",
        f"{inside}/agent.sock",
        health_window=2.0,
        exe=ota,
        where=into_root,
        interval=1.0,
    )
    log = work / "agent.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(arm64.chrooted(cmd), stdout=err, stderr=subprocess.STDOUT)
    try:
        t = time.monotonic()
        wait_confirmed(sock, {NAME: "1.0.0"}, proc, timeout=SLOW)
        first_s = time.monotonic() - t
        # Pinned to the served version while the next is published (its delta precomputed),
        # then assigned: as in tests/vehicle_agent/test_constrained.py.
        reg.director.assign(CAR, NAME, "1.0.0")
        publish_released(reg, NAME, "1.0.1", successor(base, 1))
        t = time.monotonic()
        reg.director.assign(CAR, NAME, "1.0.1")
        wait_confirmed(sock, {NAME: "1.0.1"}, proc, timeout=SLOW)
        update_s = time.monotonic() - t
        t = time.monotonic()
        infer = arm64.run_in(
            ota
            + ["agent", "infer", "--socket", f"{inside}/agent.sock", "--model", NAME, "--top", "1"]
            + ["--timeout", str(SLOW), photo],
            timeout=SLOW,
        ).stdout
        infer_s = time.monotonic() - t
        hwm = vm_hwm(proc.pid)
        proc.send_signal(signal.SIGTERM)
        proc.wait(SLOW)
    except BaseException:
        print(log.read_text()[-4000:])
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    state_bytes = arm64.disk_usage(work / "state")
    text = log.read_text()
    shutil.rmtree(work, ignore_errors=True)

    assert proc.returncode == 0, text[-3000:]
    encoding = installed_encoding(reg, NAME, "1.0.1", CAR)
    assert encoding not in ("full", "none"), encoding
    assert f"{NAME} 1.0.1" in infer, infer
    row = re.search(r"^\W*(\d+)\W+(\w[\w ]*?)\W+([01]\.\d+)", infer, re.M)
    assert row and int(row[1]) == ESPRESSO, infer
    ms = re.search(r"\(([\d.]+)\s+ms\)", infer)

    figures = {
        **facts,
        **made,
        **arm64.venv_figures(),
        "venv_install_s": round(venv_s, 1),
        "first_install_s": round(first_s, 1),
        "delta_update_s": round(update_s, 1),
        "update_encoding": encoding,
        "infer_wall_s": round(infer_s, 1),
        "inference_ms": float(ms[1]) if ms else None,
        "agent_vmhwm_bytes": hwm,
        "state_bytes": state_bytes,
        "check_s": round(time.monotonic() - t_check, 1),
        "load_average": os.getloadavg(),
        "measured": time.ctime(),
    }
    (arm64.BUILD / "figures.json").write_text(json.dumps(figures, indent=1))
    print(
        f"\naarch64 agent under qemu (Python {facts['python']}, glibc {facts['glibc']}): "
        f"1.0.0 in {first_s:.0f} s, {encoding} update to 1.0.1 in {update_s:.0f} s, "
        f"infer top-1 {row[1]} {row[2]!r} in {infer_s:.0f} s; VmHWM {hwm / MB:.0f} MB; "
        f"venv {figures['venv_bytes'] / MB:.0f} MB / {len(figures['venv_dists'])} dists; "
        f"state {state_bytes / MB:.1f} MB; check {figures['check_s']:.0f} s "
        f"(debootstrap {made.get('debootstrap_s', '?')} s when the root was made)"
    )
