"""Run a scenario for every strategy on one fleet, and summarise the outcome."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from simulator.campaign import StrategyRun, run_campaign
from simulator.engine import Progress
from simulator.fleet import Fleet, build_fleet
from simulator.scenario import Scenario
from simulator.sizes import PackageSize, ProjectArtifacts, SizeProvider

log = logging.getLogger(__name__)

QUANTILES = (0.5, 0.9, 0.99)


@dataclass
class LinkSummary:
    link: str
    vehicles: int
    updated: int
    nbytes: float
    cost_usd: float
    median_hours: float  # among the updated; nan if none


@dataclass
class StrategySummary:
    strategy: str
    size: PackageSize
    vehicles: int
    nbytes: float
    cost_usd: float
    updated: int
    failed: int
    stuck: int  # neither updated nor failed at the horizon (unreachable, aborted, never started)
    hours_to: dict[float, float]  # fleet share -> hours; inf if not reached within the horizon
    waves_started: int
    abort_hours: float
    links: list[LinkSummary] = field(default_factory=list)

    @property
    def updated_share(self) -> float:
        return self.updated / self.vehicles


@dataclass
class SimulationResult:
    scenario: Scenario
    fleet: Fleet
    sizes: dict[str, PackageSize]
    runs: dict[str, StrategyRun]
    elapsed_s: float

    def summaries(self) -> list[StrategySummary]:
        return [summarise(self.fleet, run, self.sizes[name]) for name, run in self.runs.items()]

    def coverage(self, hours: np.ndarray) -> dict[str, np.ndarray]:
        """Share of the fleet updated at each time (hours), per strategy."""
        out = {}
        for name, run in self.runs.items():
            s = np.sort(run.success[np.isfinite(run.success)]) / 3600
            out[name] = np.searchsorted(s, hours, side="right") / self.fleet.n
        return out


def simulate(
    scenario: Scenario,
    vehicles: int | None = None,
    *,
    seed: int | None = None,
    sizes: SizeProvider | None = None,
    progress: Progress | None = None,
) -> SimulationResult:
    """Play the scenario's campaign once per strategy, on the same fleet and seed."""
    t0 = time.perf_counter()
    table = (sizes or ProjectArtifacts()).sizes(scenario.strategies)
    fleet = build_fleet(scenario, vehicles, seed)
    runs = {
        name: run_campaign(fleet, name, table[name].nbytes, progress=progress)
        for name in scenario.strategies
    }
    return SimulationResult(scenario, fleet, table, runs, time.perf_counter() - t0)


def hours_to_share(success: np.ndarray, n: int, share: float) -> float:
    """Hours until ``share`` of all ``n`` vehicles run the new model (inf: never)."""
    k = math.ceil(share * n)
    done = success[np.isfinite(success)]
    if k > done.size:
        return math.inf
    return float(np.partition(done, k - 1)[k - 1]) / 3600


def summarise(fleet: Fleet, run: StrategyRun, size: PackageSize) -> StrategySummary:
    updated_mask = np.isfinite(run.success)
    updated = int(updated_mask.sum())
    failed = int(run.failed.sum())
    cost = run.cost
    links = []
    for i, name in enumerate(fleet.link_names):
        m = fleet.link_idx == i
        up = run.success[m & updated_mask]
        links.append(
            LinkSummary(
                link=name,
                vehicles=int(m.sum()),
                updated=int(up.size),
                nbytes=float(run.nbytes[m].sum()),
                cost_usd=float(cost[m].sum()),
                median_hours=float(np.median(up) / 3600) if up.size else math.nan,
            )
        )
    return StrategySummary(
        strategy=run.strategy,
        size=size,
        vehicles=fleet.n,
        nbytes=float(run.nbytes.sum()),
        cost_usd=float(cost.sum()),
        updated=updated,
        failed=failed,
        stuck=fleet.n - updated - failed,
        hours_to={q: hours_to_share(run.success, fleet.n, q) for q in QUANTILES},
        waves_started=run.waves_started,
        abort_hours=run.abort_time / 3600,
        links=links,
    )
