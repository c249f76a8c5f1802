"""Rollout campaigns' pure core: specs, wave assignment and state derived from facts.

Nothing here does I/O. A campaign's state is never stored as such: it is
*derived* from facts that are (the immutable spec, the membership with first-
offer times, the append-only event log, the vehicles' install reports) and the
current time. ``derive`` replays them and says what the state is and which new
events the facts call for (open the next wave, trip the threshold, complete).
The I/O shell (``server/campaigns.py``) appends those events; doing so twice,
as two registry replicas might, changes nothing, because replaying is
idempotent. The shape follows python-tuf's ngclient: logic apart from I/O.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from server.storage import CampaignEventRecord, CampaignMember, ReportRecord, VehicleRecord

SUCCESS = frozenset({"installed", "confirmed"})
FAILURE = frozenset({"failed", "rolled_back", "attack_detected", "timed_out"})
ACTIVE = frozenset({"running", "paused"})
ACTIONS = ("abort", "pause")


class SpecError(ValueError):
    """A campaign definition that cannot run; the message says which field and why."""


@dataclass(frozen=True)
class WaveSpec:
    percent: float  # cumulative share of the selection, 0 < percent <= 100
    success_share: float = 1.0
    min_soak_s: float = 0.0


@dataclass(frozen=True)
class Threshold:
    trip_failures: int = 0  # 0 = off
    trip_failure_share: float = 0.05  # 0 = off
    action: str = "abort"


@dataclass(frozen=True)
class TargetSelection:
    hardware_ids: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    vehicle_ids: tuple[str, ...] = ()

    def matches(self, v: VehicleRecord, model: str) -> bool:
        """Does this inventory entry fall in the selection and run ``model``?"""
        if self.vehicle_ids and v.vehicle_id not in self.vehicle_ids:
            return False
        if self.hardware_ids and v.hardware_id not in self.hardware_ids:
            return False
        if not set(self.tags) <= set(v.tags):
            return False
        return not v.wanted or model in v.wanted


DEFAULT_WAVES = (WaveSpec(1.0), WaveSpec(10.0), WaveSpec(50.0), WaveSpec(100.0))


@dataclass(frozen=True)
class CampaignSpec:
    name: str
    model: str
    version: str
    target: TargetSelection = TargetSelection()
    waves: tuple[WaveSpec, ...] = DEFAULT_WAVES
    threshold: Threshold = Threshold()
    max_concurrent_downloads: int = 0  # 0 = unlimited
    timeout_s: float = 3600.0
    require_confirmed: bool = False
    rollback_of: str = ""

    def validate(self) -> None:
        if not self.model or not self.version:
            raise SpecError("a campaign needs a model and a version")
        if not self.waves:
            raise SpecError("a campaign needs at least one wave")
        last = 0.0
        for i, w in enumerate(self.waves):
            if not last < w.percent <= 100.0:
                raise SpecError(
                    f"wave {i}: percent {w.percent} must grow and lie in (0, 100] (cumulative)"
                )
            if not 0.0 <= w.success_share <= 1.0:
                raise SpecError(f"wave {i}: success_share {w.success_share} must lie in [0, 1]")
            if w.min_soak_s < 0:
                raise SpecError(f"wave {i}: min_soak_s must not be negative")
            last = w.percent
        if last != 100.0:
            raise SpecError(f"the last wave must reach 100% (it reaches {last}%)")
        if self.threshold.action not in ACTIONS:
            raise SpecError(f"threshold action {self.threshold.action!r} must be one of {ACTIONS}")
        if self.threshold.trip_failures < 0 or not 0.0 <= self.threshold.trip_failure_share <= 1.0:
            raise SpecError(
                "threshold: trip_failures must be >= 0 and trip_failure_share in [0, 1]"
            )
        if self.max_concurrent_downloads < 0 or self.timeout_s <= 0:
            raise SpecError("max_concurrent_downloads must be >= 0 and timeout_s > 0")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CampaignSpec:
        d = json.loads(text)
        t = d.get("target", {})
        return cls(
            **{k: v for k, v in d.items() if k not in ("target", "waves", "threshold")},
            target=TargetSelection(**{k: tuple(v) for k, v in t.items()}),
            waves=tuple(WaveSpec(**w) for w in d.get("waves", [])),
            threshold=Threshold(**d.get("threshold", {})),
        )


def assign_waves(
    campaign_id: str, vehicle_ids: Iterable[str], waves: Sequence[WaveSpec]
) -> dict[str, int]:
    """Split vehicles into waves by cumulative percent, in a shuffled but reproducible order.

    The order hashes the campaign id with the vehicle id, so canaries differ from
    campaign to campaign (no vehicle is always the guinea pig) yet any replica
    computes the same split. Rounding up gives a non-empty canary for any fleet.
    """
    ids = sorted(
        set(vehicle_ids), key=lambda v: hashlib.sha256(f"{campaign_id}/{v}".encode()).digest()
    )
    n = len(ids)
    out: dict[str, int] = {}
    start = 0
    for i, w in enumerate(waves):
        end = n if i == len(waves) - 1 else min(n, math.ceil(w.percent * n / 100.0))
        for v in ids[start:end]:
            out[v] = i
        start = max(start, end)
    return out


@dataclass(frozen=True)
class VehicleState:
    status: str  # pending | in_flight | installed | confirmed | failed | rolled_back | attack_detected | timed_out
    reason: str = ""


def vehicle_state(
    member: CampaignMember,
    reports: Sequence[ReportRecord],
    runs_target: bool,
    now: float,
    timeout_s: float,
) -> VehicleState:
    """One member's state from its reports for this campaign (oldest first)."""
    for rep in reversed(reports):
        if rep.status in SUCCESS or rep.status in FAILURE:
            return VehicleState(rep.status, rep.reason)
    if runs_target:  # it already runs the version (learned at check-in): nothing to do
        return VehicleState("installed", "already running this version")
    if member.offered_at is None:
        return VehicleState("pending")
    if now - member.offered_at > timeout_s:
        last = f"; last step: {reports[-1].status}" if reports else ""
        return VehicleState("timed_out", f"no result {timeout_s:g} s after the offer{last}")
    return VehicleState("in_flight")


@dataclass
class WaveView:
    index: int
    spec: WaveSpec
    size: int
    counts: Counter
    state: str  # waiting | open | done
    opened_at: float | None
    soaked_s: float

    def successes(self, require_confirmed: bool) -> int:
        return self.counts["confirmed"] + (0 if require_confirmed else self.counts["installed"])

    def failures(self) -> int:
        return sum(self.counts[s] for s in FAILURE)


@dataclass(frozen=True)
class NewEvent:
    kind: str
    wave: int = -1
    detail: dict = field(default_factory=dict)


@dataclass
class CampaignView:
    """Everything a status page or a decision needs, derived at ``now``."""

    spec: CampaignSpec
    state: str  # running | paused | aborted | completed
    reason: str
    current_wave: int
    waves: list[WaveView]
    vehicles: dict[str, VehicleState]
    wave_of: dict[str, int]
    acknowledged: dict[str, str]
    new_events: list[NewEvent]
    campaign_id: str = ""
    created_at: float = 0.0

    @property
    def in_flight(self) -> int:
        return sum(1 for s in self.vehicles.values() if s.status == "in_flight")

    def failure_groups(self, limit: int = 5) -> list[tuple[str, str, list[str]]]:
        """(status, reason, vehicle ids) of failures, biggest group first."""
        groups: dict[tuple[str, str], list[str]] = defaultdict(list)
        for vid, s in sorted(self.vehicles.items()):
            if s.status in FAILURE:
                groups[(s.status, _reason_key(s.reason))].append(vid)
        ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        return [(st, reason, vids) for (st, reason), vids in ordered][: max(limit, 0) or None]


def _reason_key(reason: str) -> str:
    """Group reasons that differ only in per-vehicle detail (paths, numbers after a colon)."""
    return reason.split(" at offset ")[0].strip()[:200]


def derive(
    spec: CampaignSpec,
    events: Sequence[CampaignEventRecord],
    members: Sequence[CampaignMember],
    vehicles: Mapping[str, VehicleState],
    now: float,
) -> CampaignView:
    """Replay the event log over the members' states; say what happens next."""
    state, reason = "running", ""
    opened: dict[int, float] = {}
    acknowledged: dict[str, str] = {}  # vehicle -> the failure status an operator accepted
    for ev in events:
        detail = json.loads(ev.detail) if ev.detail else {}
        if ev.kind == "wave_opened":
            opened.setdefault(ev.wave, ev.at)
        elif ev.kind == "paused" and state == "running":
            state, reason = "paused", detail.get("reason", "")
        elif ev.kind == "resumed" and state == "paused":
            state, reason = "running", ""
            acknowledged.update(detail.get("acknowledged", {}))
        elif ev.kind == "aborted" and state in ACTIVE:
            state, reason = "aborted", detail.get("reason", "")
        elif ev.kind == "completed" and state in ACTIVE:
            state, reason = "completed", ""
    wave_of = {m.vehicle_id: m.wave for m in members}
    sizes = Counter(wave_of.values())
    counts: dict[int, Counter] = defaultdict(Counter)
    for vid, w in wave_of.items():
        counts[w][vehicles.get(vid, VehicleState("pending")).status] += 1
    current = max(opened) if opened else -1
    new: list[NewEvent] = []

    def wave_view(i: int) -> WaveView:
        at = opened.get(i)
        done = i < current or (state == "completed" and i == current)
        return WaveView(
            i,
            spec.waves[i],
            sizes[i],
            counts[i],
            "done" if done else "open" if at is not None else "waiting",
            at,
            (now - at) if at is not None else 0.0,
        )

    if state == "running":
        tripped = _tripped(spec, wave_of, vehicles, acknowledged, current, sizes)
        if tripped:
            state, reason = ("aborted" if spec.threshold.action == "abort" else "paused"), tripped
            new.append(NewEvent(state, current, {"reason": tripped}))
        while state == "running" and current >= 0:
            wv = wave_view(current)
            share = wv.successes(spec.require_confirmed) / wv.size if wv.size else 1.0
            if share < wv.spec.success_share or wv.soaked_s < wv.spec.min_soak_s:
                break
            if current == len(spec.waves) - 1:
                state = "completed"
                new.append(NewEvent("completed", current))
                break
            current += 1
            opened[current] = now
            new.append(NewEvent("wave_opened", current))
    return CampaignView(
        spec=spec,
        state=state,
        reason=reason,
        current_wave=current,
        waves=[wave_view(i) for i in range(len(spec.waves))],
        vehicles=dict(vehicles),
        wave_of=wave_of,
        acknowledged=acknowledged,
        new_events=new,
    )


def _tripped(
    spec: CampaignSpec,
    wave_of: Mapping[str, int],
    vehicles: Mapping[str, VehicleState],
    acknowledged: Mapping[str, str],
    current: int,
    sizes: Counter,
) -> str:
    """Why the error threshold trips now, or "" if it does not."""
    failing = [
        v
        for v, s in vehicles.items()
        if s.status in FAILURE and acknowledged.get(v) != s.status and v in wave_of
    ]
    if not failing:
        return ""
    th = spec.threshold
    by_status = Counter(vehicles[v].status for v in failing)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
    if th.trip_failures and len(failing) >= th.trip_failures:
        return f"{len(failing)} failures ({summary}) reached the threshold of {th.trip_failures}"
    if th.trip_failure_share:
        per_wave = Counter(wave_of[v] for v in failing)
        for w in range(current + 1):
            if sizes[w] and per_wave[w] / sizes[w] > th.trip_failure_share:
                return (
                    f"wave {w}: {per_wave[w]} of {sizes[w]} vehicles failed ({summary}), "
                    f"over the {th.trip_failure_share:.0%} threshold"
                )
    return ""
