"""Rollout campaigns in the registry: the I/O shell around ``server/rollout.py``.

``CampaignManager`` is the registry's rollout policy. At each check-in it
learns the vehicle into the inventory and decides which version of each model
the vehicle should run (``choose``): the version of a campaign whose wave the
vehicle is in, once that wave is open; otherwise the newest *released* version,
never a downgrade. A version is released when nothing holds it back: a running,
paused or aborted campaign withholds its version from everyone outside the open
waves, and a rollback withholds the version it rolls back.

Every fact goes through the storage ports (inventory, campaigns, members,
events, reports), and state is derived from those facts by
``rollout.derive``, so a restarted registry, or another replica over the same
database, answers the same. Derived views are cached for ``refresh_s``; tests
inject a clock and set ``refresh_s=0``.

Long file: the admin operations and the per-check-in decision share one lock and
one cache of derived views; split apart, each half would reach into the other's state.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import logging
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol

from server.campaigns.rollout import (
    ACTIVE,
    FAILURE,
    CampaignSpec,
    CampaignView,
    SpecError,
    TargetSelection,
    VehicleState,
    WaveSpec,
    assign_waves,
    derive,
    vehicle_state,
)
from server.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    RegistryError,
)
from server.fleet import Inventory
from server.models import semver_key
from server.releases import refuse_below_counter, release_counter
from server.storage.ports import (
    CampaignStore,
    FleetStore,
    ModelStore,
    ReportStore,
    StorageError,
    TufMetadataStore,
)
from server.storage.records import (
    CampaignEventRecord,
    CampaignMember,
    CampaignRecord,
    ModelRecord,
    ReportRecord,
    VehicleRecord,
)

log = logging.getLogger(__name__)
# The actor of the events the rollout derives itself (waves opening, thresholds tripping, completion).
DERIVED_ACTOR = "registry"

Clock = Callable[[], float]


class CampaignDeps(FleetStore, CampaignStore, ReportStore, ModelStore, TufMetadataStore, Protocol):
    """The ports campaigns use: the inventory, their own facts, reports, published versions."""


@dataclasses.dataclass
class _Cached:
    record: CampaignRecord
    spec: CampaignSpec
    members: dict[str, CampaignMember]
    view: CampaignView | None = None
    evaluated_at: float = float("-inf")
    # Since the view was derived: offers made here, and results reported here (vehicle -> status),
    # so that the rate limit frees a slot at once rather than at the next refresh.
    offered_local: set[str] = dataclasses.field(default_factory=set)
    finished_local: dict[str, str] = dataclasses.field(default_factory=dict)

    def busy(self) -> int:
        """Downloads in flight now: the view's, plus offers made since, minus results since."""
        assert self.view is not None
        flying = {
            v for v, s in self.view.vehicles.items() if s.status == "in_flight"
        } | self.offered_local
        return len(flying - self.finished_local.keys())


class CampaignManager:
    """Campaign admin operations and the per-check-in rollout decision."""

    def __init__(
        self,
        store: CampaignDeps,
        clock: Clock = time.time,
        refresh_s: float = 1.0,
        inventory_write_s: float = 60.0,
    ) -> None:
        self.store = store
        self.clock = clock
        self.refresh_s = refresh_s
        self._lock = threading.RLock()
        self._cache: dict[str, _Cached] = {}
        self.inventory = Inventory(store, lambda: self.clock(), inventory_write_s)

    # -- the rollout decision -----------------------------------------------------------
    def choose(
        self,
        vehicle: VehicleRecord,
        compatible: dict[str, list[ModelRecord]],
        released_to: dict[tuple[str, str], float] | None = None,
    ) -> dict[str, ModelRecord]:
        """Which version of each model ``vehicle`` should run (omitted: keep what it has).

        Publishing releases nothing: a completed campaign releases its version to all,
        ``released_to`` (``server/releases.py``) names versions released to this vehicle.
        """
        vehicle = self.inventory.observe(vehicle)
        explicit = released_to or {}
        with self._lock:
            views = self._views()
            withheld, completed = self._withheld(views)

            def is_released(key: tuple[str, str]) -> bool:
                if key in withheld:  # the later decision wins: the hold, or a release after it
                    return explicit.get(key, float("-inf")) > withheld[key]
                return key in completed or key in explicit

            out: dict[str, ModelRecord] = {}
            for name, versions in compatible.items():
                released = [r for r in versions if is_released((name, r.version))]
                best = max(released, key=lambda r: semver_key(r.version), default=None)
                have = vehicle.installed.get(name)
                if best is not None and not (have and _is_downgrade(best.version, have[0])):
                    out[name] = best
            for m in self.store.memberships_of(vehicle.vehicle_id):
                cached = self._cache.get(m.campaign_id)
                if cached is None or cached.spec.model not in compatible:
                    continue
                rec = next(
                    (r for r in compatible[cached.spec.model] if r.version == cached.spec.version),
                    None,
                )
                if rec is not None and self._admit(cached, vehicle.vehicle_id):
                    out[cached.spec.model] = rec
        return out

    def _admit(self, c: _Cached, vehicle_id: str) -> bool:
        """May this member be offered the campaign's version now? Records a first offer."""
        view = c.view
        if view is None or view.state not in ACTIVE:
            return False
        member = c.members.get(vehicle_id)
        if member is None or member.wave > view.current_wave:
            return False
        status = (
            c.finished_local.get(vehicle_id)
            or view.vehicles.get(vehicle_id, VehicleState("pending")).status
        )
        if status in FAILURE - {"timed_out"}:
            return False  # it tried and failed: the campaign does not push it again
        if member.offered_at is not None:
            return True  # keep offering to a vehicle already under way (resume after a drop)
        if view.state != "running":
            return False
        limit = c.spec.max_concurrent_downloads
        if limit and c.busy() >= limit:
            return False
        now = self.clock()
        self.store.mark_offered(c.record.campaign_id, vehicle_id, now)
        c.members[vehicle_id] = dataclasses.replace(member, offered_at=now)
        c.offered_local.add(vehicle_id)
        return True

    def on_report(self, rep: ReportRecord) -> ReportRecord:
        """Learn what the vehicle now runs; tag the report with its campaign, if any (newest wins)."""
        best: tuple[float, str] | None = None
        with self._lock:
            self.inventory.learn_active(rep)
            for m in self.store.memberships_of(rep.vehicle_id):
                c = self._cached(m.campaign_id)
                ours = c is not None and (c.spec.model, c.spec.version) == (rep.name, rep.version)
                if c is not None and ours and (best is None or c.record.created_at >= best[0]):
                    best = (c.record.created_at, m.campaign_id)
            if best is None:
                return rep
            c = self._cache[best[1]]
            if c.view is not None and (
                rep.status in FAILURE or rep.status in ("installed", "confirmed")
            ):
                c.finished_local[rep.vehicle_id] = rep.status
        return dataclasses.replace(rep, extra={**rep.extra, "campaign_id": best[1]})

    # -- derived state ------------------------------------------------------------------
    def _cached(self, campaign_id: str) -> _Cached | None:
        c = self._cache.get(campaign_id)
        if c is None:
            rec = self.store.get_campaign(campaign_id)
            if rec is None:
                return None
            members = {m.vehicle_id: m for m in self.store.list_campaign_members(campaign_id)}
            c = self._cache[campaign_id] = _Cached(
                rec, CampaignSpec.from_json(rec.spec_json), members
            )
        return c

    def _views(self, force: bool = False) -> dict[str, CampaignView]:
        """Derive every campaign's state (cached for ``refresh_s``); append the events it calls for."""
        now = self.clock()
        inventory: dict[str, VehicleRecord] | None = None
        out = {}
        for rec in self.store.list_campaigns():
            c = self._cached(rec.campaign_id)
            assert c is not None
            final = c.view is not None and c.view.state not in ACTIVE
            if (
                c.view is not None
                and not force
                and (final or now - c.evaluated_at < self.refresh_s)
            ):
                out[rec.campaign_id] = c.view
                continue
            if inventory is None:
                inventory = {v.vehicle_id: v for v in self.store.list_vehicles()}
            out[rec.campaign_id] = self._derive(c, inventory, now)
        return out

    def _derive(self, c: _Cached, inventory: dict[str, VehicleRecord], now: float) -> CampaignView:
        cid = c.record.campaign_id
        # Offers recorded by other replicas show up here.
        c.members = {m.vehicle_id: m for m in self.store.list_campaign_members(cid)}
        reports: dict[str, list[ReportRecord]] = defaultdict(list)
        for rep in self.store.list_reports_for_model(c.spec.model, c.spec.version):
            if rep.extra.get("campaign_id") == cid:
                reports[rep.vehicle_id].append(rep)
        states = {}
        for vid, m in c.members.items():
            inv = inventory.get(vid)
            runs = (
                inv is not None and inv.installed.get(c.spec.model, ("", ""))[0] == c.spec.version
            )
            states[vid] = vehicle_state(m, reports.get(vid, []), runs, now, c.spec.timeout_s)
        view = derive(
            c.spec, self.store.list_campaign_events(cid), list(c.members.values()), states, now
        )
        view.campaign_id, view.created_at = cid, c.record.created_at
        for ev in view.new_events:
            self.store.add_campaign_event(
                CampaignEventRecord(
                    cid, now, ev.kind, ev.wave, json.dumps(ev.detail), actor=DERIVED_ACTOR
                )
            )
            log.info(
                "campaign %s: %s wave %d %s", cid, ev.kind, ev.wave, ev.detail.get("reason", "")
            )
        c.view, c.evaluated_at = view, now
        c.offered_local, c.finished_local = set(), {}
        return view

    def _withheld(
        self, views: dict[str, CampaignView]
    ) -> tuple[dict[tuple[str, str], float], set[tuple[str, str]]]:
        """(model, version) pairs held back by campaigns (since when), and those a completed one released."""
        held: dict[tuple[str, str], float] = {}
        completed = set()
        for v in views.values():
            key = None
            if v.spec.rollback_of:
                src = self._cached(v.spec.rollback_of)
                if src is not None:
                    key = (src.spec.model, src.spec.version)
            elif v.state != "completed":
                key = (v.spec.model, v.spec.version)
            else:
                completed.add((v.spec.model, v.spec.version))
            if key is not None:
                held[key] = max(held.get(key, v.created_at), v.created_at)
        return held, completed - held.keys()

    # -- admin --------------------------------------------------------------------------
    def create(self, spec: CampaignSpec, actor: str = "") -> CampaignView:
        """Select the vehicles from the inventory, split them into waves, open the first.

        ``actor`` (the caller's certificate identity) is recorded on the events it causes.
        """
        try:
            spec.validate()
        except SpecError as e:
            raise InvalidArgument(str(e)) from None
        model = self.store.get_model(spec.model, spec.version)
        if model is None:
            raise NotFound(f"model {spec.model} {spec.version} is not published")
        with self._lock:
            for cid, v in self._views(force=True).items():
                if v.spec.model == spec.model and v.state in ACTIVE and cid != spec.rollback_of:
                    raise AlreadyExists(
                        f"campaign {cid} ({v.spec.model} {v.spec.version}) is still {v.state}: "
                        "abort it or let it complete first"
                    )
            selected = [
                v.vehicle_id
                for v in self.store.list_vehicles()
                if spec.target.matches(v, spec.model)
                and (not model.hardware_ids or v.hardware_id in model.hardware_ids)
            ]
            known = set(selected)
            # Listed vehicles not seen yet still join: they get it when they first check in.
            selected += [
                v
                for v in spec.target.vehicle_ids
                if v not in known and self.store.get_vehicle(v) is None
            ]
            if not selected:
                # An empty campaign would complete at once and release the version to everyone.
                raise FailedPrecondition(
                    f"the selection {spec.target} matches no vehicle "
                    f"in the inventory that runs {spec.model} on hardware it supports"
                )
            now = self.clock()
            cid = f"c-{time.strftime('%Y%m%d', time.gmtime(now))}-{uuid.uuid4().hex[:6]}"
            waves = assign_waves(cid, selected, spec.waves)
            members = [CampaignMember(cid, vid, w) for vid, w in sorted(waves.items())]
            events = [
                CampaignEventRecord(
                    cid, now, "created", -1, json.dumps({"vehicles": len(members)}), actor
                ),
                CampaignEventRecord(cid, now, "wave_opened", 0, "{}", actor),
            ]
            try:
                self.store.add_campaign(CampaignRecord(cid, spec.to_json(), now), members, events)
            except StorageError as e:
                raise AlreadyExists(str(e)) from None
            log.info(
                "campaign %s: %s %s to %d vehicles in %d waves (by %s)",
                cid,
                spec.model,
                spec.version,
                len(members),
                len(spec.waves),
                actor or "unknown",
            )
            return self.view(cid)

    def list(self) -> list[CampaignView]:
        with self._lock:
            return list(self._views().values())

    def ids(self) -> builtins.list[str]:
        return [r.campaign_id for r in self.store.list_campaigns()]

    def view(self, campaign_id: str) -> CampaignView:
        """Freshly derived state of one campaign (late reports included)."""
        with self._lock:
            c = self._cached(campaign_id)
            if c is None:
                raise NotFound(f"no campaign {campaign_id!r}")
            inventory = {v.vehicle_id: v for v in self.store.list_vehicles()}
            return self._derive(c, inventory, self.clock())

    def events(self, campaign_id: str) -> builtins.list[CampaignEventRecord]:
        return self.store.list_campaign_events(campaign_id)

    def _act(
        self,
        campaign_id: str,
        kind: str,
        allowed: Collection[str],
        detail: dict[str, Any],
        actor: str,
    ) -> CampaignView:
        with self._lock:
            v = self.view(campaign_id)
            if v.state not in allowed:
                verb = {"paused": "pause", "resumed": "resume", "aborted": "abort"}[kind]
                raise FailedPrecondition(f"campaign {campaign_id} is {v.state}: cannot {verb} it")
            if kind == "resumed":
                # Failures seen so far are acknowledged by the operator; the threshold counts new ones.
                detail["acknowledged"] = {
                    vid: s.status for vid, s in sorted(v.vehicles.items()) if s.status in FAILURE
                }
            self.store.add_campaign_event(
                CampaignEventRecord(
                    campaign_id, self.clock(), kind, v.current_wave, json.dumps(detail), actor
                )
            )
            return self.view(campaign_id)

    def pause(self, campaign_id: str, reason: str = "", actor: str = "") -> CampaignView:
        return self._act(
            campaign_id, "paused", ("running",), {"reason": reason or "paused by operator"}, actor
        )

    def resume(self, campaign_id: str, reason: str = "", actor: str = "") -> CampaignView:
        return self._act(
            campaign_id, "resumed", ("paused",), {"reason": reason or "resumed by operator"}, actor
        )

    def abort(self, campaign_id: str, reason: str = "", actor: str = "") -> CampaignView:
        return self._act(
            campaign_id, "aborted", ACTIVE, {"reason": reason or "aborted by operator"}, actor
        )

    def rollback(
        self,
        campaign_id: str,
        to_version: str = "",
        waves: Sequence[WaveSpec] = (),
        reason: str = "",
        actor: str = "",
    ) -> CampaignView:
        """A campaign sending the previous version to every vehicle that took this one."""
        src = self.view(campaign_id)
        if src.spec.rollback_of:
            raise InvalidArgument(f"campaign {campaign_id} is itself a rollback")
        took = sorted(
            vid for vid, s in src.vehicles.items() if s.status in ("installed", "confirmed")
        )
        if not took:
            raise FailedPrecondition(f"no vehicle took {src.spec.version} in {campaign_id}")
        if not to_version:
            to_version = self._previous_version(src, took)
        if semver_key(to_version) >= semver_key(src.spec.version):
            raise InvalidArgument(
                f"rollback target {to_version} is not older than {src.spec.version}"
            )
        # Refused up front, not accepted and then reported as an attack by every car that took it.
        model, running = (
            src.spec.model,
            release_counter(self.store, src.spec.model, src.spec.version),
        )
        refuse_below_counter(
            model,
            to_version,
            release_counter(self.store, model, to_version),
            running or 0,
            f"the vehicles that took {src.spec.version} run",
        )
        if src.state in ACTIVE:
            self.abort(campaign_id, reason or "superseded by a rollback", actor)
        spec = CampaignSpec(
            name=f"rollback of {src.spec.name or campaign_id}",
            model=src.spec.model,
            version=to_version,
            target=TargetSelection(vehicle_ids=tuple(took)),
            waves=tuple(waves) or (WaveSpec(100.0),),
            threshold=src.spec.threshold,
            max_concurrent_downloads=src.spec.max_concurrent_downloads,
            timeout_s=src.spec.timeout_s,
            rollback_of=campaign_id,
        )
        view = self.create(spec, actor)
        # The source's own history says who rolled it back, and to which campaign.
        self.store.add_campaign_event(
            CampaignEventRecord(
                campaign_id,
                self.clock(),
                "rolled_back",
                src.current_wave,
                json.dumps({"reason": reason or "rolled back", "rollback": view.campaign_id}),
                actor,
            )
        )
        return view

    def _previous_version(self, src: CampaignView, took: builtins.list[str]) -> str:
        """What most of those vehicles ran before, from their reports; else the release before."""
        before: Counter[str] = Counter()
        for rep in self.store.list_reports_for_model(src.spec.model, src.spec.version):
            if rep.vehicle_id in took and rep.from_version:
                before[rep.from_version] += 1
        if before:
            return before.most_common(1)[0][0]
        older = [
            r.version
            for r in self.store.list_models(src.spec.model)
            if semver_key(r.version) < semver_key(src.spec.version)
        ]
        if not older:
            raise FailedPrecondition(
                f"no version of {src.spec.model} older than {src.spec.version}"
            )
        return max(older, key=semver_key)


def _is_downgrade(candidate: str, installed: str) -> bool:
    try:
        return semver_key(candidate) < semver_key(installed)
    except RegistryError:
        return False  # an installed version we cannot order: let the registry's choice stand
