"""What a scenario is: links, connectivity patterns, the fleet mix and the campaign.

A scenario is a TOML file (see ``simulator/scenarios/``). Built-in link profiles
and patterns can be used by name and overridden field by field. Every number in
them is an *assumption* about the world, not a measurement; reports say so.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

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

    def goodput_bytes_per_s(self) -> float:
        """Mean payload rate: link capacity, capped by TCP's loss-limited rate."""
        rate = self.bandwidth_mbps * 1e6 / 8 * self.efficiency
        if self.loss > 0:
            mathis = 1.22 * MSS_BYTES / (self.rtt_ms / 1000 * math.sqrt(self.loss))
            rate = min(rate, mathis)
        return rate


@dataclass(frozen=True)
class Pattern:
    """When a vehicle is reachable: alternating reachable / unreachable spells."""

    name: str
    on_mean_min: float  # mean reachable spell (a drive, a night at the depot)
    off_mean_min: float  # mean unreachable spell (parked with the modem off)
    dormant_share: float = 0.0  # vehicles not reachable at all during the horizon

    @property
    def on_share(self) -> float:
        return self.on_mean_min / (self.on_mean_min + self.off_mean_min)


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
    session_overhead_bytes: int = 10070  # downlink besides the payload, first session (TLS, TUF metadata, gRPC)
    resume_overhead_bytes: int = 6060  # the same for a later session
    # The agent's retries within a session after a cut (vehicle_agent.download.RetryPolicy).
    retry_attempts: int = 8  # attempts without progress before the session gives up
    retry_base_s: float = 0.5
    retry_factor: float = 2.0
    retry_cap_s: float = 30.0
    # A download resumes from the last whole message of the registry's Download
    # stream (server.service.CHUNK_SIZE): the part of a chunk in flight at a cut is lost.
    resume_chunk_bytes: int = 256 * 1024


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

    def replace(self, **changes: Any) -> "Scenario":
        return dataclasses.replace(self, **changes)


# Assumed profiles. Bandwidths and RTTs are typical figures for each technology,
# prices typical of IoT data plans; a fleet team replaces them with their own.
BUILTIN_LINKS: dict[str, LinkProfile] = {
    p.name: p
    for p in (
        LinkProfile("depot_wifi", 50.0, 20.0, 0.0005, 0.2, 10.0, 0.0, 0.3),
        LinkProfile("lte", 20.0, 60.0, 0.001, 1.0, 15.0, 2.0, 0.5),
        LinkProfile("lte_congested", 4.0, 150.0, 0.005, 4.0, 30.0, 2.0, 0.6),
        LinkProfile("3g", 1.5, 250.0, 0.005, 4.0, 45.0, 3.0, 0.5),
        LinkProfile("satellite", 1.0, 700.0, 0.001, 6.0, 60.0, 10.0, 0.3),
    )
}

BUILTIN_PATTERNS: dict[str, Pattern] = {
    p.name: p
    for p in (
        Pattern("commuter", 40.0, 300.0, 0.003),  # two drives a day, modem off when parked
        Pattern("taxi", 480.0, 240.0, 0.005),  # on shift most of the day
        Pattern("depot_nightly", 600.0, 840.0, 0.003),  # reachable parked at the depot
        Pattern("long_haul", 600.0, 120.0, 0.005),  # trucks on the road, stops unreachable
        Pattern("always_on", 1e9, 1e-9, 0.0),
    )
}


def _build(cls: type, name: str, base: Any, over: dict[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(over) - names
    if unknown:
        raise ScenarioError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(names - {'name'})}")
    try:
        if base is not None:
            return dataclasses.replace(base, name=name, **over)
        return cls(name=name, **over)
    except TypeError as e:
        raise ScenarioError(f"{where}: {e}") from None


def scenario_from_dict(data: dict[str, Any], where: str = "scenario") -> Scenario:
    """Build and check a scenario from parsed TOML/JSON."""
    links = dict(BUILTIN_LINKS)
    for name, over in data.get("links", {}).items():
        links[name] = _build(LinkProfile, name, BUILTIN_LINKS.get(over.pop("base", name)), over, f"{where}: [links.{name}]")
    patterns = dict(BUILTIN_PATTERNS)
    for name, over in data.get("patterns", {}).items():
        patterns[name] = _build(Pattern, name, BUILTIN_PATTERNS.get(over.pop("base", name)), over, f"{where}: [patterns.{name}]")
    fleet = []
    for i, g in enumerate(data.get("fleet", [])):
        try:
            grp = FleetGroup(share=float(g["share"]), link=str(g["link"]), pattern=str(g["pattern"]))
        except KeyError as e:
            raise ScenarioError(f"{where}: [[fleet]] #{i + 1} lacks {e}") from None
        if grp.link not in links:
            raise ScenarioError(f"{where}: [[fleet]] #{i + 1}: unknown link {grp.link!r}; known: {sorted(links)}")
        if grp.pattern not in patterns:
            raise ScenarioError(f"{where}: [[fleet]] #{i + 1}: unknown pattern {grp.pattern!r}; known: {sorted(patterns)}")
        fleet.append(grp)
    if not fleet:
        raise ScenarioError(f"{where}: no [[fleet]] groups")
    total = sum(g.share for g in fleet)
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ScenarioError(f"{where}: [[fleet]] shares add up to {total:g}, not 1")
    camp_over = dict(data.get("campaign", {}))
    if "waves" in camp_over:
        camp_over["waves"] = tuple(float(w) for w in camp_over["waves"])
    try:
        campaign = Campaign(**camp_over)
    except TypeError as e:
        raise ScenarioError(f"{where}: [campaign]: {e}") from None
    w = campaign.waves
    if not w or any(b <= a for a, b in zip(w, w[1:])) or w[-1] != 1.0 or w[0] <= 0:
        raise ScenarioError(f"{where}: [campaign] waves must rise strictly to 1.0, got {list(w)}")
    try:
        protocol = Protocol(**data.get("protocol", {}))
    except TypeError as e:
        raise ScenarioError(f"{where}: [protocol]: {e}") from None
    top = {k: v for k, v in data.items() if k not in {"links", "patterns", "fleet", "campaign", "protocol"}}
    if "strategies" in top:
        top["strategies"] = tuple(top["strategies"])
    top.setdefault("name", where)
    top.setdefault("description", "")
    try:
        return Scenario(links=links, patterns=patterns, fleet=tuple(fleet), campaign=campaign, protocol=protocol, **top)
    except TypeError as e:
        raise ScenarioError(f"{where}: {e}") from None


def load_scenario(path: str | Path) -> Scenario:
    """Load a scenario file, or a ready one by name (``city_lte``, ``rural_3g``, ...)."""
    p = Path(path)
    if not p.exists() and not p.suffix:
        ready = resources.files("simulator") / "scenarios" / f"{p.name}.toml"
        if ready.is_file():
            return scenario_from_dict(tomllib.loads(ready.read_text()), where=p.name)
        raise ScenarioError(f"no scenario file {str(p)!r} and no ready scenario of that name; ready: {ready_scenarios()}")
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
