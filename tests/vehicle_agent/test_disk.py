"""A small model partition of the test's own (tmpfs): clean refusal when full, reclaim only
what is safe, the served model untouched."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.helpers import publish_released
from testkit.variants import successor
from vehicle_agent.agent import VehicleAgent

NAME = "squeezenet1.0"


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[callable]:
    mounts: list[Path] = []

    def mount(megabytes: int) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        path = tmp_path / f"fs{len(mounts)}"
        path.mkdir()
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounts.append(path)
        return path

    yield mount
    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], check=False)


def agent_on(fs: Path, registry_server) -> VehicleAgent:
    return VehicleAgent(registry_server.agent_config("car-disk", fs / "state"))


def target_reads(registry_server) -> int:
    return sum(d.kind == "target" for d in registry_server.registry.downloads)


def test_full_disk_refuses_before_downloading_and_keeps_serving(
    registry_server, squeezenet_bytes, small_fs
) -> None:
    fs = small_fs(8)  # room for one SqueezeNet (5 MB), not two
    reg = registry_server.registry
    publish_released(reg, NAME, "1.0.0", squeezenet_bytes)
    agent = agent_on(fs, registry_server)
    assert agent.update_once()[0].status == "installed"
    publish_released(reg, NAME, "1.0.1", successor(squeezenet_bytes, 1))
    reads = target_reads(registry_server)

    [o] = agent.update_once()

    assert o.status == "failed" and "not enough disk space" in o.reason
    assert "signed length" in o.reason and "B free" in o.reason  # the figures, for the operator
    assert target_reads(registry_server) == reads, (
        "not one byte is fetched for an update that cannot fit"
    )
    assert agent.models[NAME].version == "1.0.0" and agent.slots.verify(NAME, "a")
    assert reg.store.list_reports("car-disk")[-1].status == "failed"
    agent.close()


def test_tight_disk_reclaims_the_slot_before_last_but_never_the_previous(
    registry_server, squeezenet_bytes, small_fs
) -> None:
    fs = small_fs(13)  # two slots fit, a third download does not
    reg = registry_server.registry
    agent = agent_on(fs, registry_server)
    for n in range(3):
        publish_released(reg, NAME, f"1.0.{n}", successor(squeezenet_bytes, n))
        [o] = agent.update_once()
        assert o.status == "installed", o.reason

    slots = agent.slots.load()[NAME]
    # 1.0.0 (slot a) was reclaimed to download 1.0.2, which then went into slot a;
    # 1.0.1 (slot b), the way back while 1.0.2 was unconfirmed, was kept.
    assert (
        slots.active == "a"
        and slots.slots["a"].version == "1.0.2"
        and slots.slots["b"].version == "1.0.1"
    )
    assert agent.slots.verify(NAME, "a") and agent.slots.verify(NAME, "b")
    agent.close()
