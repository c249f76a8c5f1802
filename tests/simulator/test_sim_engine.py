"""The engine's laws: determinism, conservation, connectivity, waves, abort, physics."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pytest

from simulator.campaign import run_campaign
from simulator.engine import transfer
from simulator.fleet import Windows, build_fleet
from simulator.scenario import Scenario, load_scenario, scenario_from_dict
from simulator.simulate import simulate, summarise
from simulator.sizes import PackageSize, StaticSizes

SMALL, BIG = 600_000, 240_000_000


def test_same_seed_same_outcome_and_another_seed_differs(tiny: Callable[..., Scenario]) -> None:
    sc = tiny()
    a = run_campaign(build_fleet(sc, 3000), "s", SMALL)
    b = run_campaign(build_fleet(sc, 3000), "s", SMALL)
    c = run_campaign(build_fleet(sc, 3000, seed=4), "s", SMALL)
    np.testing.assert_array_equal(a.success, b.success)
    np.testing.assert_array_equal(a.nbytes, b.nbytes)
    assert a.wave_starts == b.wave_starts
    assert not np.array_equal(a.success, c.success)


def test_a_vehicles_windows_do_not_depend_on_where_the_walk_starts(
    tiny: Callable[..., Scenario],
) -> None:
    fleet = build_fleet(tiny(), 500)
    ids = np.arange(500)
    early = Windows(fleet, ids)
    early.seek(0.0)
    t = 2.5 * 86400
    while np.any(m := (early.end <= t) & np.isfinite(early.start)):
        early.advance(np.flatnonzero(m))
    late = Windows(fleet, ids)
    late.seek(t)
    np.testing.assert_array_equal(early.start, late.start)
    np.testing.assert_array_equal(early.end, late.end)


def test_fleet_bytes_are_the_sum_over_vehicles_and_each_finished_download_is_size_plus_sessions(
    tiny: Callable[..., Scenario],
) -> None:
    sc = tiny(install_failure_rate=0.0)
    fleet = build_fleet(sc, 2000)
    run = run_campaign(fleet, "s", SMALL)
    summary = summarise(fleet, run, PackageSize("s", SMALL, "given"))
    assert summary.nbytes == pytest.approx(run.nbytes.sum())
    assert sum(lk.nbytes for lk in summary.links) == pytest.approx(summary.nbytes)
    assert summary.updated + summary.failed + summary.stuck == fleet.n

    ids = np.arange(fleet.n)
    pr = sc.protocol

    def overhead(sessions: np.ndarray) -> np.ndarray:
        return np.where(
            sessions > 0, pr.session_overhead_bytes + pr.resume_overhead_bytes * (sessions - 1), 0
        )

    exact = build_fleet(
        sc.replace(protocol=dataclasses.replace(pr, resume_chunk_bytes=0)), 2000
    )  # byte-granular
    res = transfer(exact, ids, 0.0, SMALL, sc.horizon_s)
    done = np.isfinite(res.done)
    np.testing.assert_allclose(res.nbytes[done], SMALL + overhead(res.sessions[done]))
    # Resuming in whole stream chunks pays for the chunk in flight at each cut, no more.
    chunked = transfer(fleet, ids, 0.0, SMALL, sc.horizon_s)
    d2 = np.isfinite(chunked.done)
    waste = chunked.nbytes[d2] - SMALL - overhead(chunked.sessions[d2])
    assert np.all(waste >= -1e-6)
    assert np.all(waste <= pr.resume_chunk_bytes * np.maximum(chunked.windows[d2] - 1, 0) + 1e-6)
    assert waste.sum() > 0
    # Unfinished downloads have paid for less than the package (plus their sessions).
    assert np.all(res.nbytes[~done] < SMALL + overhead(res.sessions[~done]))


def test_no_vehicle_updates_outside_its_reachable_windows_or_before_its_wave(
    tiny: Callable[..., Scenario],
) -> None:
    sc = tiny(install_failure_rate=0.0)
    fleet = build_fleet(sc, 3000)
    run = run_campaign(fleet, "s", SMALL)
    done_at = run.success - sc.campaign.install_s
    ok = np.flatnonzero(np.isfinite(run.success))
    assert ok.size > 0.9 * fleet.n
    w = Windows(fleet, ok)
    w.seek(0.0)
    # Walk each vehicle's windows up to its completion time: it must lie inside one.
    target = done_at[ok]
    while np.any(m := w.end < target):
        w.advance(np.flatnonzero(m))
    assert np.all(w.start <= target) and np.all(target <= w.end)
    wave_start = np.asarray(run.wave_starts)[fleet.wave_idx[ok]]
    setup = fleet.rtt_s[ok] * sc.protocol.resume_setup_rtts
    assert np.all(target >= wave_start + setup + SMALL / (fleet.rate[ok] * 10))
    assert not np.any(np.isfinite(run.success[fleet.dormant]))


def test_wave_advances_only_after_soak_and_share(tiny: Callable[..., Scenario]) -> None:
    sc = tiny(install_failure_rate=0.0, soak_hours=3.0, advance_share=0.8)
    fleet = build_fleet(sc, 4000)
    run = run_campaign(fleet, "s", SMALL)
    assert run.waves_started == 2
    t1 = run.wave_starts[1]
    w0 = fleet.wave_idx == 0
    assert t1 >= 3 * 3600
    assert np.mean(run.success[w0] <= t1) >= 0.8
    # Nobody in wave 2 receives a byte before it starts.
    w1 = np.flatnonzero(fleet.wave_idx == 1)
    res = transfer(fleet, w1, 0.0, SMALL, t1)
    assert np.all(run.success[w1] > t1)
    assert res.nbytes.sum() > 0  # (they would have, had the wave started at 0)


def test_error_threshold_aborts_and_stops_later_waves(tiny: Callable[..., Scenario]) -> None:
    sc = tiny(install_failure_rate=0.3, abort_error_share=0.05, abort_min_failures=3)
    fleet = build_fleet(sc, 4000)
    run = run_campaign(fleet, "s", SMALL)
    assert run.aborted_in_wave == 0 and run.waves_started == 1
    later = fleet.wave_idx > 0
    assert not np.any(np.isfinite(run.success[later]))
    assert run.nbytes[later].sum() == 0
    assert np.all(run.success[np.isfinite(run.success)] <= run.abort_time)
    assert run.failed.sum() >= 3
    # The same fleet without faults goes through every wave.
    healthy = run_campaign(build_fleet(tiny(install_failure_rate=0.0), 4000), "s", SMALL)
    assert healthy.waves_started == 2 and math.isinf(healthy.abort_time)


def test_a_big_download_never_finishes_before_a_small_one_on_the_same_link(
    tiny: Callable[..., Scenario],
) -> None:
    sc = tiny(waves=[1.0], install_failure_rate=0.0)
    fleet = build_fleet(sc, 3000)
    ids = np.arange(fleet.n)
    small = transfer(fleet, ids, 0.0, SMALL, sc.horizon_s)
    big = transfer(fleet, ids, 0.0, BIG, sc.horizon_s)
    both = np.isfinite(big.done)
    assert both.any()
    assert np.all(big.done[both] >= small.done[both])
    assert np.all(np.isfinite(small.done[both]))
    assert np.all(big.nbytes >= small.nbytes)
    # Over the whole fleet the small package reaches every share no later.
    res = simulate(
        sc.replace(strategies=("big", "small")),
        3000,
        sizes=StaticSizes({"big": BIG, "small": SMALL}),
    )
    by = {s.strategy: s for s in res.summaries()}
    for q, h in by["small"].hours_to.items():
        assert h <= by["big"].hours_to[q]


def test_download_time_on_a_steady_link_is_setup_plus_size_over_rate() -> None:
    sc = scenario_from_dict(
        {
            "name": "steady",
            "model": {"slow_start": False},
            "links": {
                "wire": {
                    "base": "lte",
                    "loss": 0.0,
                    "jitter": 0.0,
                    "dropouts_per_hour": 0.0,
                    "bandwidth_mbps": 8.0,
                }
            },
            "campaign": {"waves": [1.0], "install_failure_rate": 0.0, "poll_min": 0.0},
            "fleet": [{"share": 1.0, "link": "wire", "pattern": "always_on"}],
        }
    )
    fleet = build_fleet(sc, 50)
    res = transfer(fleet, np.arange(50), 0.0, 1_000_000, sc.horizon_s)
    rate = 8e6 / 8 * 0.95
    pr = sc.protocol
    setup = pr.setup_rtts * 0.060 + pr.session_overhead_bytes / rate
    np.testing.assert_allclose(res.done, setup + 1_000_000 / rate, rtol=1e-9)


def test_resuming_across_windows_saves_bytes_and_time(tiny: Callable[..., Scenario]) -> None:
    sc = tiny(waves=[1.0], install_failure_rate=0.0)
    fleet = build_fleet(sc, 2000)
    ids = np.arange(fleet.n)
    resumed = transfer(fleet, ids, 0.0, 20_000_000, sc.horizon_s)
    no_resume = sc.replace(campaign=dataclasses.replace(sc.campaign, resumable=False))
    restart = transfer(build_fleet(no_resume, 2000), ids, 0.0, 20_000_000, sc.horizon_s)
    assert resumed.nbytes.sum() < 0.9 * restart.nbytes.sum()
    both = np.isfinite(restart.done)
    assert np.all(resumed.done[both] <= restart.done[both])
    assert np.mean(resumed.done[both]) < np.mean(restart.done[both])


def test_a_link_that_drains_after_a_cut_never_finishes_later(tiny: Callable[..., Scenario]) -> None:
    sc = tiny(waves=[1.0], install_failure_rate=0.0)
    sc = sc.replace(protocol=dataclasses.replace(sc.protocol, retry_attempts=1))  # drain alone
    ids = np.arange(2000)
    dry = transfer(build_fleet(sc, 2000), ids, 0.0, 20_000_000, sc.horizon_s)
    links = {k: dataclasses.replace(v, drain_s=2.0) for k, v in sc.links.items()}
    wet = transfer(build_fleet(sc.replace(links=links), 2000), ids, 0.0, 20_000_000, sc.horizon_s)
    both = np.isfinite(dry.done)
    assert np.all(wet.done[both] <= dry.done[both] + 1e-9)
    assert np.mean(wet.done[both] < dry.done[both]) > 0.2  # drained chunks help


def test_the_agents_retries_carry_a_session_over_short_breaks(
    tiny: Callable[..., Scenario],
) -> None:
    sc = tiny(waves=[1.0], install_failure_rate=0.0)
    links = {
        k: dataclasses.replace(v, dropouts_per_hour=30.0, dropout_s=5.0)
        for k, v in sc.links.items()
    }
    sc = sc.replace(links=links)
    ids = np.arange(2000)
    retrying = transfer(build_fleet(sc, 2000), ids, 0.0, 20_000_000, sc.horizon_s)
    once = sc.replace(protocol=dataclasses.replace(sc.protocol, retry_attempts=1))
    giving_up = transfer(build_fleet(once, 2000), ids, 0.0, 20_000_000, sc.horizon_s)
    both = np.isfinite(retrying.done) & np.isfinite(giving_up.done)
    assert np.all(retrying.sessions[both] <= giving_up.sessions[both])
    assert retrying.sessions[both].sum() < 0.8 * giving_up.sessions[both].sum()
    assert np.all(retrying.windows[both] >= retrying.sessions[both])
    # Fewer sessions, less metadata on the wire.
    assert retrying.nbytes[both].sum() < giving_up.nbytes[both].sum()


class _ListedWindows:
    """Windows given as lists, with the attributes the retry model reads (simulator.fleet.Windows)."""

    def __init__(self, windows: list[list[tuple[float, float]]]) -> None:
        self.windows = windows
        self.ids = np.arange(len(windows))
        self.pos = np.zeros(len(windows), dtype=np.int64)
        self.day = np.zeros(len(windows), dtype=np.int64)

    def _bound(self, b: int) -> np.ndarray:
        return np.array(
            [
                ws[k][b] if k < len(ws) else math.inf
                for ws, k in zip(self.windows, self.pos, strict=True)
            ]
        )

    @property
    def start(self) -> np.ndarray:
        return self._bound(0)

    @property
    def end(self) -> np.ndarray:
        return self._bound(1)

    @property
    def key(self) -> np.ndarray:
        return self.pos.copy()

    def advance(self, p: np.ndarray) -> None:
        self.pos[p] += 1


def test_a_retry_in_a_break_waits_for_the_link_until_the_stall_watchdog() -> None:
    """The agent's retry after a cut is a wait_for_ready call: it connects when the link is back
    (at gRPC's first dial in the next window) unless its stall watchdog (15 s) fires first;
    only a retry that timed out halves the next request."""
    from simulator.engine import _retry_in_session

    sc = load_scenario("emulation")
    links = {k: dataclasses.replace(v, drain_s=0.0) for k, v in sc.links.items()}
    sc = sc.replace(links=links)
    fleet = build_fleet(sc, 3)
    cut = 10.0
    # The window after the cut opens 8 s later (within one retry's wait), 30 s later, 30 s later
    # with a single retry allowed.
    w = _ListedWindows([[(18.0, 100.0)], [(40.0, 100.0)], [(40.0, 100.0)]])
    pos = np.arange(3)
    contact = np.array([18.0, 40.0, 40.0])
    carry_on = np.zeros(3, dtype=bool)
    req = np.zeros(3)
    _retry_in_session(fleet, w, pos[:2], np.full(2, cut), contact, carry_on, req)  # type: ignore[arg-type]
    once = sc.replace(protocol=dataclasses.replace(sc.protocol, retry_attempts=2))
    _retry_in_session(
        build_fleet(once, 3),
        w,  # type: ignore[arg-type]
        pos[2:],
        np.full(1, cut),
        contact,
        carry_on,
        req,
    )
    pr = sc.protocol
    assert carry_on[0] and 18.0 <= contact[0] <= 18.0 + pr.reconnect_cap_s
    assert req[0] == 0  # the first retry connected: no request was cut short
    assert carry_on[1] and 40.0 <= contact[1] <= 40.0 + pr.reconnect_cap_s + 4.0
    assert req[1] in (128 * 1024, 64 * 1024)  # one or two retries timed out in the break
    assert not carry_on[2] and contact[2] >= 40.0  # gave up: a new session when the link is back
