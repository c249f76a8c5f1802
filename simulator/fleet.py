"""A fleet as arrays, and each vehicle's connectivity windows.

Long file: the connectivity model and the vectorised window sampler share their arrays and
are read together when checking an assumption.

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
* Diurnal patterns (``Pattern.hourly``): the gap after a drive ends at the next
  drive start of a Poisson process whose rate follows the hour of the week
  (inverted through its cumulative rate, so one uniform draw gives one gap, as in
  the flat model); the first window of a day is reachable with the chance that a
  drive is under way at that hour. A drive that ends in the pattern's home hours,
  for a vehicle with home Wi-Fi, is followed at once by a Wi-Fi window
  (``kind`` 1: the home link's rate, RTT and price); any other drive end keeps
  the cellular modem awake ``awake_after_min`` longer.

Everything is drawn from :mod:`simulator.rng`, a pure function of
(seed, vehicle, day, window number), so a vehicle's windows are the same for
every strategy and every wave start time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulator import rng
from simulator.scenario import LinkProfile, Pattern, Scenario

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
    # Diurnal connectivity (all zeros / False for flat patterns)
    diurnal: npt.NDArray[np.bool_]
    awake_s: F64
    has_wifi: npt.NDArray[np.bool_]
    wifi_s: F64
    home_from_h: F64
    home_to_h: F64
    wifi_rate: F64
    wifi_rtt_s: F64
    wifi_drain_s: F64
    wifi_jitter: F64
    wifi_price_per_byte: F64
    clock0_s: float  # clock time of t = 0, seconds after Monday 00:00
    hazard: WeekHazard
    # Cells shared by the fleet (cell = -1: not modelled)
    cell: I64
    cell_free_bps: F64  # bytes/s of the cell left by other subscribers
    hardware_idx: npt.NDArray[np.int8]

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

    def per_link(f: Callable[[LinkProfile], float]) -> F64:
        return np.array([f(lk) for lk in links], dtype=np.float64)[link_idx]

    def per_pat(f: Callable[[Pattern], float]) -> F64:
        return np.array([f(p) for p in pats], dtype=np.float64)[pattern_idx]

    rate = per_link(lambda lk: lk.goodput_bytes_per_s())
    lam_drop = per_link(lambda lk: lk.dropouts_per_hour / 3600)
    drop_mean = per_link(lambda lk: max(lk.dropout_s, 1e-9))
    on_mean = per_pat(lambda p: p.on_mean_min * 60)
    off_mean = per_pat(lambda p: max(p.off_mean_min * 60, 1e-9))
    end_rate = 1 / on_mean + lam_drop
    m_on = 1 / end_rate
    q_drop = lam_drop / end_rate
    dormant = rng.uniform(seed, "dormant", ids) < per_pat(lambda p: p.dormant_share)
    u_install = rng.uniform(seed, "install", ids)
    if scenario.hardware:
        # Variants drawn apart from the install outcome, so a bad variant fails together.
        hw_cum = np.cumsum([h.share for h in scenario.hardware])
        hw_cum[-1] = 1.0
        hardware_idx = np.searchsorted(
            hw_cum, rng.uniform(seed, "hardware", ids), side="right"
        ).astype(np.int8)
        install_fails = (
            u_install < np.array([h.install_failure_rate for h in scenario.hardware])[hardware_idx]
        )
    else:
        hardware_idx = np.zeros(n, dtype=np.int8)
        install_fails = u_install < scenario.campaign.install_failure_rate

    diurnal_on = scenario.model.diurnal
    is_diurnal = per_pat(lambda p: float(p.diurnal and diurnal_on)) > 0
    # Without the diurnal model a diurnal pattern becomes flat with the same daily means.
    flat_off = per_pat(
        lambda p: (
            p.off_mean_min * 60
            if not p.diurnal
            else max(1440 / p.drives_per_day - p.on_mean_min - p.awake_after_min, 1.0) * 60
        )
    )
    off_mean = np.maximum(
        flat_off, 1e-9
    )  # for diurnal patterns: the mean gap, used at a day's start
    gap_mean = q_drop * drop_mean + (1 - q_drop) * off_mean
    p_on = m_on / (m_on + gap_mean)
    w_drop_resid = q_drop * drop_mean / gap_mean
    awake_s = np.where(is_diurnal, per_pat(lambda p: p.awake_after_min * 60), 0.0)
    has_wifi = is_diurnal & (rng.uniform(seed, "wifi", ids) < per_pat(lambda p: p.home_wifi_share))
    home = [
        scenario.links.get(p.home_wifi_link) if p.diurnal and p.home_wifi_share > 0 else None
        for p in pats
    ]

    def per_home(f: Callable[[LinkProfile], float], default: float) -> F64:
        return np.array([f(h) if h is not None else default for h in home], dtype=np.float64)[
            pattern_idx
        ]

    cell, cell_free = _cells(scenario, seed, ids, link_idx, links)
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
        diurnal=is_diurnal,
        awake_s=awake_s,
        has_wifi=has_wifi,
        wifi_s=per_pat(lambda p: p.home_wifi_min * 60),
        home_from_h=per_pat(lambda p: p.home_hours[0]),
        home_to_h=per_pat(lambda p: p.home_hours[1]),
        wifi_rate=per_home(lambda h: h.goodput_bytes_per_s(), 1.0),
        wifi_rtt_s=per_home(lambda h: h.rtt_ms / 1000, 0.0),
        wifi_drain_s=per_home(lambda h: h.drain_s, 0.0),
        wifi_jitter=per_home(lambda h: h.jitter, 0.0),
        wifi_price_per_byte=per_home(lambda h: h.price_per_gb / 1e9, 0.0),
        clock0_s=scenario.campaign.start_hour * 3600.0,
        hazard=WeekHazard(
            [p.week_rates() if p.diurnal else [1.0 / WEEK_S] * 168 for p in pats], pattern_idx
        ),
        cell=cell,
        cell_free_bps=cell_free,
        hardware_idx=hardware_idx,
    )


WEEK_S = 7 * DAY_S


class WeekHazard:
    """Cumulative drive-start rate over the week, per pattern, and its inverse.

    Patterns are laid end to end on one axis (pattern p at offset p * 2 weeks in
    time and p * ``big`` in cumulative rate) so that one ``np.interp`` serves a
    mixed set of vehicles.
    """

    def __init__(self, rates: list[list[float]], pattern_idx: npt.NDArray[np.int16]) -> None:
        r = np.maximum(np.asarray(rates, dtype=np.float64), 1e-9)  # strictly increasing: invertible
        cum = np.concatenate([np.zeros((len(r), 1)), np.cumsum(r * 3600.0, axis=1)], axis=1)
        self.week = cum[:, -1]
        self.big = float(2 * self.week.max() + 1)
        edges = np.arange(169) * 3600.0
        self.t_axis = np.concatenate([p * 2 * WEEK_S + edges for p in range(len(r))])
        self.l_axis = np.concatenate([p * self.big + cum[p] for p in range(len(r))])
        self.rate = r
        self.pattern_idx = pattern_idx

    def cum(self, v: I64, clock: F64) -> F64:
        p = self.pattern_idx[v].astype(np.int64)
        k = np.floor(clock / WEEK_S)
        x = clock - k * WEEK_S + p * 2 * WEEK_S
        return k * self.week[p] + np.interp(x, self.t_axis, self.l_axis) - p * self.big

    def inverse(self, v: I64, y: F64) -> F64:
        p = self.pattern_idx[v].astype(np.int64)
        wk = self.week[p]
        k = np.floor(y / wk)
        x = y - k * wk + p * self.big
        return k * WEEK_S + np.interp(x, self.l_axis, self.t_axis) - p * 2 * WEEK_S

    def rate_at(self, v: I64, clock: F64) -> F64:
        hour = (np.floor(clock / 3600.0) % 168).astype(np.int64)
        return self.rate[self.pattern_idx[v].astype(np.int64), hour]


def _cells(
    scenario: Scenario,
    seed: int,
    ids: npt.NDArray[np.uint64],
    link_idx: npt.NDArray[np.int16],
    links: list[LinkProfile],
) -> tuple[I64, F64]:
    """Each vehicle's cell on a link that models shared cells, and that cell's spare capacity."""
    cell = np.full(len(ids), -1, dtype=np.int64)
    free = np.full(len(ids), np.inf)
    if not scenario.model.cell_sharing:
        return cell, free
    u = rng.uniform(seed, "cell", ids)
    offset = 0
    for i, lk in enumerate(links):
        if lk.cell_capacity_mbps <= 0 or lk.fleet_per_cell <= 0:
            continue
        m = link_idx == i
        cells = max(1, round(m.sum() / lk.fleet_per_cell))
        cell[m] = offset + np.minimum((u[m] * cells).astype(np.int64), cells - 1)
        free[m] = lk.cell_capacity_mbps * 1e6 / 8 * lk.efficiency * (1 - lk.cell_background)
        offset += cells
    return cell, free


class Windows:
    """The current reachable window of each of a set of vehicles.

    ``start`` and ``end`` are the window's bounds (``end`` clipped to the day's
    end); ``key`` identifies the window for draws tied to it (its bandwidth);
    ``kind`` is 0 for the vehicle's cellular link, 1 for its home Wi-Fi.
    """

    def __init__(self, fleet: Fleet, ids: I64) -> None:
        self.f = fleet
        self.ids = ids
        n = len(ids)
        self.day = np.zeros(n, dtype=np.int64)
        self.j = np.zeros(n, dtype=np.int64)
        self.start = np.zeros(n)
        self.dur = np.zeros(n)
        self.kind = np.zeros(n, dtype=np.int8)
        self.to_wifi = np.zeros(n, dtype=bool)  # this drive ends at home, on Wi-Fi

    @property
    def end(self) -> F64:
        # a dormant vehicle's window starts (and ends) at infinity
        return np.maximum(np.minimum(self.start + self.dur, (self.day + 1) * DAY_S), self.start)

    @property
    def key(self) -> I64:
        return self.day * _PER_DAY + self.j

    def _spell(self, m: I64, k: I64) -> None:
        """Length of a cellular spell starting now, with the diurnal tail it ends with."""
        f, v = self.f, self.ids[m]
        self.dur[m] = rng.exponential(f.seed, "on", v, k, f.m_on[v])
        self.kind[m] = 0
        self.to_wifi[m] = False
        d = f.diurnal[v]
        if not d.any():
            return
        # Whether this spell ends the drive (not a drop-out) is the next gap's kind draw.
        ends_drive = d & (rng.uniform(f.seed, "gapkind", v, k + 1) >= f.q_drop[v])
        hour = ((self.start[m] + self.dur[m] + f.clock0_s) / 3600.0) % 24
        lo, hi = f.home_from_h[v], f.home_to_h[v]
        at_home = np.where(lo <= hi, (hour >= lo) & (hour < hi), (hour >= lo) | (hour < hi))
        wifi = ends_drive & at_home & f.has_wifi[v]
        self.to_wifi[m] = wifi
        self.dur[m] += np.where(ends_drive & ~wifi, f.awake_s[v], 0.0)

    def _next_drive(self, m: I64, t: F64, e: F64) -> F64:
        """When the next drive starts after ``t``, from a unit exponential ``e``."""
        f, v = self.f, self.ids[m]
        clock = t + f.clock0_s
        return f.hazard.inverse(v, f.hazard.cum(v, clock) + e) - f.clock0_s

    def _first_of_day(self, m: I64) -> None:
        """Window 0 of day ``self.day[m]``: start from the stationary state."""
        f, v = self.f, self.ids[m]
        k = self.day[m] * _PER_DAY
        day0 = self.day[m] * np.float64(DAY_S)  # a float64 scalar: the stubs then know it is F64
        p_on = f.p_on[v]
        d = f.diurnal[v]
        if d.any():  # the chance a drive is under way at this hour
            lam = f.hazard.rate_at(v, day0 + f.clock0_s)
            p_on = np.where(d, np.minimum(0.9, lam * (f.m_on[v] + f.awake_s[v])), p_on)
        online = rng.uniform(f.seed, "start", v, k) < p_on
        drop = rng.uniform(f.seed, "gapkind", v, k) < f.w_drop_resid[v]
        e = -np.log(rng.uniform(f.seed, "gap", v, k))
        gap = e * np.where(drop, f.drop_mean[v], f.off_mean[v])
        if d.any():
            gap = np.where(d & ~drop, self._next_drive(m, day0, e) - day0, gap)
        self.j[m] = 0
        self.start[m] = day0 + np.where(online, 0.0, gap)
        self._spell(m, k)
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

    def seek(self, t: float | F64) -> None:
        """Position every vehicle on its first window that ends after ``t`` (one time, or one per vehicle)."""
        t = np.broadcast_to(np.asarray(t, dtype=np.float64), self.start.shape)
        self.day[:] = (t // DAY_S).astype(np.int64)
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
        was_end = self.start[m] + self.dur[m]
        wifi = self.to_wifi[m]
        drop = (rng.uniform(f.seed, "gapkind", v, k) < f.q_drop[v]) & (self.kind[m] == 0)
        e = -np.log(rng.uniform(f.seed, "gap", v, k))
        gap = e * np.where(drop, f.drop_mean[v], f.off_mean[v])
        d = f.diurnal[v] & ~drop
        if d.any():
            gap = np.where(d, self._next_drive(m, was_end, e) - was_end, gap)
        self.start[m] = was_end + np.where(wifi, 0.0, gap)
        self.j[m] += 1
        self._spell(m, k)
        # The drive ended at home: the Wi-Fi window follows it at once.
        if wifi.any():
            w = m[wifi]
            self.dur[w] = f.wifi_s[self.ids[w]]
            self.kind[w] = 1
            self.to_wifi[w] = False
        self._roll(m)
