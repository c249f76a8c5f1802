"""What a scenario is: links, connectivity patterns, the fleet mix and the campaign.

Long file: the TOML schema, its defaults and its validation (with the sources of each figure)
are one contract, kept in one place.

A scenario is a TOML file (see ``simulator/scenarios/``). Built-in link profiles
and patterns can be used by name and overridden field by field. Every number in
them is an *assumption* about the world, not a measurement; reports say so.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from otawire.constants import MESSAGE_BYTES
from simulator.assumptions import BUILTIN_LINK_ARGS, BUILTIN_PATTERN_ARGS, BUILTIN_SOURCES

MSS_BYTES = 1448  # TCP payload per segment on a 1500-byte MTU with timestamps


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message says what and where."""


@dataclass(frozen=True)
class LinkProfile:
    """A kind of link a vehicle can have to the registry."""

    name: str
    bandwidth_mbps: float  # downlink capacity
    rtt_ms: float
    loss: float = 0.0  # packet loss probability, caps TCP throughput (Mathis et al. 1997)
    dropouts_per_hour: float = 0.0  # connection drop-outs while reachable
    dropout_s: float = 0.0  # mean length of a drop-out
    price_per_gb: float = 0.0  # USD per 10^9 bytes
    jitter: float = 0.0  # sigma of a log-normal per-window bandwidth factor (mean 1)
    efficiency: float = 0.95  # payload share of the wire (TCP/IP/TLS/gRPC framing)
    drain_s: float = 0.0  # what the link had queued when it drops still arrives (and is wasted)
    # A cell shared by the fleet's vehicles (0 = not modelled): its downlink capacity, the
    # share other subscribers use, and how many of this fleet's vehicles camp on one cell.
    cell_capacity_mbps: float = 0.0
    cell_background: float = 0.5
    fleet_per_cell: float = 0.0

    def goodput_bytes_per_s(self) -> float:
        """Mean payload rate: link capacity, capped by TCP's loss-limited rate."""
        rate = self.bandwidth_mbps * 1e6 / 8 * self.efficiency
        if self.loss > 0:
            mathis = 1.22 * MSS_BYTES / (self.rtt_ms / 1000 * math.sqrt(self.loss))
            rate = min(rate, mathis)
        return rate


@dataclass(frozen=True)
class Pattern:
    """When a vehicle is reachable.

    Flat (``hourly`` empty): alternating reachable / unreachable spells with
    exponential lengths, the same at any hour. Diurnal (``hourly`` given): drives
    start as a Poisson process whose rate follows the hour of the week
    (``drives_per_day`` on a weekday, spread by the 24 ``hourly`` weights; the
    weekend by ``weekend_hourly`` on the same scale), last ``on_mean_min`` on
    average, and the modem stays awake ``awake_after_min`` after the ignition is
    off. A drive that ends in ``home_hours`` ends at home: a vehicle with home
    Wi-Fi (``home_wifi_share`` of them) then spends ``home_wifi_min`` on the
    ``home_wifi_link`` instead (a new session, as the network changes); the rest
    fall back to the cellular link while awake.
    """

    name: str
    on_mean_min: float  # mean reachable spell (a drive, a night at the depot)
    off_mean_min: float  # mean unreachable spell (parked with the modem off); flat patterns only
    dormant_share: float = 0.0  # vehicles not reachable at all during the horizon
    hourly: tuple[
        float, ...
    ] = ()  # weekday drive starts per clock hour (relative weights), 24 values
    weekend_hourly: tuple[
        float, ...
    ] = ()  # Saturday/Sunday, same scale as ``hourly`` (default: as weekdays)
    drives_per_day: float = 0.0  # drive starts on a weekday
    awake_after_min: float = 0.0  # parked-awake: modem on after ignition off
    home_wifi_share: float = 0.0  # vehicles that reach a home Wi-Fi when parked at home
    home_wifi_link: str = "home_wifi"
    home_wifi_min: float = 0.0  # how long a parked vehicle stays on its home Wi-Fi
    home_hours: tuple[float, float] = (
        17.0,
        6.0,
    )  # a drive ending between these clock hours ends at home

    @property
    def diurnal(self) -> bool:
        return bool(self.hourly)

    @property
    def on_share(self) -> float:
        if self.diurnal:
            return min(1.0, self.drives_per_day * (self.on_mean_min + self.awake_after_min) / 1440)
        return self.on_mean_min / (self.on_mean_min + self.off_mean_min)

    def week_rates(self) -> list[float]:
        """Drive starts per second for each of the 168 hours of the week (Monday 00:00 first)."""
        day = list(self.hourly)
        end = list(self.weekend_hourly) or day
        scale = self.drives_per_day / sum(day) / 3600
        return [w * scale for w in day * 5 + end * 2]


@dataclass(frozen=True)
class Hardware:
    """A hardware variant of the fleet: its share and how often an install fails on it."""

    name: str
    share: float
    install_failure_rate: float


@dataclass(frozen=True)
class Model:
    """Which effects the engine plays; each can be switched off to see what it is worth."""

    diurnal: bool = (
        True  # hour-of-week connectivity of diurnal patterns (off: flat, same daily means)
    )
    slow_start: bool = True  # TCP slow start on every new connection (RFC 5681, IW of RFC 6928)
    cell_sharing: bool = (
        True  # vehicles in one cell share its capacity (links with cell_capacity_mbps)
    )
    registry_limit: bool = (
        True  # the campaign's limit on concurrent downloads (campaign.max_concurrent)
    )


@dataclass(frozen=True)
class FleetGroup:
    share: float
    link: str
    pattern: str


@dataclass(frozen=True)
class Campaign:
    """Staged rollout, with the semantics of the registry's campaigns (issue 6).

    ``waves`` are cumulative fleet shares (0.01, 0.1, 0.5, 1.0: a 1% canary, then
    up to 10%, ...). Wave i+1 starts when ``advance_share`` of wave i's vehicles
    have installed and at least ``soak_hours`` have passed since wave i started.
    The campaign aborts as soon as the failures among the vehicles targeted so far
    reach ``abort_error_share`` of them (and at least ``abort_min_failures``).
    """

    waves: tuple[float, ...] = (0.01, 0.10, 0.50, 1.0)
    advance_share: float = 0.90
    soak_hours: float = 2.0
    abort_error_share: float = 0.05
    abort_min_failures: int = 3
    install_failure_rate: float = 0.002
    install_s: float = 20.0
    poll_min: float = 15.0  # check-in interval while reachable (and once on every reconnect)
    resumable: bool = True
    start_hour: float = 34.0  # campaign start, hours after Monday 00:00 (34: Tuesday 10:00)
    max_concurrent: int = 0  # the registry's limit on concurrent downloads (0 = unlimited)
    download_timeout_s: float = (
        3600.0  # a slot held by a vehicle that went silent is freed after this
    )
    # Per-wave overrides of advance_share / soak_hours (one value per wave; empty: the scalar).
    wave_advance: tuple[float, ...] = ()
    wave_soak_hours: tuple[float, ...] = ()

    def advance_of(self, i: int) -> float:
        return self.wave_advance[i] if self.wave_advance else self.advance_share

    def soak_of(self, i: int) -> float:
        return self.wave_soak_hours[i] if self.wave_soak_hours else self.soak_hours


@dataclass(frozen=True)
class Protocol:
    """What one update session of the real agent costs before and around the payload.

    Defaults measured on the project's agent and registry by the emulation's
    calibration (``ota simulate --emulate``, 08:33 UTC, main with mutual TLS and the
    vehicle manifest), on this 2-core machine under load, so the round trips
    include the agent's CPU time: a first session sets up TLS, fetches TUF
    metadata, sends its manifest, checks in and opens the download; a resumed one
    finds its metadata current and needs fewer trips.
    """

    setup_rtts: float = 13.8  # round trips before payload flows, first session of an update
    resume_setup_rtts: float = 9.3  # the same for a later session of the same update
    setup_s: float = (
        0.0  # seconds of a first session that do not scale with the RTT (the agent's CPU)
    )
    resume_setup_s: float = 0.0  # the same for a later session
    session_overhead_bytes: int = (
        10070  # downlink besides the payload, first session (TLS, TUF metadata, gRPC)
    )
    resume_overhead_bytes: int = 6060  # the same for a later session
    # The agent's retries within a session after a cut (vehicle_agent.download.RetryPolicy).
    retry_attempts: int = 8  # attempts without progress before the session gives up
    retry_base_s: float = 0.5
    retry_factor: float = 2.0
    retry_cap_s: float = 30.0
    # A retry while the link is down waits for it: gRPC dials at once, then after backoffs
    # from 0.1 s growing x1.6 up to 5 s (vehicle_agent.transport.RECONNECT_BACKOFF_MS,
    # gRPC's multiplier), until the stall watchdog (TransportConfig.stall_timeout_s) fires.
    stall_timeout_s: float = 15.0
    reconnect_base_s: float = 0.1
    reconnect_factor: float = 1.6
    reconnect_cap_s: float = 5.0
    # A download resumes from the last whole message of the registry's Download
    # stream (otawire.constants.MESSAGE_BYTES): the part of one in flight at a cut is lost.
    resume_chunk_bytes: int = MESSAGE_BYTES
    initial_window_segments: int = 10  # TCP's initial congestion window (RFC 6928)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    links: dict[str, LinkProfile]
    patterns: dict[str, Pattern]
    fleet: tuple[FleetGroup, ...]
    campaign: Campaign = field(default_factory=Campaign)
    seed: int = 1
    vehicles: int = 10_000
    horizon_days: float = 14.0
    protocol: Protocol = field(default_factory=Protocol)
    model: Model = field(default_factory=Model)
    hardware: tuple[
        Hardware, ...
    ] = ()  # empty: one variant failing at campaign.install_failure_rate
    sources: dict[str, str] = field(
        default_factory=dict
    )  # "links.lte.rtt_ms" -> citation, or "guess: why"
    strategies: tuple[str, ...] = (
        "alexnet_fp32",
        "squeezenet_fp32",
        "squeezenet_zstd",
        "squeezenet_deep_compression",
        "squeezenet_int8",
        "squeezenet_delta",
    )

    @property
    def horizon_s(self) -> float:
        return self.horizon_days * 86400.0

    def replace(self, **changes: Any) -> Scenario:
        return dataclasses.replace(self, **changes)


BUILTIN_LINKS: dict[str, LinkProfile] = {a[0]: LinkProfile(*a, **kw) for a, kw in BUILTIN_LINK_ARGS}
BUILTIN_PATTERNS: dict[str, Pattern] = {a[0]: Pattern(*a, **kw) for a, kw in BUILTIN_PATTERN_ARGS}


def _build(cls: type, name: str, base: Any, over: dict[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(over) - names
    if unknown:
        raise ScenarioError(
            f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(names - {'name'})}"
        )
    try:
        if base is not None:
            return dataclasses.replace(base, name=name, **over)
        return cls(name=name, **over)
    except TypeError as e:
        raise ScenarioError(f"{where}: {e}") from None


def _tuples(over: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in over.items()}


def scenario_from_dict(data: dict[str, Any], where: str = "scenario") -> Scenario:
    """Build and check a scenario from parsed TOML/JSON."""
    sources = dict(BUILTIN_SOURCES)

    def derive(kind: str, builtin: dict[str, Any], cls: type) -> dict[str, Any]:
        out = dict(builtin)
        for name, over in data.get(kind, {}).items():
            over = _tuples(dict(over))
            base_name = over.pop("base", name)
            base = builtin.get(base_name)
            out[name] = _build(cls, name, base, over, f"{where}: [{kind}.{name}]")
            # A derived profile keeps the citations of the figures it inherits, loses those it changes.
            for f in dataclasses.fields(cls):
                key = f"{kind}.{name}.{f.name}"
                if f.name in over or base is None:
                    sources.pop(key, None)
                elif base_name != name:
                    if (src := sources.get(f"{kind}.{base_name}.{f.name}")) is not None:
                        sources[key] = src
        return out

    links = derive("links", BUILTIN_LINKS, LinkProfile)
    patterns = derive("patterns", BUILTIN_PATTERNS, Pattern)
    for g in data.get("fleet", []):
        pat = patterns.get(str(g.get("pattern")))
        if (
            pat is not None
            and pat.diurnal
            and pat.home_wifi_share > 0
            and pat.home_wifi_link not in links
        ):
            raise ScenarioError(
                f"{where}: [patterns.{pat.name}]: unknown home_wifi_link {pat.home_wifi_link!r}; known: {sorted(links)}"
            )
    sources.update({str(k): str(v) for k, v in data.get("sources", {}).items()})
    for name, pat in patterns.items():
        if pat.diurnal and (
            len(pat.hourly) != 24
            or (pat.weekend_hourly and len(pat.weekend_hourly) != 24)
            or pat.drives_per_day <= 0
        ):
            raise ScenarioError(
                f"{where}: [patterns.{name}]: a diurnal pattern needs 24 hourly weights (and 24 weekend ones) and drives_per_day > 0"
            )
    fleet = []
    for i, g in enumerate(data.get("fleet", [])):
        try:
            grp = FleetGroup(
                share=float(g["share"]), link=str(g["link"]), pattern=str(g["pattern"])
            )
        except KeyError as e:
            raise ScenarioError(f"{where}: [[fleet]] #{i + 1} lacks {e}") from None
        if grp.link not in links:
            raise ScenarioError(
                f"{where}: [[fleet]] #{i + 1}: unknown link {grp.link!r}; known: {sorted(links)}"
            )
        if grp.pattern not in patterns:
            raise ScenarioError(
                f"{where}: [[fleet]] #{i + 1}: unknown pattern {grp.pattern!r}; known: {sorted(patterns)}"
            )
        fleet.append(grp)
    if not fleet:
        raise ScenarioError(f"{where}: no [[fleet]] groups")
    total = sum(g.share for g in fleet)
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ScenarioError(f"{where}: [[fleet]] shares add up to {total:g}, not 1")
    camp_over = _tuples(dict(data.get("campaign", {})))
    if "waves" in camp_over:
        camp_over["waves"] = tuple(float(w) for w in camp_over["waves"])
    if "install_failure_rate" in camp_over and "campaign.install_failure_rate" not in data.get(
        "sources", {}
    ):
        sources.pop("campaign.install_failure_rate", None)
    try:
        campaign = Campaign(**camp_over)
    except TypeError as e:
        raise ScenarioError(f"{where}: [campaign]: {e}") from None
    w = campaign.waves
    if not w or any(b <= a for a, b in itertools.pairwise(w)) or w[-1] != 1.0 or w[0] <= 0:
        raise ScenarioError(f"{where}: [campaign] waves must rise strictly to 1.0, got {list(w)}")
    for per in ("wave_advance", "wave_soak_hours"):
        if getattr(campaign, per) and len(getattr(campaign, per)) != len(w):
            raise ScenarioError(
                f"{where}: [campaign] {per} needs one value per wave ({len(w)}), got {list(getattr(campaign, per))}"
            )
    try:
        protocol = Protocol(**data.get("protocol", {}))
        model = Model(**data.get("model", {}))
    except TypeError as e:
        raise ScenarioError(f"{where}: [protocol] or [model]: {e}") from None
    hardware = []
    for i, h in enumerate(data.get("hardware", [])):
        try:
            hardware.append(
                Hardware(str(h["name"]), float(h["share"]), float(h["install_failure_rate"]))
            )
        except KeyError as e:
            raise ScenarioError(f"{where}: [[hardware]] #{i + 1} lacks {e}") from None
    if hardware and not math.isclose(sum(h.share for h in hardware), 1.0, abs_tol=1e-6):
        raise ScenarioError(
            f"{where}: [[hardware]] shares add up to {sum(h.share for h in hardware):g}, not 1"
        )
    skip = {"links", "patterns", "fleet", "campaign", "protocol", "model", "hardware", "sources"}
    top = {k: v for k, v in data.items() if k not in skip}
    if "strategies" in top:
        top["strategies"] = tuple(top["strategies"])
    top.setdefault("name", where)
    top.setdefault("description", "")
    try:
        return Scenario(
            links=links,
            patterns=patterns,
            fleet=tuple(fleet),
            campaign=campaign,
            protocol=protocol,
            model=model,
            hardware=tuple(hardware),
            sources=sources,
            **top,
        )
    except TypeError as e:
        raise ScenarioError(f"{where}: {e}") from None


def load_scenario(path: str | Path) -> Scenario:
    """Load a scenario file, or a ready one by name (``city_lte``, ``rural_3g``, ...)."""
    p = Path(path)
    if not p.exists() and not p.suffix:
        ready = resources.files("simulator") / "scenarios" / f"{p.name}.toml"
        if ready.is_file():
            return scenario_from_dict(tomllib.loads(ready.read_text()), where=p.name)
        raise ScenarioError(
            f"no scenario file {str(p)!r} and no ready scenario of that name; ready: {ready_scenarios()}"
        )
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ScenarioError(f"scenario file {str(p)!r} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{p}: not valid TOML: {e}") from None
    return scenario_from_dict(data, where=str(p))


def ready_scenarios() -> list[str]:
    """Names of the scenarios shipped in the package."""
    d = resources.files("simulator") / "scenarios"
    return sorted(f.name.removesuffix(".toml") for f in d.iterdir() if f.name.endswith(".toml"))
