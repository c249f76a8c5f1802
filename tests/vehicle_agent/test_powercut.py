"""A short power-cut campaign in the suite (the full one is ``make faults``, ``TRIALS=500``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "faults.py"


def test_kill_minus_nine_during_updates_never_tears_and_always_converges(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_faults", BENCH)
    assert spec and spec.loader
    faults = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = faults  # dataclasses look their module up there
    spec.loader.exec_module(faults)

    c, _ = faults.power_cuts(trials=4, work=tmp_path, seed=7)

    assert c.kills == 4
    assert c.torn == 0, c.problems
    assert c.updates == 2 and c.converged == 2, c.problems
    assert c.served_old + c.served_new == 4
