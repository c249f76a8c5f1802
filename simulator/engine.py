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
chunk of a resumable download. The agent then retries within its session with
backoff (its RetryPolicy); a retry that finds the link back carries the session
on after one round trip, else the next window opens a new one. A resumable download
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
from simulator.scenario import Protocol

log = logging.getLogger(__name__)

CHUNK = 1 << 17  # vehicles per vectorised pass: bounds memory, paces the progress bar

Progress = Callable[[int], None]


@dataclass
class TransferResult:
    done: F64  # when the last payload byte arrived; inf if not by t_end
    nbytes: F64  # bytes on the wire by then (payload and session overhead)
    sessions: I64  # sessions that got past set-up
    windows: I64  # reachable windows in which payload flowed (a session may span several)


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
        return TransferResult(np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    return TransferResult(
        np.concatenate([p.done for p in parts]),
        np.concatenate([p.nbytes for p in parts]),
        np.concatenate([p.sessions for p in parts]),
        np.concatenate([p.windows for p in parts]),
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
    windows = np.zeros(n, dtype=np.int64)
    if n == 0 or t0 >= t_end:
        if progress:
            progress(n)
        return TransferResult(done, nbytes, sessions, windows)
    w, contact = first_contact(fleet, ids, t0)
    pr = sc.protocol
    remaining = np.full(n, float(size))
    carry_on = np.zeros(n, dtype=bool)
    # The agent's request window (vehicle_agent.download): 0 = whole rest of the file;
    # halved by each retry that got nothing, doubled after GROW_AFTER requests in a row.
    req = np.zeros(n)
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
        cont = carry_on[act]  # the session carried on over the break (the agent's retries)
        req[act[~cont]] = 0.0  # a new session starts with whole-file requests
        overhead = np.where(first, float(pr.session_overhead_bytes), float(pr.resume_overhead_bytes))
        overhead[cont] = 0.0
        rtts = np.where(first, pr.setup_rtts, pr.resume_setup_rtts)
        rtts[cont] = 1.0  # the agent's retry asks for the rest of the stream at once
        setup = fleet.rtt_s[v] * rtts + overhead / rate
        avail = end - s - setup
        opened = avail > 0
        sessions[act] += opened & ~cont
        windows[act] += opened
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
            if pr.resume_chunk_bytes > 0:  # only whole messages of the stream survive a cut
                req[an] = _grown(req[an], can[cut] + drained, pr)
                grain = np.where(req[an] > 0, np.minimum(req[an], pr.resume_chunk_bytes), pr.resume_chunk_bytes)
                have = np.floor(have / grain) * grain
            remaining[an] = size - have
        else:
            remaining[an] = float(size)
        w.advance(an)
        contact[an] = w.start[an]
        carry_on[an] = False
        retrying = opened[cut]  # payload was flowing: the agent retries within its session
        if retrying.any() and pr.retry_attempts > 1:
            _retry_in_session(fleet, w, an[retrying], end[cut][retrying], contact, carry_on, req)
        act = an
    if progress:
        progress(n)
    return TransferResult(done, nbytes, sessions, windows)


MIN_REQUEST, MAX_REQUEST, GROW_AFTER = 16 * 1024, 4 * 1024 * 1024, 4  # vehicle_agent.download


def _grown(req: F64, got: F64, pr: Protocol) -> F64:
    """The request window after ``got`` bytes arrived in requests of a growing window."""
    req = req.copy()
    left = got.copy()
    for _ in range(10):  # 16 KiB doubles to 4 MiB in 8 steps
        stage = GROW_AFTER * req
        grow = (req > 0) & (left >= stage)
        if not grow.any():
            break
        left[grow] -= stage[grow]
        req[grow] = np.where(req[grow] < MAX_REQUEST, 2 * req[grow], 0.0)
    return req


def _retry_in_session(
    fleet: Fleet, w: Windows, pos: I64, cut_at: F64, contact: F64, carry_on: np.ndarray, req: F64
) -> None:
    """The agent's own retries after a cut (vehicle_agent.download.RetryPolicy).

    It notices the cut when the link's queue has drained, then retries after
    backoffs with equal jitter, min(cap, base * factor^(i-1)) * U(0.5, 1), and
    gives up after ``retry_attempts`` attempts without progress. The first retry
    that finds the link back continues the session (one round trip, no new
    metadata); after giving up, the next window opens a new session.
    """
    pr = fleet.scenario.protocol
    v = w.ids[pos]
    i = np.arange(1, pr.retry_attempts)
    delays = np.minimum(pr.retry_cap_s, pr.retry_base_s * pr.retry_factor ** (i - 1))
    jitter = rng.uniform(fleet.seed, "retry", v[:, None], (w.key[pos] * 64)[:, None] + i[None, :])
    tries = (cut_at + fleet.drain_s[v])[:, None] + np.cumsum(delays * (0.5 + 0.5 * jitter), axis=1)
    rows = np.arange(len(pos))
    while rows.size:
        p = pos[rows]
        start, end = w.start[p], w.end[p]
        k = (tries[rows] < start[:, None]).sum(axis=1)  # retries spent before this window opened
        left = k < tries.shape[1]
        t_try = tries[rows, np.minimum(k, tries.shape[1] - 1)]
        hit = left & (t_try < end)
        contact[p[hit]] = t_try[hit]
        carry_on[p[hit]] = True
        # each retry that found no link halved the next request (from one stream chunk)
        ph = p[hit]
        base = np.where(req[ph] > 0, req[ph], pr.resume_chunk_bytes)
        req[ph] = np.maximum(MIN_REQUEST, base / 2.0 ** k[hit])
        # given up (new session at this window's start, already set) or hit: settled
        later = left & ~hit & np.isfinite(start)
        w.advance(p[later])
        contact[p[later]] = w.start[p[later]]
        rows = rows[later]


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
