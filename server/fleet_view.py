"""The fleet inventory as an operator reads it: one view per vehicle, from stored facts.

Pure: it combines what storage already holds (the vehicle's last check-in, its
reports, its campaign memberships) and does no I/O. The ``Fleet`` gRPC API,
``ota vehicles`` and the dashboard all show these views, so they agree.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from server.storage import CampaignMember, ReportRecord, VehicleRecord
from server.vehicle_filter import VehicleFacts, compile_filter


@dataclass(frozen=True)
class ModelState:
    name: str
    installed: str = ""  # the version it reported at its last check-in
    active: str = (
        ""  # the version its last report says it serves (may differ during a health window)
    )


@dataclass(frozen=True)
class VehicleView:
    vehicle_id: str
    hardware_id: str
    tags: tuple[str, ...]
    models: tuple[ModelState, ...]
    first_seen: float
    last_seen: float
    last_report: ReportRecord | None
    campaigns: tuple[str, ...] = field(default=())

    def facts(self) -> VehicleFacts:
        """What ``server.vehicle_filter`` matches against."""
        tags = dict(t.partition("=")[::2] for t in self.tags)
        rep = self.last_report
        return VehicleFacts(
            vehicle_id=self.vehicle_id,
            hardware_id=self.hardware_id,
            tags=tags,
            model={m.name: m.installed for m in self.models if m.installed},
            active={m.name: m.active for m in self.models if m.active},
            status=rep.status if rep else "",
            reason=rep.reason if rep else "",
            campaign=self.campaigns,
        )


def vehicle_view(
    v: VehicleRecord, reports: Sequence[ReportRecord], members: Iterable[CampaignMember]
) -> VehicleView:
    """One vehicle's view; ``reports`` are its own, oldest first."""
    active: dict[str, str] = {}
    for rep in reports:
        if rep.active_version:
            active[rep.name] = rep.active_version
    names = sorted(set(v.installed) | set(active))
    models = tuple(ModelState(n, v.installed.get(n, ("", ""))[0], active.get(n, "")) for n in names)
    return VehicleView(
        vehicle_id=v.vehicle_id,
        hardware_id=v.hardware_id,
        tags=tuple(v.tags),
        models=models,
        first_seen=v.first_seen,
        last_seen=v.last_seen,
        last_report=reports[-1] if reports else None,
        campaigns=tuple(sorted({m.campaign_id for m in members})),
    )


class InventorySource(Protocol):
    """The storage the inventory reads (the fleet, reports and campaign ports)."""

    def list_vehicles(self) -> list[VehicleRecord]: ...
    def list_reports(self, vehicle_id: str | None = None) -> list[ReportRecord]: ...
    def memberships_of(self, vehicle_id: str) -> list[CampaignMember]: ...


def inventory(store: InventorySource, filter: str = "") -> list[VehicleView]:
    """Every vehicle matching ``filter`` (``server.vehicle_filter``; FilterError if it does not parse), by id."""
    match = compile_filter(filter)
    reports: dict[str, list[ReportRecord]] = collections.defaultdict(list)
    for rep in store.list_reports():
        reports[rep.vehicle_id].append(rep)
    views = (
        vehicle_view(v, reports.get(v.vehicle_id, []), store.memberships_of(v.vehicle_id))
        for v in store.list_vehicles()
    )
    return sorted((v for v in views if match(v.facts())), key=lambda v: v.vehicle_id)
