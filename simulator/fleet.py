"""A fleet as arrays, and each vehicle's connectivity windows.

Connectivity model (the assumptions, stated once):

* Time is cut into days. Within a day a vehicle alternates reachable spells and
  gaps. A reachable spell lasts Exp(1/on_mean + dropouts/h) and ends either with
  a drop-out (probability dropouts/h / that sum, a short gap of mean
  ``dropout_s``) or with the end of the drive / depot stay (a gap of mean
  ``off_mean``). With exponential spells this is exactly a drive interrupted by
  Poisson drop-outs.
* Each day starts from the stationary state (reachable with the long-run
  reachable share; a gap drawn as the residual of its kind). So a spell that
  crosses midnight becomes two sessions: one extra session set-up per day, a
  few round trips, which we accept for the ability to jump straight to any day
  (a wave that starts on day 9 does not walk nine days of windows).
* ``dormant_share`` of the vehicles are never reachable within the horizon
  (in the workshop, laid up, modem broken).

Everything is drawn from :mod:`simulator.rng`, a pure function of
(seed, vehicle, day, window number), so a vehicle's windows are the same for
every strategy and every wave start time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulator import rng
from simulator.scenario import Scenario

DAY_S = 86400.0
_PER_DAY = 1 << 14  # window index stride per day (>> windows a vehicle has in a day)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass
class Fleet:
    """Per-vehicle parameters of a scenario's fleet, as flat arrays."""

    scenario: Scenario
    n: int
    seed: int
    link_names: list[str]
    link_idx: npt.NDArray[np.int16]
    pattern_idx: npt.NDArray[np.int16]
    wave_idx: npt.NDArray[np.int8]
    install_fails: npt.NDArray[np.bool_]
    dormant: npt.NDArray[np.bool_]
    # per vehicle, from its link and pattern
    rate: F64  # mean goodput, bytes/s
    rtt_s: F64
    drain_s: F64
    jitter: F64
    m_on: F64  # mean reachable spell between events (drive end or drop-out)
    q_drop: F64  # chance a spell ends in a drop-out
    drop_mean: F64
    off_mean: F64
    p_on: F64  # stationary chance of being reachable
    w_drop_resid: F64  # chance that a gap we are in is a drop-out (length-biased)
    price_per_byte: F64

    def wave_members(self, i: int) -> I64:
        return np.flatnonzero(self.wave_idx == i)


def build_fleet(scenario: Scenario, n: int | None = None, seed: int | None = None) -> Fleet:
    """Assign links, patterns, waves and install outcomes to ``n`` vehicles."""
    n = scenario.vehicles if n is None else n
    seed = scenario.seed if seed is None else seed
    if n <= 0:
        raise ValueError(f"a fleet needs at least one vehicle, got {n}")
    ids = np.arange(n, dtype=np.uint64)
    groups = scenario.fleet
    cum = np.cumsum([g.share for g in groups])
    cum[-1] = 1.0
    grp = np.searchsorted(cum, rng.uniform(seed, "group", ids), side="right").astype(np.int16)
    link_names = sorted({g.link for g in groups})
    pattern_names = sorted({g.pattern for g in groups})
    g_link = np.array([link_names.index(g.link) for g in groups], dtype=np.int16)
    g_pat = np.array([pattern_names.index(g.pattern) for g in groups], dtype=np.int16)
    link_idx = g_link[grp]
    pattern_idx = g_pat[grp]

    # Waves: a seeded random order of the fleet, cut at the cumulative shares.
    order = np.argsort(rng.uniform(seed, "wave", ids), kind="stable")
    bounds = np.ceil(np.asarray(scenario.campaign.waves) * n).astype(np.int64)
    wave_of_rank = np.searchsorted(bounds, np.arange(n), side="right").astype(np.int8)
    wave_idx = np.empty(n, dtype=np.int8)
    wave_idx[order] = wave_of_rank

    links = [scenario.links[name] for name in link_names]
    pats = [scenario.patterns[name] for name in pattern_names]

    def per_link(f) -> F64:  # type: ignore[no-untyped-def]
        return np.array([f(lk) for lk in links], dtype=np.float64)[link_idx]

    def per_pat(f) -> F64:  # type: ignore[no-untyped-def]
        return np.array([f(p) for p in pats], dtype=np.float64)[pattern_idx]

    rate = per_link(lambda lk: lk.goodput_bytes_per_s())
    lam_drop = per_link(lambda lk: lk.dropouts_per_hour / 3600)
    drop_mean = per_link(lambda lk: max(lk.dropout_s, 1e-9))
    on_mean = per_pat(lambda p: p.on_mean_min * 60)
    off_mean = per_pat(lambda p: max(p.off_mean_min * 60, 1e-9))
    end_rate = 1 / on_mean + lam_drop
    m_on = 1 / end_rate
    q_drop = lam_drop / end_rate
    gap_mean = q_drop * drop_mean + (1 - q_drop) * off_mean
    p_on = m_on / (m_on + gap_mean)
    w_drop_resid = q_drop * drop_mean / gap_mean
    dormant = rng.uniform(seed, "dormant", ids) < per_pat(lambda p: p.dormant_share)
    install_fails = rng.uniform(seed, "install", ids) < scenario.campaign.install_failure_rate
    return Fleet(
        scenario=scenario,
        n=n,
        seed=seed,
        link_names=link_names,
        link_idx=link_idx,
        pattern_idx=pattern_idx,
        wave_idx=wave_idx,
        install_fails=install_fails,
        dormant=dormant,
        rate=rate,
        rtt_s=per_link(lambda lk: lk.rtt_ms / 1000),
        drain_s=per_link(lambda lk: lk.drain_s),
        jitter=per_link(lambda lk: lk.jitter),
        m_on=m_on,
        q_drop=q_drop,
        drop_mean=drop_mean,
        off_mean=off_mean,
        p_on=p_on,
        w_drop_resid=w_drop_resid,
        price_per_byte=per_link(lambda lk: lk.price_per_gb / 1e9),
    )


class Windows:
    """The current reachable window of each of a set of vehicles.

    ``start`` and ``end`` are the window's bounds (``end`` clipped to the day's
    end); ``key`` identifies the window for draws tied to it (its bandwidth).
    """

    def __init__(self, fleet: Fleet, ids: I64) -> None:
        self.f = fleet
        self.ids = ids
        self.day = np.zeros(len(ids), dtype=np.int64)
        self.j = np.zeros(len(ids), dtype=np.int64)
        self.start = np.zeros(len(ids))
        self.dur = np.zeros(len(ids))

    @property
    def end(self) -> F64:
        # a dormant vehicle's window starts (and ends) at infinity
        return np.maximum(np.minimum(self.start + self.dur, (self.day + 1) * DAY_S), self.start)

    @property
    def key(self) -> I64:
        return self.day * _PER_DAY + self.j

    def _first_of_day(self, m: I64) -> None:
        """Window 0 of day ``self.day[m]``: start from the stationary state."""
        f, v = self.f, self.ids[m]
        k = self.day[m] * _PER_DAY
        online = rng.uniform(f.seed, "start", v, k) < f.p_on[v]
        drop = rng.uniform(f.seed, "gapkind", v, k) < f.w_drop_resid[v]
        gap = rng.exponential(f.seed, "gap", v, k, np.where(drop, f.drop_mean[v], f.off_mean[v]))
        self.j[m] = 0
        self.start[m] = self.day[m] * DAY_S + np.where(online, 0.0, gap)
        self.dur[m] = rng.exponential(f.seed, "on", v, k, f.m_on[v])
        self.start[m] = np.where(f.dormant[v], np.inf, self.start[m])

    def _roll(self, m: I64) -> None:
        """A window that starts after its day's end is replaced by the next day's first.

        Each day's windows are a function of (vehicle, day) alone, so the windows
        seen by a vehicle do not depend on where the walk through them began.
        """
        while m.size:
            m = m[(self.start[m] >= (self.day[m] + 1) * DAY_S) & np.isfinite(self.start[m])]
            if m.size:
                self.day[m] += 1
                self._first_of_day(m)

    def seek(self, t: float) -> None:
        """Position every vehicle on its first window that ends after ``t``."""
        self.day[:] = int(t // DAY_S)
        every = np.arange(len(self.ids))
        self._first_of_day(every)
        self._roll(every)
        while True:
            m = np.flatnonzero((self.end <= t) & np.isfinite(self.start))
            if m.size == 0:
                return
            self.advance(m)

    def advance(self, m: I64) -> None:
        """Move the vehicles ``m`` (positions) to their next window."""
        if m.size == 0:
            return
        f, v = self.f, self.ids[m]
        k = self.day[m] * _PER_DAY + self.j[m] + 1
        drop = rng.uniform(f.seed, "gapkind", v, k) < f.q_drop[v]
        gap = rng.exponential(f.seed, "gap", v, k, np.where(drop, f.drop_mean[v], f.off_mean[v]))
        self.start[m] = self.start[m] + self.dur[m] + gap
        self.dur[m] = rng.exponential(f.seed, "on", v, k, f.m_on[v])
        self.j[m] += 1
        self._roll(m)
