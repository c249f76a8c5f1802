"""The simulator against real agents in network namespaces (small; needs root, ip, tc)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simulator.emulate.harness import emulate, vehicle_windows
from simulator.emulate.netns import EmulationUnavailable, check_available
from simulator.emulate.relay import VehicleRelay
from simulator.emulate.report import summarise, write_emulation_report
from simulator.engine import transfer
from simulator.fleet import Windows, build_fleet
from simulator.scenario import load_scenario


def test_emulated_windows_are_the_simulators() -> None:
    """The relay enforces, for each vehicle, exactly the windows the simulator plays."""
    sc = load_scenario("emulation")
    horizon = 120.0
    wins = vehicle_windows(sc, 5, horizon)
    fleet = build_fleet(sc, 5)
    ids = np.arange(5)
    # At any time, the simulator's own walk (started there) is in the window the relay has.
    for t in np.linspace(0.0, horizon - 1, 37):
        w = Windows(fleet, ids)
        w.seek(t)
        for k in ids:
            s, e = float(w.start[k]), float(min(w.end[k], horizon))
            if s < horizon:
                assert (s, e) in wins[k], (k, t, s, e)
                relay = VehicleRelay(int(k), "10.0.0.1", 0.0, wins[k])
                assert relay.online(t) == (s <= t < e)
    # Where the simulator says a download ends, the relay lets the link be up (or draining).
    res = transfer(fleet, ids, 0.0, 536_884, horizon)
    for k in ids:
        if np.isfinite(res.done[k]):
            assert any(a <= res.done[k] <= b for a, b in wins[k]), (k, res.done[k], wins[k])
    assert vehicle_windows(sc, 5, horizon) == wins


@pytest.mark.netns
@pytest.mark.alone  # real agents timed against the simulator
def test_real_agents_on_shaped_links_match_the_simulator(tmp_path: Path) -> None:
    try:
        check_available()
    except EmulationUnavailable as e:
        pytest.skip(f"no emulation here: {e}")
    sc = load_scenario("emulation")
    # Vehicle by vehicle: each within 15% in time and bytes, or a documented window-edge flip.
    # Real agents vary between runs of the same seed (the real-vs-real noise floor in
    # docs/simulator.md): in fresh-clone runs on a quiet machine, one 4-vehicle run in about
    # six had one vehicle just outside (the 2 Mbit/s one 17% early; the cut satellite one
    # 15.5% late). A miss gets one fresh run, which must pass whole; both are reported.
    misses = []
    for attempt in (1, 2):
        work = tmp_path / f"run{attempt}"
        work.mkdir()
        try:
            res = emulate(sc, 4, 120.0, work=work)  # vehicle 3 (satellite) is cut once on the way
        except EmulationUnavailable as e:  # e.g. another emulation kept the machine's lock
            pytest.skip(f"no emulation here: {e}")
        assert all(v.installed_at is not None for v in res.vehicles), [
            v.sessions for v in res.vehicles
        ]
        cal = res.calibration
        assert (
            cal.setup_rtts > 1
            and cal.resume_setup_rtts > 1
            and cal.session_overhead_bytes > cal.resume_overhead_bytes > 100
        )
        s = summarise(res)
        if s.passed:
            break
        misses.append([(v.index, v.verdict, v.log_time, v.log_bytes) for v in s.verdicts])
    assert s.passed, misses
    path, _ = write_emulation_report(res, tmp_path / "report")
    assert (
        "within" in path.read_text()
        and (tmp_path / "report" / "emulation.png").stat().st_size > 10_000
    )
    raw = json.loads((tmp_path / "report" / "emulation.json").read_text())
    assert len(raw["vehicles"]) == 4 and all(v["sessions"][-1]["requests"] for v in raw["vehicles"])
