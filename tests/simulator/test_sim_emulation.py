"""The simulator against real agents in network namespaces (small; needs root, ip, tc)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simulator.emulate.harness import emulate, vehicle_windows
from simulator.emulate.netns import EmulationUnavailable, check_available
from simulator.emulate.report import summarise, write_emulation_report
from simulator.scenario import load_scenario


def test_emulated_windows_are_the_simulators() -> None:
    sc = load_scenario("emulation")
    wins = vehicle_windows(sc, 5, 120.0)
    for w in wins:
        starts = np.array([a for a, _ in w])
        ends = np.array([b for _, b in w])
        assert np.all(ends > starts) and np.all(starts[1:] >= ends[:-1])
        assert starts[0] >= 0 and ends[-1] <= 120.0
    assert vehicle_windows(sc, 5, 120.0) == wins


@pytest.mark.netns
def test_real_agents_on_shaped_links_match_the_simulator(tmp_path: Path) -> None:
    try:
        check_available()
    except EmulationUnavailable as e:
        pytest.skip(f"no emulation here: {e}")
    sc = load_scenario("emulation")
    try:
        res = emulate(sc, 4, 120.0, work=tmp_path)  # vehicle 3 (satellite) is cut once on the way
    except EmulationUnavailable as e:  # e.g. another emulation kept the machine's lock too long
        pytest.skip(f"no emulation here: {e}")
    assert all(v.installed_at is not None for v in res.vehicles), [v.sessions for v in res.vehicles]
    cal = res.calibration
    assert cal.setup_rtts > cal.resume_setup_rtts > 1 and cal.session_overhead_bytes > cal.resume_overhead_bytes > 100
    s = summarise(res)
    assert s.passed, s
    path, _ = write_emulation_report(res, tmp_path / "report")
    assert "within" in path.read_text() and (tmp_path / "report" / "emulation.png").stat().st_size > 10_000
    raw = json.loads((tmp_path / "report" / "emulation.json").read_text())
    assert len(raw["vehicles"]) == 4 and all(v["sessions"][-1]["requests"] for v in raw["vehicles"])
