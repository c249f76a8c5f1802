"""The built-in link profiles and connectivity patterns, each figure with where it comes from.

A figure either cites a public source (with its year) or says plainly that it is
a guess (``guess: ...``) or a setting chosen for a check (``setting: ...``).
Scenario files cite their own overrides in a ``[sources]`` table; a figure a
scenario changes loses the built-in citation (see :func:`missing_sources`).
"""

from __future__ import annotations

import re
from typing import Any

# FHWA, Highway Statistics 2006, Table NT-3 "Number of Vehicle Trips by Time of Day"
# (base: 2001 NHTS), trips starting in each clock hour from midnight.
NHTS_2001_WEDNESDAY = (
    147, 82, 83, 36, 249, 639, 1607, 3893, 2994, 2294, 2600, 2967,
    3166, 3032, 3321, 3888, 3959, 4377, 3746, 2819, 2061, 1559, 783, 381,
)  # fmt: skip
NHTS_2001_SATURDAY = (
    432, 185, 117, 62, 185, 270, 558, 1147, 2088, 2951, 4096, 4420,
    4561, 4088, 4256, 4037, 3823, 3536, 3626, 2665, 2206, 1925, 1069, 772,
)  # fmt: skip

NT3 = "FHWA Highway Statistics 2006, Table NT-3, vehicle trips by start hour (2001 NHTS): Wednesday"
ADS = "AAA Foundation for Traffic Safety, American Driving Survey 2016-2017 (research brief, 2019): 51 min and 2.2 driving trips a day per driver"
TRIP_MIN = "23.3 min a trip: FHWA Highway Statistics 2006, Table NT-3 (2001 NHTS) average vehicle-trip travel time 23.32 min; ADS 2016-2017 gives 51 min / 2.2 trips = 23 min"
GEO = "guess: 700 ms in all, above the physical floor of a geostationary hop (35,786 km up and down, twice: at least 477 ms at the speed of light) for terminal, gateway and Internet delay"
ITU = "ITU-R M.2134 (2008): IMT-Advanced downlink cell spectral efficiency 2.2 bit/s/Hz/cell (base coverage urban) x a 20 MHz carrier = 44 Mbit/s"
MATHIS = "Mathis, Semke, Mahdavi, Ott, 'The macroscopic behavior of the TCP congestion avoidance algorithm', CCR 1997"

# Built-in profiles as the arguments of simulator.scenario.LinkProfile / Pattern (built there:
# this module holds figures and their sources only, and imports nothing of the simulator).
Args = tuple[tuple[Any, ...], dict[str, Any]]
BUILTIN_LINK_ARGS: tuple[Args, ...] = (
    (("depot_wifi", 50.0, 20.0, 0.0005, 0.2, 10.0, 0.0, 0.3), {}),
    (("home_wifi", 20.0, 30.0, 0.001, 0.5, 10.0, 0.0, 0.5), {}),
    (
        ("lte", 20.0, 60.0, 0.001, 1.0, 15.0, 2.0, 0.5),
        {"cell_capacity_mbps": 44.0, "cell_background": 0.5, "fleet_per_cell": 20.0},
    ),
    (
        ("lte_congested", 4.0, 150.0, 0.005, 4.0, 30.0, 2.0, 0.6),
        {"cell_capacity_mbps": 44.0, "cell_background": 0.85, "fleet_per_cell": 20.0},
    ),
    (("3g", 1.5, 250.0, 0.005, 4.0, 45.0, 3.0, 0.5), {}),
    (("satellite", 1.0, 700.0, 0.001, 6.0, 60.0, 10.0, 0.3), {}),
)

BUILTIN_PATTERN_ARGS: tuple[Args, ...] = (
    (
        ("commuter", 23.3, 0.0, 0.003),
        {
            "hourly": NHTS_2001_WEDNESDAY,
            "weekend_hourly": NHTS_2001_SATURDAY,
            "drives_per_day": 2.2,
            "awake_after_min": 5.0,
            "home_wifi_share": 0.3,
            "home_wifi_min": 30.0,
        },
    ),
    (("taxi", 480.0, 240.0, 0.005), {}),  # on shift most of the day
    (("depot_nightly", 600.0, 840.0, 0.003), {}),  # reachable parked at the depot
    (("long_haul", 600.0, 120.0, 0.005), {}),  # trucks on the road, stops unreachable
    (("always_on", 1e9, 1e-9, 0.0), {}),
)

_GUESS_PRICE = "guess: a typical IoT / fleet data plan price; replace with the fleet's contract"
_GUESS_LOSS = (
    "guess: residual loss after link-layer retransmission; it caps TCP through Mathis et al. 1997"
)
_GUESS_DROP = "guess: hand-overs and coverage holes while driving; no drive-test source used"
_GUESS_JITTER = "guess: log-normal spread of the rate between windows (cell load, signal)"

BUILTIN_SOURCES: dict[str, str] = {
    # Wi-Fi at a depot or at home
    "links.depot_wifi.bandwidth_mbps": "guess: a depot access point shared by the parked vehicles",
    "links.depot_wifi.rtt_ms": "guess: wired broadband behind a Wi-Fi hop",
    "links.depot_wifi.loss": _GUESS_LOSS,
    "links.depot_wifi.dropouts_per_hour": "guess: a parked vehicle at the edge of the depot's Wi-Fi",
    "links.depot_wifi.dropout_s": "guess",
    "links.depot_wifi.price_per_gb": "guess: the depot's own line, no per-byte price",
    "links.depot_wifi.jitter": _GUESS_JITTER,
    "links.home_wifi.bandwidth_mbps": "guess: residential broadband reached through a wall from the drive or garage",
    "links.home_wifi.rtt_ms": "guess: residential broadband behind a Wi-Fi hop",
    "links.home_wifi.loss": _GUESS_LOSS,
    "links.home_wifi.dropouts_per_hour": "guess",
    "links.home_wifi.dropout_s": "guess",
    "links.home_wifi.price_per_gb": "guess: the owner's line, no per-byte price to the fleet",
    "links.home_wifi.jitter": _GUESS_JITTER,
    # Cellular
    "links.lte.bandwidth_mbps": "guess: a moving vehicle's LTE downlink, well under the cell's capacity",
    "links.lte.rtt_ms": "guess: LTE round trip to a cloud region, including the core network",
    "links.lte.loss": _GUESS_LOSS,
    "links.lte.dropouts_per_hour": _GUESS_DROP,
    "links.lte.dropout_s": _GUESS_DROP,
    "links.lte.price_per_gb": _GUESS_PRICE,
    "links.lte.jitter": _GUESS_JITTER,
    "links.lte.cell_capacity_mbps": ITU,
    "links.lte.cell_background": "guess: half of the cell's capacity used by other subscribers",
    "links.lte.fleet_per_cell": "guess: this fleet's vehicles camping on one cell at once",
    "links.lte_congested.bandwidth_mbps": "guess: a loaded or edge-of-coverage LTE cell",
    "links.lte_congested.rtt_ms": "guess: queueing in a loaded cell",
    "links.lte_congested.loss": _GUESS_LOSS,
    "links.lte_congested.dropouts_per_hour": _GUESS_DROP,
    "links.lte_congested.dropout_s": _GUESS_DROP,
    "links.lte_congested.price_per_gb": _GUESS_PRICE,
    "links.lte_congested.jitter": _GUESS_JITTER,
    "links.lte_congested.cell_capacity_mbps": ITU,
    "links.lte_congested.cell_background": "guess: a congested cell, 85% used by other subscribers",
    "links.lte_congested.fleet_per_cell": "guess: this fleet's vehicles camping on one cell at once",
    "links.3g.bandwidth_mbps": "guess: HSPA downlink in a moving vehicle",
    "links.3g.rtt_ms": "guess: 3G round trip including the radio's scheduling",
    "links.3g.loss": _GUESS_LOSS,
    "links.3g.dropouts_per_hour": _GUESS_DROP,
    "links.3g.dropout_s": _GUESS_DROP,
    "links.3g.price_per_gb": _GUESS_PRICE,
    "links.3g.jitter": _GUESS_JITTER,
    "links.satellite.bandwidth_mbps": "guess: a mobile GEO terminal's share of its beam",
    "links.satellite.rtt_ms": GEO,
    "links.satellite.loss": _GUESS_LOSS,
    "links.satellite.dropouts_per_hour": "guess: blockage by bridges, cuttings and trees",
    "links.satellite.dropout_s": "guess: blockage by bridges, cuttings and trees",
    "links.satellite.price_per_gb": "guess: maritime/land-mobile satellite data is priced per MB, far above cellular",
    "links.satellite.jitter": _GUESS_JITTER,
    # Connectivity
    "patterns.commuter.hourly": NT3,
    "patterns.commuter.weekend_hourly": NT3.replace(
        "Wednesday", "Saturday (used for Sunday too: a guess)"
    ),
    "patterns.commuter.drives_per_day": ADS,
    "patterns.commuter.on_mean_min": TRIP_MIN,
    "patterns.commuter.awake_after_min": "guess: a telematics unit's stay-awake time after ignition off",
    "patterns.commuter.home_wifi_share": "guess: owners who joined the car to their home Wi-Fi and park in its range",
    "patterns.commuter.home_wifi_min": "guess: how long the unit stays on Wi-Fi after parking at home",
    "patterns.commuter.home_hours": "guess: the day's last drives (ending 17:00-06:00) end at home",
    "patterns.commuter.dormant_share": "guess: cars laid up or with a dead modem",
    "patterns.taxi.on_mean_min": "guess: an 8 h shift",
    "patterns.taxi.off_mean_min": "guess: 4 h off between shifts (two shifts a day, some cars double-shifted)",
    "patterns.taxi.dormant_share": "guess: cars in the workshop",
    "patterns.depot_nightly.on_mean_min": "guess: 10 h parked in the depot's Wi-Fi overnight",
    "patterns.depot_nightly.off_mean_min": "guess: 14 h out of range on the road",
    "patterns.depot_nightly.dormant_share": "guess",
    "patterns.long_haul.on_mean_min": "guess, bounded by FMCSA hours of service (49 CFR 395.3, 2011 rule: at most 11 h driving after 10 h off duty)",
    "patterns.long_haul.off_mean_min": "guess: stops with the terminal off (the 10 h off-duty rest of 49 CFR 395.3 often keeps it on in a sleeper cab)",
    "patterns.long_haul.dormant_share": "guess: trucks in the workshop",
    "patterns.always_on.on_mean_min": "setting: always reachable (tests, calibration)",
    "patterns.always_on.off_mean_min": "setting: always reachable (tests, calibration)",
    "patterns.always_on.dormant_share": "setting: always reachable (tests, calibration)",
    # Campaign and protocol
    "campaign.install_failure_rate": "guess: a failed self-test or swap, before any hardware variant is known to be bad",
    "protocol.initial_window_segments": "RFC 6928 (2013): TCP initial window of 10 segments",
    "protocol.loss_cap": MATHIS,
}

LINK_FIELDS = (
    "bandwidth_mbps",
    "rtt_ms",
    "loss",
    "dropouts_per_hour",
    "dropout_s",
    "price_per_gb",
    "jitter",
)
CELL_FIELDS = ("cell_capacity_mbps", "cell_background", "fleet_per_cell")
FLAT_FIELDS = ("on_mean_min", "off_mean_min", "dormant_share")
DIURNAL_FIELDS = (
    "on_mean_min", "dormant_share", "hourly", "weekend_hourly", "drives_per_day",
    "awake_after_min", "home_wifi_share", "home_wifi_min", "home_hours",
)  # fmt: skip

_CITED = re.compile(r"\b(19|20)\d\d\b")


def is_sourced(text: str) -> bool:
    """A citation with its year, or a plain statement that the figure is a guess or a setting."""
    t = text.strip().lower()
    return t.startswith(("guess", "setting")) or bool(_CITED.search(text))


def needed_sources(sc: Any) -> list[str]:
    """The keys of every figure the scenario's fleet uses."""
    keys: list[str] = []
    links = {g.link for g in sc.fleet}
    for g in sc.fleet:
        pat = sc.patterns[g.pattern]
        if pat.diurnal:
            keys += [f"patterns.{pat.name}.{f}" for f in DIURNAL_FIELDS]
            if pat.home_wifi_share > 0:
                links.add(pat.home_wifi_link)
        else:
            keys += [f"patterns.{pat.name}.{f}" for f in FLAT_FIELDS]
    for name in sorted(links):
        lk = sc.links[name]
        keys += [f"links.{name}.{f}" for f in LINK_FIELDS]
        if lk.cell_capacity_mbps > 0:
            keys += [f"links.{name}.{f}" for f in CELL_FIELDS]
    if not sc.hardware:
        keys.append("campaign.install_failure_rate")
    keys += [f"hardware.{h.name}" for h in sc.hardware]
    return sorted(set(keys))


def missing_sources(sc: Any) -> list[str]:
    """Figures the scenario uses that cite nothing and do not say they are a guess."""
    return [k for k in needed_sources(sc) if not is_sourced(sc.sources.get(k, ""))]
