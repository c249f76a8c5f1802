"""The rollout engine: downloads over connectivity windows, waves, abort.

Vectorised over vehicles: every loop below runs over *windows*, and each step
handles all vehicles still concerned at once with numpy. Given the time it
starts and the share of its cell it gets, a vehicle's download is independent
of the others'; the couplings between vehicles (shared cells, the registry's
limit on concurrent downloads) and the campaign's waves are played on top of
it in :mod:`simulator.campaign`.

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
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from simulator import rng
from simulator.fleet import DAY_S, F64, I64, Fleet, Windows
from simulator.scenario import MSS_BYTES, Protocol

log = logging.getLogger(__name__)

CHUNK = 1 << 17  # vehicles per vectorised pass: bounds memory, paces the progress bar

Progress = Callable[[int], None]


@dataclass
class TransferResult:
    done: F64  # when the last payload byte arrived; inf if not by t_end
    nbytes: F64  # bytes on the wire by then (payload and session overhead)
    sessions: I64  # sessions that got past set-up
    windows: I64  # reachable windows in which payload flowed (a session may span several)
    cost: F64 = field(
        default_factory=lambda: np.zeros(0)
    )  # USD, at the price of the link each byte came over
    cell_bytes: F64 = field(
        default_factory=lambda: np.zeros(0)
    )  # bytes over the cellular link (shared cells)
    contact: F64 = field(
        default_factory=lambda: np.zeros(0)
    )  # when the vehicle first heard of the update

    @staticmethod
    def concat(parts: list[TransferResult]) -> TransferResult:
        return TransferResult(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))


_FIELDS = ("done", "nbytes", "sessions", "windows", "cost", "cell_bytes", "contact")


def transfer(
    fleet: Fleet,
    ids: I64,
    t0: float | F64,
    size: float,
    t_end: float,
    *,
    progress: Progress | None = None,
    rate_scale: F64 | None = None,
) -> TransferResult:
    """Download ``size`` bytes to vehicles ``ids`` starting at ``t0`` (one time, or one per vehicle), stopping at ``t_end``.

    ``rate_scale`` (per vehicle of ``ids``) scales the cellular rate: the share of
    its cell a vehicle gets when the fleet loads it (:func:`cell_shares`).
    """
    t0a = np.broadcast_to(np.asarray(t0, dtype=np.float64), ids.shape)
    scale = np.ones(len(ids)) if rate_scale is None else rate_scale
    parts = [
        _transfer(
            fleet,
            ids[i : i + CHUNK],
            t0a[i : i + CHUNK],
            size,
            t_end,
            progress,
            scale[i : i + CHUNK],
        )
        for i in range(0, len(ids), CHUNK)
    ]
    if not parts:
        return TransferResult(
            done=np.zeros(0),
            nbytes=np.zeros(0),
            sessions=np.zeros(0, dtype=np.int64),
            windows=np.zeros(0, dtype=np.int64),
            cost=np.zeros(0),
            cell_bytes=np.zeros(0),
            contact=np.zeros(0),
        )
    return TransferResult.concat(parts)


def slow_start_delay(remaining: F64, rate: F64, rtt: F64, iw_bytes: float) -> F64:
    """Extra time a new TCP connection needs for ``remaining`` bytes, against the full rate.

    The congestion window starts at ``iw_bytes`` and doubles every round trip
    (RFC 5681) until it covers the path's bandwidth-delay product; bytes sent in
    r rounds: iw (2^r - 1).
    """
    bdp = rate * rtt
    with np.errstate(divide="ignore", invalid="ignore"):
        r_full = np.ceil(np.log2(np.maximum(bdp / iw_bytes, 1.0)))
        ss_bytes = iw_bytes * (2.0**r_full - 1)
        r_need = np.ceil(np.log2(remaining / iw_bytes + 1.0))
        short = remaining <= ss_bytes
        delay = np.where(short, r_need * rtt - remaining / rate, r_full * rtt - ss_bytes / rate)
    return np.where(rtt > 0, np.maximum(delay, 0.0), 0.0)


def opens(fleet: Fleet, w: Windows, pos: I64) -> F64:
    """When a vehicle talks to the registry in its window ``pos``: at its start, after a reconnect.

    A window that opens at a day's start is, in most cases, a vehicle that was
    reachable already (each day restarts from the stationary state): it checks in
    at its poll phase, not all at once at midnight of the model.
    """
    start = w.start[pos]
    at_day = np.isfinite(start) & (start == w.day[pos] * DAY_S)
    if not at_day.any():
        return start.copy()
    phase = rng.uniform(fleet.seed, "poll", w.ids[pos], w.key[pos])
    # within the window, so that the session still opens in it
    polled = np.minimum(
        start + phase * fleet.scenario.campaign.poll_min * 60, (start + w.end[pos]) / 2
    )
    return np.where(at_day, polled, start)


def first_contact(fleet: Fleet, ids: I64, t0: float | F64) -> tuple[Windows, F64]:
    """When each vehicle first hears of a wave that starts at ``t0``, and its window then.

    A vehicle reachable at ``t0`` learns of it at its next check-in (a uniform
    phase within ``poll_min``), one that is not when its next window opens.
    """
    w = Windows(fleet, ids)
    t0 = np.broadcast_to(np.asarray(t0, dtype=np.float64), ids.shape)
    w.seek(t0)
    contact = opens(fleet, w, np.arange(len(ids)))
    inside = np.flatnonzero(
        w.start <= t0
    )  # reachable already (a window opening at t0 was open before it)
    if inside.size:
        phase = rng.uniform(fleet.seed, "poll", ids[inside], t0[inside].astype(np.int64))
        contact[inside] = t0[inside] + phase * fleet.scenario.campaign.poll_min * 60
        late = inside[contact[inside] >= w.end[inside]]
        w.advance(late)
        contact[late] = opens(fleet, w, late)
    return w, contact


def _transfer(
    fleet: Fleet,
    ids: I64,
    t0: F64,
    size: float,
    t_end: float,
    progress: Progress | None,
    scale: F64,
) -> TransferResult:
    sc = fleet.scenario
    n = len(ids)
    done = np.full(n, np.inf)
    nbytes = np.zeros(n)
    cost = np.zeros(n)
    cell_bytes = np.zeros(n)
    sessions = np.zeros(n, dtype=np.int64)
    windows = np.zeros(n, dtype=np.int64)
    if n == 0 or np.all(t0 >= t_end):
        if progress:
            progress(n)
        return TransferResult(done, nbytes, sessions, windows, cost, cell_bytes, np.full(n, np.inf))
    w, contact = first_contact(fleet, ids, t0)
    first_heard = contact.copy()
    pr = sc.protocol
    iw = pr.initial_window_segments * MSS_BYTES if sc.model.slow_start else 0.0
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
        wifi = w.kind[act] == 1
        jitter = np.where(wifi, fleet.wifi_jitter[v], fleet.jitter[v])
        base = np.where(wifi, fleet.wifi_rate[v], fleet.rate[v] * scale[act])
        rate = base * rng.lognormal_unit_mean(fleet.seed, "rate", v, w.key[act], jitter)
        rtt = np.where(wifi, fleet.wifi_rtt_s[v], fleet.rtt_s[v])
        price = np.where(wifi, fleet.wifi_price_per_byte[v], fleet.price_per_byte[v])
        before = nbytes[act].copy()
        first = sessions[act] == 0
        cont = carry_on[act]  # the session carried on over the break (the agent's retries)
        req[act[~cont]] = 0.0  # a new session starts with whole-file requests
        overhead = np.where(
            first, float(pr.session_overhead_bytes), float(pr.resume_overhead_bytes)
        )
        overhead[cont] = 0.0
        rtts = np.where(first, pr.setup_rtts, pr.resume_setup_rtts)
        rtts[cont] = 1.0  # the agent's retry asks for the rest of the stream at once
        fixed = np.where(first, pr.setup_s, pr.resume_setup_s)
        fixed[cont] = 0.0
        setup = fixed + rtt * rtts + overhead / rate
        if iw:  # every window opens a new TCP connection, which starts slow
            setup = setup + slow_start_delay(remaining[act], rate, rtt, iw)
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
        drain = np.where(
            opened & (end < t_end),
            np.where(wifi, fleet.wifi_drain_s[v], fleet.drain_s[v]) * rate,
            0.0,
        )
        tail = ~fin & (can + drain >= remaining[act])
        at = act[tail]
        done[at] = end[tail] + (remaining[at] - can[tail]) / rate[tail]
        nbytes[at] += remaining[at]
        cut = ~fin & ~tail
        an = act[cut]
        drained = drain[cut]
        nbytes[an] += can[cut] + drained
        got = nbytes[act] - before
        cost[act] += got * price
        cell_bytes[act] += np.where(wifi, 0.0, got)
        if sc.campaign.resumable:
            have = size - remaining[an] + can[cut] + drained
            if pr.resume_chunk_bytes > 0:  # only whole messages of the stream survive a cut
                req[an] = _grown(req[an], can[cut] + drained, pr)
                grain = np.where(
                    req[an] > 0, np.minimum(req[an], pr.resume_chunk_bytes), pr.resume_chunk_bytes
                )
                have = np.floor(have / grain) * grain
            remaining[an] = size - have
        else:
            remaining[an] = float(size)
        w.advance(an)
        contact[an] = opens(fleet, w, an)
        carry_on[an] = False
        retrying = opened[cut]  # payload was flowing: the agent retries within its session
        if retrying.any() and pr.retry_attempts > 1:
            _retry_in_session(fleet, w, an[retrying], end[cut][retrying], contact, carry_on, req)
        act = an
    if progress:
        progress(n)
    return TransferResult(done, nbytes, sessions, windows, cost, cell_bytes, first_heard)


# vehicle_agent.download: MIN_WINDOW, MAX_WINDOW, GROW_AFTER, FIRST_WINDOW (halved after a retry
# that got nothing while the request was the whole rest of the file)
MIN_REQUEST, MAX_REQUEST, GROW_AFTER, FIRST_REQUEST = 16 * 1024, 4 * 1024 * 1024, 4, 256 * 1024


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


def _reconnects(pr: Protocol) -> F64:
    """When, from the start of a retry, gRPC dials the registry while the link is down.

    The retry's call waits for a connection (``wait_for_ready``); gRPC dials at once, then
    after backoffs of ``reconnect_base_s`` growing by ``reconnect_factor`` up to
    ``reconnect_cap_s`` (vehicle_agent.transport.RECONNECT_BACKOFF_MS; gRPC's own jitter
    of +-20% left out), until the stall watchdog gives the retry up.
    """
    out, t, d = [0.0], 0.0, pr.reconnect_base_s
    while d > 0 and t + d < pr.stall_timeout_s:
        t += d
        out.append(t)
        d = min(pr.reconnect_cap_s, d * pr.reconnect_factor)
    return np.asarray(out)


def _retry_in_session(
    fleet: Fleet, w: Windows, pos: I64, cut_at: F64, contact: F64, carry_on: np.ndarray, req: F64
) -> None:
    """The agent's own retries after a cut (vehicle_agent.download.RetryPolicy).

    It notices the cut when the link's queue has drained, then retries after
    backoffs with equal jitter, min(cap, base * factor^(i-1)) * U(0.5, 1), and
    gives up after ``retry_attempts`` attempts without progress. A retry that
    finds the link down waits for it (the call is ``wait_for_ready``): it
    connects at gRPC's first dial inside the next window, unless the stall
    watchdog (``stall_timeout_s``) gives it up first; the next retry follows
    that after its backoff. A retry that connects continues the session (one
    round trip, no new metadata); after giving up, the next window opens a new
    session.
    """
    pr = fleet.scenario.protocol
    v = w.ids[pos]
    i = np.arange(1, pr.retry_attempts)
    delays = np.minimum(pr.retry_cap_s, pr.retry_base_s * pr.retry_factor ** (i - 1))
    jitter = rng.uniform(fleet.seed, "retry", v[:, None], (w.key[pos] * 64)[:, None] + i[None, :])
    pause = delays * (0.5 + 0.5 * jitter)
    dials = _reconnects(pr)
    tries = pause.shape[1]
    t = cut_at + fleet.drain_s[v] + pause[:, 0]  # when the current retry starts
    failed = np.zeros(len(pos), dtype=np.int64)  # retries that timed out so far
    rows = np.arange(len(pos))
    while rows.size:
        p = pos[rows]
        a = t[rows]
        start, end = w.start[p], w.end[p]
        # a window that closed before the retry started (or before it could dial) is passed
        gone = (end <= a) & np.isfinite(start)
        w.advance(p[gone])
        wait = start - a  # > 0: the link is down when the retry starts
        k = np.searchsorted(dials, np.maximum(wait, 0.0))  # the first dial inside the window
        dial = a + dials[np.minimum(k, len(dials) - 1)]
        reach = ~gone & np.isfinite(start) & (k < len(dials))
        hit = reach & (dial < end)
        missed = reach & ~hit  # a short window passed between two dials: wait on for the next
        if missed.any():
            w.advance(p[missed])
        ph, rh = p[hit], rows[hit]
        contact[ph] = np.maximum(dial[hit], a[hit])
        carry_on[ph] = True
        # each retry that got nothing halved the next request (the whole rest of the file: 256 KiB)
        n = failed[rh]
        base = np.where(req[ph] > 0, req[ph], float(FIRST_REQUEST))
        req[ph] = np.where(n > 0, np.maximum(MIN_REQUEST, base / 2.0**n), req[ph])
        # the watchdog gave this retry up: the next one after its backoff, or the session ends
        out = ~gone & ~hit & ~missed & np.isfinite(start)
        ro = rows[out]
        failed[ro] += 1
        over = failed[ro] >= tries
        nxt = ro[~over]
        t[nxt] = t[nxt] + pr.stall_timeout_s + pause[nxt, failed[nxt]]
        gave_up = ro[over]
        quit_at = t[gave_up] + pr.stall_timeout_s
        while gave_up.size:  # a new session in the first window still open when it gave up
            pg = pos[gave_up]
            past = (w.end[pg] <= quit_at) & np.isfinite(w.start[pg])
            w.advance(pg[past])
            gave_up, quit_at = gave_up[past], quit_at[past]
        pq = pos[ro[over]]
        contact[pq] = np.maximum(opens(fleet, w, pq), t[ro[over]] + pr.stall_timeout_s)
        none = ~gone & ~np.isfinite(start)  # no window left (a dormant vehicle)
        contact[p[none]] = opens(fleet, w, p[none])
        rows = rows[gone | missed | (out & ~np.isin(rows, ro[over]))]
