"""The effects that decide rollout time, each switchable, each shown to matter."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from simulator.assumptions import NHTS_2001_WEDNESDAY, is_sourced, missing_sources
from simulator.campaign import admissions, run_campaign
from simulator.engine import slow_start_delay, transfer
from simulator.fleet import DAY_S, Windows, build_fleet
from simulator.scenario import (
    MSS_BYTES,
    Model,
    Scenario,
    load_scenario,
    ready_scenarios,
    scenario_from_dict,
)
from simulator.simulate import hours_to_share

SIZE = 600_000


def _commuters(**pattern: object) -> Scenario:
    pat = {"base": "commuter", "dormant_share": 0.0, **pattern}
    return scenario_from_dict(
        {
            "name": "commuters",
            "seed": 5,
            "horizon_days": 7,
            "campaign": {
                "waves": [1.0],
                "install_failure_rate": 0.0,
                "poll_min": 15,
                "start_hour": 34,
            },
            "patterns": {"cars": pat},
            "links": {"cell": {"base": "lte", "dropouts_per_hour": 0.0, "jitter": 0.0}},
            "fleet": [{"share": 1.0, "link": "cell", "pattern": "cars"}],
        }
    )


def _starts_by_hour(sc: Scenario, n: int, days: float = 7.0) -> np.ndarray:
    fleet = build_fleet(sc, n)
    w = Windows(fleet, np.arange(n))
    w.seek(0.0)
    hours = np.zeros(24)
    while (live := np.flatnonzero(w.start < days * DAY_S)).size:
        cell = live[w.kind[live] == 0]
        np.add.at(hours, (((w.start[cell] + fleet.clock0_s) / 3600) % 24).astype(np.int64), 1)
        w.advance(live)
    return hours


def test_every_figure_of_the_ready_scenarios_cites_a_source_or_says_it_is_a_guess() -> None:
    for name in ready_scenarios():
        assert missing_sources(load_scenario(name)) == [], name
    assert is_sourced("AAA Foundation, American Driving Survey 2016-2017") and is_sourced(
        "guess: a plan price"
    )
    assert not is_sourced("typical figure")
    # A figure a scenario changes loses the built-in citation until the file gives its own.
    sc = scenario_from_dict(
        {
            "links": {"lte": {"rtt_ms": 90}},
            "fleet": [{"share": 1.0, "link": "lte", "pattern": "taxi"}],
        }
    )
    assert missing_sources(sc) == ["links.lte.rtt_ms"]


def test_commuter_driving_time_is_the_travel_surveys() -> None:
    sc = load_scenario("city_lte")
    car = sc.patterns["commuter"]
    assert car.drives_per_day * car.on_mean_min == pytest.approx(
        51, abs=1
    )  # ADS 2016-2017: 51 min a day
    assert "American Driving Survey" in sc.sources["patterns.commuter.drives_per_day"]


def test_diurnal_drives_start_when_people_drive_and_switching_it_off_flattens_them() -> None:
    sc = _commuters(home_wifi_share=0.0)
    diurnal = _starts_by_hour(sc, 4000)
    flat = _starts_by_hour(sc.replace(model=Model(diurnal=False)), 4000)
    peak, night = 17, 3  # NHTS 2001: 4,377 trips start 17:00-18:00 on a Wednesday, 36 at 03:00
    assert diurnal[peak] > 8 * diurnal[night]
    assert flat[peak] < 2 * flat[night]
    # The same driving a day either way (drive starts per vehicle and day, not counting day boundaries).
    days = 7 * 4000
    assert diurnal.sum() / days == pytest.approx(flat.sum() / days, rel=0.25)
    # The hourly shape follows the survey's: correlation with the weekday profile.
    assert np.corrcoef(diurnal, NHTS_2001_WEDNESDAY)[0, 1] > 0.8


def test_a_campaign_started_at_night_waits_for_the_morning_commute() -> None:
    def t50(sc: Scenario) -> float:
        run = run_campaign(build_fleet(sc, 3000), "s", SIZE)
        return hours_to_share(run.success, 3000, 0.5)

    sc = _commuters(home_wifi_share=0.0, awake_after_min=0.0)
    night = dataclasses.replace(sc.campaign, start_hour=24 + 1)  # Tuesday 01:00
    evening = dataclasses.replace(sc.campaign, start_hour=24 + 16)  # Tuesday 16:00
    assert t50(sc.replace(campaign=night)) > t50(sc.replace(campaign=evening)) + 3
    flat = Model(diurnal=False)
    assert (
        abs(
            t50(sc.replace(campaign=night, model=flat))
            - t50(sc.replace(campaign=evening, model=flat))
        )
        < 2
    )


def test_home_wifi_carries_bytes_at_no_price_and_parked_awake_adds_reach() -> None:
    ids = np.arange(3000)

    def run(**pattern: object):  # type: ignore[no-untyped-def]
        sc = _commuters(**pattern)
        slow = {
            "cell": dataclasses.replace(sc.links["cell"], bandwidth_mbps=0.1)
        }  # a drive cannot carry it all
        sc = sc.replace(links={**sc.links, **slow})
        return transfer(build_fleet(sc, 3000), ids, 0.0, 20_000_000, sc.horizon_s)

    cell_only = run(home_wifi_share=0.0, awake_after_min=0.0)
    wifi = run(home_wifi_share=1.0, home_wifi_min=60.0, awake_after_min=0.0)
    awake = run(home_wifi_share=0.0, awake_after_min=20.0)
    # Vehicles that reach home Wi-Fi finish there, over a link the fleet does not pay for.
    assert wifi.cell_bytes.sum() < 0.95 * wifi.nbytes.sum()
    np.testing.assert_allclose(
        wifi.cost, wifi.cell_bytes * build_fleet(_commuters(), 1).price_per_byte[0]
    )
    assert wifi.cost.sum() < 0.95 * cell_only.cost.sum()
    np.testing.assert_allclose(cell_only.cell_bytes, cell_only.nbytes)
    for faster in (wifi, awake):
        both = np.isfinite(cell_only.done)
        assert np.median(faster.done[both]) < np.median(cell_only.done[both])


def test_slow_start_costs_round_trips_on_a_long_fat_path() -> None:
    iw = 10 * MSS_BYTES
    rate, rtt = np.array([2.5e6]), np.array([0.6])  # 20 Mbit/s, 600 ms: BDP 1.5 MB
    # 600 kB in slow start: 14.5 kB, 29 kB, ... doubling; 6 rounds carry 914 kB.
    assert slow_start_delay(np.array([600e3]), rate, rtt, iw)[0] == pytest.approx(
        6 * 0.6 - 600e3 / 2.5e6
    )
    assert slow_start_delay(np.array([600e3]), rate, np.array([0.0]), iw)[0] == 0.0
    sc = _commuters(home_wifi_share=0.0)
    links = {k: dataclasses.replace(v, rtt_ms=600.0, loss=0.0) for k, v in sc.links.items()}
    sc = sc.replace(links=links)
    ids = np.arange(2000)
    slow = transfer(build_fleet(sc, 2000), ids, 0.0, SIZE, sc.horizon_s)
    fast = transfer(
        build_fleet(sc.replace(model=Model(slow_start=False)), 2000), ids, 0.0, SIZE, sc.horizon_s
    )
    both = np.isfinite(fast.done) & np.isfinite(slow.done)
    assert np.all(slow.done[both] >= fast.done[both] - 1e-9)
    assert np.median(slow.done[both] - fast.done[both]) > 2.0


def test_vehicles_in_one_cell_share_its_capacity() -> None:
    def t90(per_cell: float, model: Model = Model()) -> float:
        sc = _commuters(home_wifi_share=0.0)
        links = {
            "cell": dataclasses.replace(
                sc.links["cell"], fleet_per_cell=per_cell, cell_background=0.5
            )
        }
        sc = sc.replace(links={**sc.links, **links}, model=model)
        run = run_campaign(build_fleet(sc, 2000), "s", 240_000_000)
        return hours_to_share(run.success, 2000, 0.9)

    assert t90(400.0) > 1.1 * t90(2.0)
    off = Model(cell_sharing=False)
    assert t90(400.0, off) == t90(2.0, off)


def test_the_registry_never_serves_more_than_its_limit_at_once() -> None:
    rng = np.random.default_rng(1)
    contact = np.sort(rng.uniform(0, 3600, 500))
    done = contact + rng.uniform(60, 600, 500)
    admit = admissions(contact, done, 20.0, 25, 900.0, 3600.0)
    assert np.all(admit >= contact)
    held_until = admit + (done - contact) + 20.0
    for t in np.linspace(0, held_until.max(), 400):
        assert np.sum((admit <= t) & (t < held_until)) <= 25
    np.testing.assert_array_equal(admissions(contact, done, 20.0, 0, 900.0, 3600.0), contact)

    sc = _commuters(home_wifi_share=0.0)
    limited = sc.replace(campaign=dataclasses.replace(sc.campaign, max_concurrent=2))
    a = run_campaign(build_fleet(limited, 2000), "s", 5_000_000)
    b = run_campaign(build_fleet(sc, 2000), "s", 5_000_000)
    off = run_campaign(
        build_fleet(limited.replace(model=Model(registry_limit=False)), 2000), "s", 5_000_000
    )
    assert a.delayed_by_registry > 0 and b.delayed_by_registry == 0
    assert hours_to_share(a.success, 2000, 0.9) > hours_to_share(b.success, 2000, 0.9) + 1
    np.testing.assert_array_equal(off.success, b.success)


def test_a_bad_hardware_variant_trips_the_abort_and_its_failures_are_its_own() -> None:
    def campaign(bad_rate: float):  # type: ignore[no-untyped-def]
        sc = scenario_from_dict(
            {
                "seed": 9,
                "horizon_days": 7,
                "campaign": {
                    "waves": [0.05, 0.3, 1.0],
                    "soak_hours": 2,
                    "abort_error_share": 0.05,
                    "abort_min_failures": 3,
                },
                "hardware": [
                    {"name": "a", "share": 0.85, "install_failure_rate": 0.001},
                    {"name": "b", "share": 0.15, "install_failure_rate": bad_rate},
                ],
                "fleet": [{"share": 1.0, "link": "lte", "pattern": "taxi"}],
            }
        )
        fleet = build_fleet(sc, 4000)
        return fleet, run_campaign(fleet, "s", SIZE)

    fleet, bad = campaign(0.6)
    assert bad.aborted_in_wave is not None and bad.waves_started < 3
    failed_hw = fleet.hardware_idx[bad.failed]
    assert failed_hw.size >= 3 and np.mean(failed_hw == 1) > 0.9
    _, fine = campaign(0.001)
    assert fine.aborted_in_wave is None and fine.waves_started == 3
