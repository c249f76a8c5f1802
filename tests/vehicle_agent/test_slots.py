"""A/B slots: the commit point is one atomic rename; damage is detected."""

from __future__ import annotations

import hashlib
from pathlib import Path

from testkit.helpers import publish_released
from vehicle_agent.slots import SlotRecord, SlotStore


def _record(data: bytes, version: str) -> SlotRecord:
    return SlotRecord(version=version, sha256=hashlib.sha256(data).hexdigest(), length=len(data))


def test_staging_does_not_change_the_active_slot(tmp_path: Path) -> None:
    store = SlotStore(tmp_path)
    (tmp_path / "v1").write_bytes(b"one")
    store.activate("m", store.stage("m", tmp_path / "v1", _record(b"one", "1")))
    (tmp_path / "v2").write_bytes(b"two")
    slot = store.stage("m", tmp_path / "v2", _record(b"two", "2"))  # power cut right after this
    reopened = SlotStore(tmp_path).load()["m"]
    assert slot == "b" and reopened.active == "a" and reopened.active_record().version == "1"
    assert store.verify("m", "a") and store.verify("m", "b")


def test_damaged_slot_fails_verification(tmp_path: Path) -> None:
    store = SlotStore(tmp_path)
    (tmp_path / "v1").write_bytes(b"one")
    store.activate("m", store.stage("m", tmp_path / "v1", _record(b"one", "1")))
    store.model_path("m", "a").write_bytes(b"onE")
    assert not store.verify("m", "a")
    assert not store.verify("m", "b")  # empty slot


def test_agent_falls_back_to_the_other_slot_when_active_is_damaged(
    registry_server, make_agent, squeezenet_bytes
) -> None:
    from testkit.helpers import with_provenance

    reg = registry_server.registry
    publish_released(reg, "squeezenet1.0", "1.0.0", squeezenet_bytes)
    agent = make_agent(state="s")
    agent.update_once()
    publish_released(reg, "squeezenet1.0", "1.0.1", with_provenance(squeezenet_bytes, "next"))
    agent.update_once()
    agent.close()
    active = agent.slots.model_path("squeezenet1.0", "b")
    active.write_bytes(active.read_bytes()[:-10])  # torn by a bad flash write

    restarted = make_agent(state="s")

    assert restarted.models["squeezenet1.0"].version == "1.0.0"
    assert restarted.slots.load()["squeezenet1.0"].active == "a"
