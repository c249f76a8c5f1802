"""The rollout engine: downloads over connectivity windows, waves, abort.

Vectorised over vehicles: every loop below runs over *windows* or *waves*, and
each step handles all vehicles still concerned at once with numpy. Given the
time its wave starts, a vehicle's download is independent of the others' (the
registry is not the bottleneck in this model; the campaign's rate limit on
concurrent downloads is not modelled), so a wave is one vectorised pass and
the campaign logic runs on the wave's sorted completion times.

Transfer model of one session: it opens at the start of a reachable window
(or at the first check-in after the wave starts, when the vehicle is already
reachable), spends ``setup_rtts`` round trips (``resume_setup_rtts`` for a
later session of the same update) plus its metadata bytes before payload
flows, then receives at the link's goodput times a log-normal factor drawn per
window (cell load, signal). When the window ends, what the link had queued
(``drain_s`` of payload) still arrives, and is wasted unless it completes a
chunk of a resumable download; a break shorter than that
goes unnoticed and the session carries on after one round trip. A resumable download
keeps what it has across windows, in whole chunks of the registry's stream (the
chunk in flight at a cut is paid for and lost); a non-resumable one starts
again. After the last byte the install takes ``install_s`` and fails with the
campaign's install failure rate (the same vehicles fail whatever the strategy).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from simulator import rng
from simulator.fleet import F64, I64, Fleet, Windows

log = logging.getLogger(__name__)

CHUNK = 1 << 17  # vehicles per vectorised pass: bounds memory, paces the progress bar

Progress = Callable[[int], None]


@dataclass
class TransferResult:
    done: F64  # when the last payload byte arrived; inf if not by t_end
    nbytes: F64  # bytes on the wire by then (payload and session overhead)
    sessions: I64  # sessions that got past set-up


def transfer(
    fleet: Fleet,
    ids: I64,
    t0: float,
    size: float,
    t_end: float,
    *,
    progress: Progress | None = None,
) -> TransferResult:
    """Download ``size`` bytes to vehicles ``ids`` starting at ``t0``, stopping at ``t_end``."""
    parts = [_transfer(fleet, ids[i : i + CHUNK], t0, size, t_end, progress) for i in range(0, len(ids), CHUNK)]
    if not parts:
        return TransferResult(np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64))
    return TransferResult(
        np.concatenate([p.done for p in parts]),
        np.concatenate([p.nbytes for p in parts]),
        np.concatenate([p.sessions for p in parts]),
    )


def first_contact(fleet: Fleet, ids: I64, t0: float) -> tuple[Windows, F64]:
    """When each vehicle first hears of a wave that starts at ``t0``, and its window then.

    A vehicle reachable at ``t0`` learns of it at its next check-in (a uniform
    phase within ``poll_min``), one that is not when its next window opens.
    """
    w = Windows(fleet, ids)
    w.seek(t0)
    contact = w.start.copy()
    inside = np.flatnonzero(w.start <= t0)  # reachable already (a window opening at t0 was open before it)
    if inside.size:
        phase = rng.uniform(fleet.seed, "poll", ids[inside], int(t0))
        contact[inside] = t0 + phase * fleet.scenario.campaign.poll_min * 60
        late = inside[contact[inside] >= w.end[inside]]
        w.advance(late)
        contact[late] = w.start[late]
    return w, contact


def _transfer(fleet: Fleet, ids: I64, t0: float, size: float, t_end: float, progress: Progress | None) -> TransferResult:
    sc = fleet.scenario
    n = len(ids)
    done = np.full(n, np.inf)
    nbytes = np.zeros(n)
    sessions = np.zeros(n, dtype=np.int64)
    if n == 0 or t0 >= t_end:
        if progress:
            progress(n)
        return TransferResult(done, nbytes, sessions)
    w, contact = first_contact(fleet, ids, t0)
    pr = sc.protocol
    remaining = np.full(n, float(size))
    carry_on = np.zeros(n, dtype=bool)
    act = np.arange(n)
    while act.size:
        s = contact[act]
        end = np.minimum(w.end[act], t_end)
        live = s < end
        act, s, end = act[live], s[live], end[live]
        if act.size == 0:
            break
        v = ids[act]
        rate = fleet.rate[v] * rng.lognormal_unit_mean(fleet.seed, "rate", v, w.key[act], fleet.jitter[v])
        first = sessions[act] == 0
        cont = carry_on[act]  # the link came back before the agent noticed it had gone
        overhead = np.where(first, float(pr.session_overhead_bytes), float(pr.resume_overhead_bytes))
        overhead[cont] = 0.0
        rtts = np.where(first, pr.setup_rtts, pr.resume_setup_rtts)
        rtts[cont] = 1.0  # the agent's retry asks for the rest of the stream at once
        setup = fleet.rtt_s[v] * rtts + overhead / rate
        avail = end - s - setup
        opened = avail > 0
        sessions[act] += opened & ~cont
        nbytes[act] += np.where(opened, overhead, 0.0)
        can = np.maximum(avail, 0.0) * rate
        fin = can >= remaining[act]
        af = act[fin]
        done[af] = s[fin] + setup[fin] + remaining[af] / rate[fin]
        nbytes[af] += remaining[af]
        # Cut by the window's end: what was queued on the link still arrives, and
        # may be all that was missing.
        drain = np.where(opened & (end < t_end), fleet.drain_s[v] * rate, 0.0)
        tail = ~fin & (can + drain >= remaining[act])
        at = act[tail]
        done[at] = end[tail] + (remaining[at] - can[tail]) / rate[tail]
        nbytes[at] += remaining[at]
        cut = ~fin & ~tail
        an = act[cut]
        drained = drain[cut]
        nbytes[an] += can[cut] + drained
        if sc.campaign.resumable:
            have = size - remaining[an] + can[cut] + drained
            if pr.resume_chunk_bytes > 0:  # only whole chunks of the stream survive a cut
                have = np.floor(have / pr.resume_chunk_bytes) * pr.resume_chunk_bytes
            remaining[an] = size - have
        else:
            remaining[an] = float(size)
        w.advance(an)
        contact[an] = w.start[an]
        # A break shorter than what the link had queued goes unnoticed: the vehicle
        # learns of the cut only when the queue has drained, and by then it is back.
        carry_on[an] = opened[cut] & (w.start[an] - end[cut] < fleet.drain_s[v[cut]])
        act = an
    if progress:
        progress(n)
    return TransferResult(done, nbytes, sessions)


@dataclass
class StrategyRun:
    """What one strategy's campaign did to every vehicle."""

    strategy: str
    size_bytes: int
    success: F64  # time the vehicle runs the new model; inf if never (within horizon)
    failed: np.ndarray  # install failed (rolled back) within the campaign
    nbytes: F64
    wave_starts: list[float] = field(default_factory=list)
    abort_time: float = math.inf
    aborted_in_wave: int | None = None

    @property
    def waves_started(self) -> int:
        return len(self.wave_starts)


def run_campaign(fleet: Fleet, strategy: str, size: int, *, progress: Progress | None = None) -> StrategyRun:
    """Play the scenario's campaign for one package size over the fleet."""
    sc, camp = fleet.scenario, fleet.scenario.campaign
    horizon = sc.horizon_s
    n = fleet.n
    success = np.full(n, np.inf)
    fail_at = np.full(n, np.inf)
    done = np.full(n, np.inf)
    nbytes = np.zeros(n)
    run = StrategyRun(strategy, size, success, np.zeros(n, dtype=bool), nbytes)
    members = [fleet.wave_members(i) for i in range(len(camp.waves))]
    t = 0.0
    targeted = 0
    for i, ids in enumerate(members):
        run.wave_starts.append(t)
        res = transfer(fleet, ids, t, size, horizon, progress=progress)
        finish = res.done + camp.install_s
        finish[finish > horizon] = np.inf
        fails = fleet.install_fails[ids]
        done[ids] = res.done
        success[ids] = np.where(fails, np.inf, finish)
        fail_at[ids] = np.where(fails, finish, np.inf)
        nbytes[ids] = res.nbytes
        targeted += len(ids)
        t_next = math.inf
        if i + 1 < len(members) and len(ids):
            k = math.ceil(camp.advance_share * len(ids))
            t_share = float(np.partition(success[ids], k - 1)[k - 1])
            t_next = max(t + camp.soak_hours * 3600, t_share)
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
            log.info("%s: wave %d never advances within the horizon; %d vehicles not started", strategy, i + 1, skipped)
            if progress:
                progress(skipped)
            break
        t = t_next
    if math.isfinite(run.abort_time):
        _cut_at_abort(fleet, run, done, members, size)
        if progress:
            progress(sum(len(m) for m in members[run.waves_started :]))
    run.failed = np.isfinite(fail_at) & (fail_at <= run.abort_time)
    return run


def _cut_at_abort(fleet: Fleet, run: StrategyRun, done: F64, members: list[I64], size: int) -> None:
    """After an abort the registry offers nothing more: downloads in flight stop there."""
    ta = run.abort_time
    run.success[run.success > ta] = np.inf
    for start, ids in zip(run.wave_starts, members):
        cut = ids[done[ids] > ta]
        if cut.size:
            run.nbytes[cut] = transfer(fleet, cut, start, size, ta).nbytes
