"""Campaigns with real vehicle agents over loopback gRPC (TUF, A/B slots, ONNX Runtime self-test)."""

from __future__ import annotations

import dataclasses
import time

import pytest

from modelpack.runtime import read_model_info
from server import encodings
from server.campaigns.rollout import CampaignSpec, TargetSelection, Threshold, WaveSpec
from testkit.helpers import publish_released, with_provenance

MODEL = "squeezenet1.0"
FLEET = ("fleet=test",)


@pytest.fixture
def fleet(registry_server, make_agent, squeezenet_bytes):
    """Eight tagged vehicles running 1.0.0 (released before any campaign), plus the factory."""
    publish_released(registry_server.registry, MODEL, "1.0.0", squeezenet_bytes)
    agents = [make_agent(f"car-{i}", tags=FLEET) for i in range(8)]
    for a in agents:
        [o] = a.update_once()
        assert o.status == "installed", o.reason
    return agents


def versions(agents) -> dict[str, str]:
    return {a.config.vehicle_id: a.models[MODEL].version for a in agents}


def round_(agents) -> dict[str, list[str]]:
    """Every vehicle checks in once; what each installed or failed."""
    return {
        a.config.vehicle_id: [f"{o.version}:{o.status}" for o in a.update_once()] for a in agents
    }


def wave_of(manager, cid: str) -> dict[str, int]:
    return manager.view(cid).wave_of


def test_campaign_advances_wave_by_wave(
    registry_server, fleet, make_agent, clock, squeezenet_bytes
) -> None:
    reg, m = registry_server.registry, registry_server.manager
    outsider = make_agent("car-untagged")
    assert outsider.update_once()[0].status == "installed"  # 1.0.0, released
    reg.publish_bytes(MODEL, "1.0.1", with_provenance(squeezenet_bytes, "1.0.1"))
    spec = CampaignSpec(
        "wave test",
        MODEL,
        "1.0.1",
        TargetSelection(tags=FLEET),
        waves=(WaveSpec(10, 1.0, 60), WaveSpec(50, 1.0, 60), WaveSpec(100, 1.0, 60)),
    )
    cid = m.create(spec).campaign_id
    waves = wave_of(m, cid)
    assert sorted(waves.values()) == [0, 1, 1, 1, 2, 2, 2, 2] and "car-untagged" not in waves

    def on_new() -> set[str]:
        return {v for v, ver in versions(fleet + [outsider]).items() if ver == "1.0.1"}

    round_(fleet + [outsider])
    assert on_new() == {v for v, w in waves.items() if w == 0}, "only the canary may get 1.0.1"
    clock.advance(59)
    round_(fleet + [outsider])
    assert len(on_new()) == 1, "the canary wave soaks for 60 s before the next wave opens"
    clock.advance(1)
    round_(fleet + [outsider])
    assert on_new() == {v for v, w in waves.items() if w <= 1}
    status = m.view(cid)
    assert (status.state, status.current_wave) == ("running", 1)
    assert [w.successes(require_confirmed=False) for w in status.waves] == [1, 3, 0]
    clock.advance(60)
    round_(fleet + [outsider])
    assert on_new() == set(waves)
    assert m.view(cid).state == "running", "the last wave soaks too"
    clock.advance(60)
    view = m.view(cid)
    assert view.state == "completed" and [w.state for w in view.waves] == ["done"] * 3
    # Completed means released: the vehicle outside the selection now gets it too.
    assert round_([outsider]) == {"car-untagged": ["1.0.1:installed"]}
    kinds = [e.kind for e in m.events(cid)]
    assert kinds == ["created", "wave_opened", "wave_opened", "wave_opened", "completed"]


def test_faulty_model_trips_canary_aborts_and_leaves_fleet_untouched(
    registry_server, fleet, clock, squeezenet_bytes
) -> None:
    reg, m = registry_server.registry, registry_server.manager
    info = read_model_info(squeezenet_bytes)
    wrong = dataclasses.replace(
        info.selftest, expected_top1=(info.selftest.expected_top1 + 1) % 1000
    )
    bad = reg.publish_bytes(
        MODEL,
        "1.0.1",
        with_provenance(squeezenet_bytes, "bad"),
        metadata_json=dataclasses.replace(info, selftest=wrong).to_json(),
    )
    cid = m.create(
        CampaignSpec(
            "faulty",
            MODEL,
            "1.0.1",
            TargetSelection(tags=FLEET),
            waves=(WaveSpec(10), WaveSpec(50), WaveSpec(100)),
            threshold=Threshold(trip_failure_share=0.05, action="abort"),
        )
    ).campaign_id
    [canary] = [v for v, w in wave_of(m, cid).items() if w == 0]

    results = round_(fleet)

    assert results[canary] == ["1.0.1:failed"]
    assert all(r == [] for v, r in results.items() if v != canary), results
    view = m.view(cid)
    assert view.state == "aborted" and "wave 0: 1 of 1 vehicles failed" in view.reason
    [(status, reason, vids)] = view.failure_groups()
    assert status == "failed" and reason.startswith("self-test failed") and vids == [canary]
    for _ in range(3):  # long after, nobody else is ever offered the faulty version
        clock.advance(3600)
        assert all(r == [] for r in round_(fleet).values())
    assert set(versions(fleet).values()) == {"1.0.0"}
    # Only the canary fetched the faulty version, whichever encoding it was sent as.
    enc_paths = {
        f"{encodings.PATH_PREFIX}{s.blob_sha256}"
        for s in encodings.stored_encodings(reg.store, bad.name, bad.version)
    }
    served = [
        d
        for d in reg.downloads
        if (d.kind == "target" and bad.sha256 in d.path) or d.path in enc_paths
    ]
    [report] = [
        r for r in reg.store.list_reports(canary) if r.version == "1.0.1" and r.status == "failed"
    ]
    assert sum(d.bytes_sent for d in served) == report.bytes_downloaded > 0, (
        "only the canary downloaded it"
    )
    assert [w.state for w in view.waves] == ["open", "waiting", "waiting"]


def test_rollback_campaign_returns_takers_to_previous_version(
    registry_server, fleet, clock, squeezenet_bytes
) -> None:
    reg, m = registry_server.registry, registry_server.manager
    reg.publish_bytes(MODEL, "1.0.1", with_provenance(squeezenet_bytes, "1.0.1"))
    cid = m.create(
        CampaignSpec(
            "to roll back",
            MODEL,
            "1.0.1",
            TargetSelection(tags=FLEET),
            waves=(WaveSpec(50, 1.0, 600), WaveSpec(100)),
        )
    ).campaign_id
    round_(fleet)
    took = {v for v, ver in versions(fleet).items() if ver == "1.0.1"}
    assert took == {v for v, w in wave_of(m, cid).items() if w == 0} and len(took) == 4

    reg.rerelease(
        MODEL, "1.0.0"
    )  # vehicles never go below a release counter: sign 1.0.0 as the newest release
    rb = m.rollback(cid, reason="field reports of false positives")

    assert (rb.spec.version, rb.spec.rollback_of) == ("1.0.0", cid)
    assert set(rb.wave_of) == took
    assert (
        m.view(cid).state == "aborted" and m.view(cid).reason == "field reports of false positives"
    )
    results = round_(fleet)
    assert {v for v, r in results.items() if r} == took
    assert all(r == ["1.0.0:installed"] for v, r in results.items() if v in took)
    assert set(versions(fleet).values()) == {"1.0.0"}
    assert m.view(rb.campaign_id).state == "completed"
    clock.advance(3600)
    assert all(r == [] for r in round_(fleet).values()), "the rolled-back version stays withheld"


def test_registry_restart_mid_campaign(registry_server, fleet, clock, squeezenet_bytes) -> None:
    registry_server.registry.publish_bytes(
        MODEL, "1.0.1", with_provenance(squeezenet_bytes, "1.0.1")
    )
    spec = CampaignSpec(
        "restart",
        MODEL,
        "1.0.1",
        TargetSelection(tags=FLEET),
        waves=(WaveSpec(50, 1.0, 60), WaveSpec(100, 1.0, 0)),
    )
    cid = registry_server.manager.create(spec).campaign_id
    round_(fleet)
    before = registry_server.manager.view(cid)
    port = registry_server.port

    registry_server.restart()

    assert registry_server.port == port
    after = registry_server.manager.view(cid)
    assert (after.state, after.current_wave, after.wave_of) == ("running", 0, before.wave_of)
    assert [w.successes(require_confirmed=False) for w in after.waves] == [4, 0]
    # The first cycle after the restart may find the channel still reconnecting (a metadata
    # refresh that fails is reported and retried next cycle); nothing is installed while soaking.
    first = round_(fleet)
    assert all(o == ":failed" for outs in first.values() for o in outs), first
    assert all(r == [] for r in round_(fleet).values()), "still soaking after the restart"
    clock.advance(60)
    results = round_(fleet)  # the same agents, the same channels: they reconnect
    assert sum(1 for r in results.values() if r == ["1.0.1:installed"]) == 4
    assert set(versions(fleet).values()) == {"1.0.1"}
    assert registry_server.manager.view(cid).state == "completed"


def test_require_confirmed_waits_for_the_agents_health_window(
    registry_server, make_agent, clock, squeezenet_bytes
) -> None:
    from vehicle_agent.health import HealthPolicy

    reg, m = registry_server.registry, registry_server.manager
    publish_released(reg, MODEL, "1.0.0", squeezenet_bytes)
    agents = [
        make_agent(f"car-{i}", tags=FLEET, health=HealthPolicy(window_s=0.2)) for i in range(4)
    ]
    round_(agents)
    reg.publish_bytes(MODEL, "1.0.1", with_provenance(squeezenet_bytes, "1.0.1"))
    cid = m.create(
        CampaignSpec(
            "confirmed",
            MODEL,
            "1.0.1",
            TargetSelection(tags=FLEET),
            waves=(WaveSpec(25), WaveSpec(100)),
            require_confirmed=True,
        )
    ).campaign_id
    [canary] = [v for v, w in wave_of(m, cid).items() if w == 0]
    round_(agents)
    view = m.view(cid)
    assert (view.current_wave, view.waves[0].counts["installed"]) == (0, 1), (
        "installed is not yet healthy"
    )
    time.sleep(0.25)  # the agent's own health window (real time, on the vehicle)
    round_(agents)  # the canary's agent confirms it and reports; then the next wave opens
    assert m.view(cid).vehicles[canary].status == "confirmed"
    time.sleep(0.25)
    round_(agents)
    time.sleep(0.25)
    round_(agents)
    view = m.view(cid)
    assert view.state == "completed" and all(
        s.status == "confirmed" for s in view.vehicles.values()
    )
