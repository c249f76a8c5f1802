"""A campaign over the fleet: waves, abort, and the couplings between vehicles.

A wave is one vectorised :func:`simulator.engine.transfer`, then up to two
corrections, each switchable (:class:`simulator.scenario.Model`):

* **Shared cells.** Vehicles on a link with ``cell_capacity_mbps`` camp on
  cells of ``fleet_per_cell`` of the fleet's vehicles. The fleet's bytes per
  cell and hour give the cell's load rho (the share of its spare capacity C the
  fleet uses); a processor-sharing cell serves a download at C (1 - rho) on
  average (the M/G/1-PS sojourn time x / (C (1 - rho)), Kleinrock, Queueing
  Systems vol. 2, 1976), so a vehicle's cellular rate becomes min(rate,
  C (1 - rho)) and its download is replayed. One fixed-point step: the load is
  that of the unshared pass.
* **The registry's concurrency limit** (``campaign.max_concurrent``, the
  campaign's ``max_concurrent_downloads``). The registry offers the update to
  at most that many vehicles at once; a slot is held from the offer to the
  install (or ``download_timeout_s`` for a vehicle that goes silent), and a
  refused vehicle asks again at its next check-in. Admission is a first-come
  c-server queue over the vehicles' first contacts (the one loop over vehicles
  in the simulator, run only when the limit binds), holding each slot for the
  unlimited pass's download time; the delayed vehicles' downloads are replayed
  from their admission.

Slots held and cell load from an earlier wave's stragglers are not carried into
the next wave.
"""

from __future__ import annotations

import heapq
import logging
import math
from dataclasses import dataclass, field

import numpy as np

from simulator.engine import Progress, TransferResult, transfer
from simulator.fleet import F64, I64, Fleet

log = logging.getLogger(__name__)


def cell_shares(fleet: Fleet, ids: I64, res: TransferResult) -> F64 | None:
    """Per vehicle of ``ids``: the factor on its cellular rate from the fleet's load on its cell."""
    cell = fleet.cell[ids]
    m = (cell >= 0) & np.isfinite(res.done) & (res.cell_bytes > 0)
    if not m.any():
        return None
    hour = (res.done[m] // 3600).astype(np.int64)
    key = cell[m] * (1 << 20) + hour
    uniq, inv = np.unique(key, return_inverse=True)
    demand = np.bincount(inv, weights=res.cell_bytes[m], minlength=len(uniq))
    free = fleet.cell_free_bps[ids[m]]
    rho = np.minimum(demand[inv] / (free * 3600.0), 0.95)
    scale = np.ones(len(ids))
    scale[m] = np.minimum(1.0, free * (1 - rho) / fleet.rate[ids[m]])
    return scale


def admissions(
    contact: F64, done: F64, install_s: float, limit: int, poll_s: float, timeout_s: float
) -> F64:
    """When the registry first offers the update to each vehicle, under a limit of ``limit`` at once."""
    admit = contact.copy()
    known = np.flatnonzero(np.isfinite(contact))
    if limit <= 0 or known.size <= limit:
        return admit
    with np.errstate(invalid="ignore"):  # inf - inf for vehicles that never hear of it: not used
        hold = (
            np.where(np.isfinite(done), np.minimum(done - contact, timeout_s), timeout_s)
            + install_s
        )
    order = known[np.argsort(contact[known], kind="stable")]
    free = [0.0] * limit
    poll = max(poll_s, 1.0)
    c_list, h_list = contact[order].tolist(), hold[order].tolist()
    out = np.empty(len(order))
    for i, (c, h) in enumerate(zip(c_list, h_list, strict=False)):
        first_free = free[0]
        a = c if first_free <= c else c + math.ceil((first_free - c) / poll) * poll
        heapq.heapreplace(free, a + h)
        out[i] = a
    admit[order] = out
    return admit


@dataclass
class StrategyRun:
    """What one strategy's campaign did to every vehicle."""

    strategy: str
    size_bytes: int
    success: F64  # time the vehicle runs the new model; inf if never (within horizon)
    failed: np.ndarray  # install failed (rolled back) within the campaign
    nbytes: F64
    cost: F64 = field(default_factory=lambda: np.zeros(0))  # USD per vehicle
    wave_starts: list[float] = field(default_factory=list)
    abort_time: float = math.inf
    aborted_in_wave: int | None = None
    fail_at: F64 = field(
        default_factory=lambda: np.zeros(0)
    )  # when each failed install was reported
    delayed_by_registry: int = 0  # vehicles the registry's limit made wait

    @property
    def waves_started(self) -> int:
        return len(self.wave_starts)


def play_wave(
    fleet: Fleet, ids: I64, t: float, size: int, horizon: float, progress: Progress | None
) -> tuple[TransferResult, F64, F64, int]:
    """One wave's downloads with the couplings: the result, each vehicle's start and rate factor."""
    sc, camp = fleet.scenario, fleet.scenario.campaign
    res = transfer(fleet, ids, t, size, horizon, progress=progress)
    t0 = np.full(len(ids), t)
    scale = np.ones(len(ids))
    delayed = 0
    if sc.model.cell_sharing:
        shares = cell_shares(fleet, ids, res)
        if shares is not None and (slow := np.flatnonzero(shares < 0.999)).size:
            scale = shares
            _replace(
                res, slow, transfer(fleet, ids[slow], t, size, horizon, rate_scale=scale[slow])
            )
    if sc.model.registry_limit and camp.max_concurrent > 0:
        admit = admissions(
            res.contact,
            res.done,
            camp.install_s,
            camp.max_concurrent,
            camp.poll_min * 60,
            camp.download_timeout_s,
        )
        late = np.flatnonzero(admit > res.contact + 1e-9)
        delayed = int(late.size)
        if late.size:
            t0[late] = admit[late]
            _replace(
                res,
                late,
                transfer(fleet, ids[late], admit[late], size, horizon, rate_scale=scale[late]),
            )
    return res, t0, scale, delayed


def _replace(res: TransferResult, pos: I64, new: TransferResult) -> None:
    for f in ("done", "nbytes", "sessions", "windows", "cost", "cell_bytes"):
        getattr(res, f)[pos] = getattr(new, f)


def run_campaign(
    fleet: Fleet, strategy: str, size: int, *, progress: Progress | None = None
) -> StrategyRun:
    """Play the scenario's campaign for one package size over the fleet."""
    sc, camp = fleet.scenario, fleet.scenario.campaign
    horizon = sc.horizon_s
    n = fleet.n
    success = np.full(n, np.inf)
    fail_at = np.full(n, np.inf)
    done = np.full(n, np.inf)
    nbytes = np.zeros(n)
    cost = np.zeros(n)
    t_start = np.zeros(n)
    scale_all = np.ones(n)
    run = StrategyRun(strategy, size, success, np.zeros(n, dtype=bool), nbytes, cost)
    members = [fleet.wave_members(i) for i in range(len(camp.waves))]
    t = 0.0
    targeted = 0
    for i, ids in enumerate(members):
        run.wave_starts.append(t)
        res, t0, scale, delayed = play_wave(fleet, ids, t, size, horizon, progress)
        run.delayed_by_registry += delayed
        t_start[ids], scale_all[ids] = t0, scale
        finish = res.done + camp.install_s
        finish[finish > horizon] = np.inf
        fails = fleet.install_fails[ids]
        done[ids] = res.done
        success[ids] = np.where(fails, np.inf, finish)
        fail_at[ids] = np.where(fails, finish, np.inf)
        nbytes[ids] = res.nbytes
        cost[ids] = res.cost
        targeted += len(ids)
        t_next = math.inf
        if i + 1 < len(members) and len(ids):
            k = math.ceil(camp.advance_of(i) * len(ids))
            t_share = float(np.partition(success[ids], k - 1)[k - 1])
            t_next = max(t + camp.soak_of(i) * 3600, t_share)
        # Abort: failures among everyone targeted so far reach the threshold
        # before the next wave starts (or before the horizon, in the last wave).
        threshold = max(camp.abort_min_failures, math.ceil(camp.abort_error_share * targeted))
        fails_so_far = np.sort(fail_at[np.isfinite(fail_at)])
        if threshold >= 1 and len(fails_so_far) >= threshold:
            crossing = max(float(fails_so_far[threshold - 1]), t)
            if crossing < min(t_next, horizon):
                run.abort_time, run.aborted_in_wave = crossing, i
                log.info("%s: campaign aborted in wave %d at t=%.0fs", strategy, i + 1, crossing)
                break
        if skipped := sum(len(m) for m in members[i + 1 :]) if t_next >= horizon else 0:
            log.info(
                "%s: wave %d never advances within the horizon; %d vehicles not started",
                strategy,
                i + 1,
                skipped,
            )
            if progress:
                progress(skipped)
            break
        t = t_next
    if math.isfinite(run.abort_time):
        _cut_at_abort(fleet, run, done, members, size, t_start, scale_all)
        if progress:
            progress(sum(len(m) for m in members[run.waves_started :]))
    run.failed = np.isfinite(fail_at) & (fail_at <= run.abort_time)
    run.fail_at = fail_at
    return run


def _cut_at_abort(
    fleet: Fleet,
    run: StrategyRun,
    done: F64,
    members: list[I64],
    size: int,
    t_start: F64,
    scale: F64,
) -> None:
    """After an abort the registry offers nothing more: downloads in flight stop there."""
    ta = run.abort_time
    run.success[run.success > ta] = np.inf
    for ids in members[: run.waves_started]:
        cut = ids[done[ids] > ta]
        if cut.size:
            res = transfer(fleet, cut, t_start[cut], size, ta, rate_scale=scale[cut])
            run.nbytes[cut], run.cost[cut] = res.nbytes, res.cost
