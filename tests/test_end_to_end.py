"""The whole path over real gRPC on loopback: publish → verify → install → run."""

from __future__ import annotations

import dataclasses

from modelpack.imaging import IMAGES_DIR
from modelpack.runtime import read_model_info
from testkit.helpers import publish_released
from testkit.helpers import with_provenance as _with_provenance


def test_publish_install_classify(registry_server, make_agent, squeezenet_bytes) -> None:
    publish_released(registry_server.registry, "squeezenet1.0", "1.0.0", squeezenet_bytes)
    agent = make_agent()

    [outcome] = agent.update_once()

    assert outcome.status == "installed", outcome.reason
    assert (outcome.name, outcome.version) == ("squeezenet1.0", "1.0.0")
    # First install: the registry offers the lossless Deep Compression encoding.
    assert outcome.encoding == "deepcompression"
    assert outcome.bytes_downloaded < 550_000 < len(squeezenet_bytes)
    cat = agent.classify("squeezenet1.0", IMAGES_DIR / "chelsea.png", 3)
    cup = agent.classify("squeezenet1.0", IMAGES_DIR / "coffee.png", 1)
    assert cat[0].class_id == 285 and cat[0].label == "Egyptian cat"
    assert {p.class_id for p in cat} <= {281, 282, 285}
    assert cup[0].label == "espresso" and cup[0].prob > 0.9
    # The registry heard each step, and a second check-in offers nothing.
    reports = registry_server.registry.store.list_reports("car-1")
    assert [(r.status, r.version, r.active_version) for r in reports] == [
        ("downloading", "1.0.0", ""),
        ("installed", "1.0.0", "1.0.0"),
        ("confirmed", "1.0.0", "1.0.0"),
    ]
    assert agent.update_once() == []


def test_update_switches_slots_and_survives_restart(
    registry_server, make_agent, squeezenet_bytes
) -> None:
    reg = registry_server.registry
    publish_released(reg, "squeezenet1.0", "1.0.0", squeezenet_bytes)
    agent = make_agent(state="state")
    agent.update_once()
    successor = _with_provenance(squeezenet_bytes, "successor")
    publish_released(reg, "squeezenet1.0", "1.0.1", successor)

    [outcome] = agent.update_once()

    assert outcome.status == "installed", outcome.reason
    assert outcome.from_version == "1.0.0"
    slots = agent.slots.load()["squeezenet1.0"]
    assert (
        slots.active == "b"
        and slots.slots["a"].version == "1.0.0"
        and slots.slots["b"].version == "1.0.1"
    )
    agent.close()
    restarted = make_agent(state="state")
    assert restarted.models["squeezenet1.0"].version == "1.0.1"
    assert restarted.update_once() == []


def test_tampered_blob_is_refused_and_old_model_kept(
    registry_server, make_agent, squeezenet_bytes
) -> None:
    reg = registry_server.registry
    publish_released(reg, "squeezenet1.0", "1.0.0", squeezenet_bytes)
    agent = make_agent()
    agent.update_once()
    rec = publish_released(reg, "squeezenet1.0", "1.0.1", _with_provenance(squeezenet_bytes, "x"))
    from server.encodings import stored_encodings

    stored = [
        reg.blobs.path(s.blob_sha256) for s in stored_encodings(reg.store, "squeezenet1.0", "1.0.1")
    ]
    assert stored, "the registry precomputed encodings of 1.0.1"
    for blob in [reg.blobs.path(rec.sha256), *stored]:
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0x01  # one flipped bit in the registry's store
        blob.write_bytes(bytes(data))

    [outcome] = agent.update_once()

    assert outcome.status == "attack_detected"
    assert "signed hash" in outcome.reason
    assert agent.models["squeezenet1.0"].version == "1.0.0"
    assert agent.classify("squeezenet1.0", IMAGES_DIR / "coffee.png", 1)[0].label == "espresso"
    assert not list((agent.state_dir / "downloads").glob("*.part")), (
        "a tampered prefix must not be kept"
    )
    statuses = [(r.version, r.status) for r in reg.store.list_reports("car-1")]
    assert statuses[-1] == ("1.0.1", "attack_detected")


def test_failed_self_test_keeps_previous_model(
    registry_server, make_agent, squeezenet_bytes
) -> None:
    reg = registry_server.registry
    publish_released(reg, "squeezenet1.0", "1.0.0", squeezenet_bytes)
    agent = make_agent()
    agent.update_once()
    info = read_model_info(squeezenet_bytes)
    assert info is not None and info.selftest is not None
    wrong = dataclasses.replace(
        info.selftest, expected_top1=(info.selftest.expected_top1 + 1) % 1000
    )
    bad_info = dataclasses.replace(info, selftest=wrong)
    publish_released(
        reg,
        "squeezenet1.0",
        "1.0.1",
        _with_provenance(squeezenet_bytes, "bad"),
        metadata_json=bad_info.to_json(),
    )

    [outcome] = agent.update_once()

    assert outcome.status == "failed" and "self-test" in outcome.reason
    assert agent.slots.load()["squeezenet1.0"].active == "a"
    assert agent.models["squeezenet1.0"].version == "1.0.0"


def test_hardware_id_restricts_offers(registry_server, make_agent, squeezenet_bytes) -> None:
    publish_released(
        registry_server.registry, "squeezenet1.0", "1.0.0", squeezenet_bytes, hardware_ids=["ecu-b"]
    )
    assert make_agent("car-a", hardware_id="ecu-a").update_once() == []
    [outcome] = make_agent("car-b", hardware_id="ecu-b").update_once()
    assert outcome.status == "installed"
