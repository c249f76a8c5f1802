"""The pure core: wave split, per-vehicle state, and the campaign state replayed from facts."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from server.campaigns.rollout import (
    CampaignSpec,
    SpecError,
    TargetSelection,
    Threshold,
    VehicleState,
    WaveSpec,
    assign_waves,
    derive,
    vehicle_state,
)
from server.storage import CampaignEventRecord, CampaignMember, ReportRecord, VehicleRecord

T0 = 1_000.0
WAVES = (WaveSpec(10, 1.0, 60), WaveSpec(50, 0.5, 60), WaveSpec(100, 1.0, 0))


def spec(**kw) -> CampaignSpec:
    return CampaignSpec(**{"name": "t", "model": "m", "version": "1.0.1", "waves": WAVES, **kw})


def members(split: dict[str, int], offered: float | None = T0) -> list[CampaignMember]:
    return [CampaignMember("c", v, w, offered) for v, w in split.items()]


def ev(kind: str, wave: int = -1, at: float = T0, **detail) -> CampaignEventRecord:
    return CampaignEventRecord("c", at, kind, wave, json.dumps(detail))


def test_assign_waves_is_cumulative_reproducible_and_has_a_canary() -> None:
    ids = [f"car-{i:03d}" for i in range(200)]
    split = assign_waves("c-1", ids, [WaveSpec(1), WaveSpec(10), WaveSpec(50), WaveSpec(100)])
    assert Counter(split.values()) == {0: 2, 1: 18, 2: 80, 3: 100}
    assert split == assign_waves(
        "c-1", reversed(ids), [WaveSpec(1), WaveSpec(10), WaveSpec(50), WaveSpec(100)]
    )
    other = assign_waves("c-2", ids, [WaveSpec(1), WaveSpec(10), WaveSpec(50), WaveSpec(100)])
    assert {v for v, w in split.items() if w == 0} != {v for v, w in other.items() if w == 0}
    # A tiny fleet still gets a one-vehicle canary rather than an empty first wave.
    assert Counter(assign_waves("c", ["a", "b", "c"], [WaveSpec(1), WaveSpec(100)]).values()) == {
        0: 1,
        1: 2,
    }


def test_vehicle_state_from_reports_inventory_and_time() -> None:
    m = CampaignMember("c", "v", 0, offered_at=T0)
    rep = lambda status, reason="": ReportRecord("v", "m", "1.0.1", status, reason)  # noqa: E731
    assert vehicle_state(CampaignMember("c", "v", 0), [], False, T0, 60).status == "pending"
    assert vehicle_state(m, [rep("downloading")], False, T0 + 59, 60).status == "in_flight"
    late = vehicle_state(m, [rep("downloading")], False, T0 + 61, 60)
    assert late.status == "timed_out" and "last step: downloading" in late.reason
    assert vehicle_state(
        m, [rep("installed"), rep("rolled_back", "health")], False, T0, 60
    ) == VehicleState("rolled_back", "health")
    assert (
        vehicle_state(m, [rep("failed", "self-test failed")], False, T0 + 999, 60).status
        == "failed"
    )
    assert vehicle_state(CampaignMember("c", "v", 0), [], True, T0, 60).status == "installed"


def test_wave_advances_only_after_success_share_and_soak() -> None:
    split = {"a": 0, "b": 1, "c": 1, "d": 2}
    evs = [ev("created"), ev("wave_opened", 0)]
    ok = {"a": VehicleState("installed")}
    early = derive(spec(), evs, members(split), ok, T0 + 59)
    assert (early.state, early.current_wave, early.new_events) == ("running", 0, [])
    soaked = derive(spec(), evs, members(split), ok, T0 + 60)
    assert soaked.current_wave == 1 and [e.kind for e in soaked.new_events] == ["wave_opened"]
    # Wave 1 needs half of its two vehicles, and its own soak from when it opened.
    evs.append(ev("wave_opened", 1, at=T0 + 60))
    half = {**ok, "b": VehicleState("installed"), "c": VehicleState("in_flight")}
    assert derive(spec(), evs, members(split), half, T0 + 100).current_wave == 1
    assert derive(spec(), evs, members(split), half, T0 + 120).current_wave == 2
    evs.append(ev("wave_opened", 2, at=T0 + 120))
    done = {**half, "c": VehicleState("installed"), "d": VehicleState("installed")}
    view = derive(spec(), evs, members(split), done, T0 + 120)
    assert view.state == "completed" and [w.state for w in view.waves] == ["done", "done", "done"]


def test_require_confirmed_waits_for_the_health_window() -> None:
    s = spec(waves=(WaveSpec(100, 1.0, 0),), require_confirmed=True)
    evs = [ev("wave_opened", 0)]
    assert (
        derive(s, evs, members({"a": 0}), {"a": VehicleState("installed")}, T0).state == "running"
    )
    assert (
        derive(s, evs, members({"a": 0}), {"a": VehicleState("confirmed")}, T0).state == "completed"
    )


def test_threshold_aborts_or_pauses_and_resume_acknowledges_old_failures() -> None:
    split = {f"v{i}": (0 if i < 2 else 1) for i in range(10)}
    evs = [ev("wave_opened", 0)]
    states = {
        "v0": VehicleState("failed", "self-test failed: top-1 is 5, expected 6"),
        "v1": VehicleState("installed"),
    }
    view = derive(
        spec(threshold=Threshold(trip_failure_share=0.4)), evs, members(split), states, T0
    )
    assert view.state == "aborted" and "wave 0: 1 of 2 vehicles failed (1 failed)" in view.reason
    assert view.new_events[0].kind == "aborted"
    assert view.failure_groups() == [("failed", "self-test failed: top-1 is 5, expected 6", ["v0"])]
    paused = derive(
        spec(threshold=Threshold(trip_failures=1, trip_failure_share=0, action="pause")),
        evs,
        members(split),
        states,
        T0,
    )
    assert (
        paused.state == "paused"
        and "1 failures (1 failed) reached the threshold of 1" in paused.reason
    )
    # After an operator resumes, v0's failure is acknowledged; only new failures count.
    evs += [ev("paused", 0, reason=paused.reason), ev("resumed", 0, acknowledged={"v0": "failed"})]
    th = Threshold(trip_failures=1, trip_failure_share=0, action="pause")
    assert derive(spec(threshold=th), evs, members(split), states, T0).state == "running"
    states["v1"] = VehicleState("timed_out", "no result")
    assert derive(spec(threshold=th), evs, members(split), states, T0).state == "paused"
    # An acknowledged vehicle that fails differently later is a new failure.
    states["v1"], states["v0"] = (
        VehicleState("installed"),
        VehicleState("rolled_back", "health check"),
    )
    assert derive(spec(threshold=th), evs, members(split), states, T0).state == "paused"


def test_a_paused_campaign_does_not_advance_and_an_aborted_one_stays_aborted() -> None:
    s = spec(waves=(WaveSpec(50, 1.0, 0), WaveSpec(100, 1.0, 0)))
    m = members({"a": 0, "b": 1})
    ok = {"a": VehicleState("installed"), "b": VehicleState("installed")}
    paused = derive(s, [ev("wave_opened", 0), ev("paused", 0, reason="looking")], m, ok, T0)
    assert (paused.state, paused.current_wave, paused.new_events, paused.reason) == (
        "paused",
        0,
        [],
        "looking",
    )
    aborted = derive(s, [ev("wave_opened", 0), ev("aborted", 0), ev("resumed", 0)], m, ok, T0)
    assert aborted.state == "aborted" and aborted.new_events == []


def test_spec_validation_says_what_is_wrong_and_json_round_trips() -> None:
    with pytest.raises(SpecError, match="must reach 100%"):
        spec(waves=(WaveSpec(10), WaveSpec(50))).validate()
    with pytest.raises(SpecError, match="must grow"):
        spec(waves=(WaveSpec(50), WaveSpec(10), WaveSpec(100))).validate()
    with pytest.raises(SpecError, match="action"):
        spec(threshold=Threshold(action="explode")).validate()
    s = spec(
        target=TargetSelection(("ecu-a",), ("fleet=eu",), ("car-1",)), max_concurrent_downloads=3
    )
    assert CampaignSpec.from_json(s.to_json()) == s


def test_target_selection_matches_inventory() -> None:
    sel = TargetSelection(hardware_ids=("ecu-a",), tags=("fleet=eu", "beta"))
    v = VehicleRecord("car-1", "ecu-a", ("beta", "fleet=eu", "x"))
    assert sel.matches(v, "m")
    assert not sel.matches(VehicleRecord("car-1", "ecu-b", v.tags), "m")
    assert not sel.matches(VehicleRecord("car-1", "ecu-a", ("beta",)), "m")
    assert not sel.matches(VehicleRecord("car-1", "ecu-a", v.tags, wanted=("other",)), "m")
