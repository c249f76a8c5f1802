"""The dashboard's data, read from a running ``Registry`` (the same facts the gRPC APIs serve)."""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

from google.protobuf.json_format import MessageToDict

from server.fleet_view import VehicleView, vehicle_view
from server.registry import Registry
from server.vehicle_filter import FilterError, compile_filter

from .web import DashboardError


def vehicle_json(v: VehicleView) -> dict[str, Any]:
    rep = v.last_report
    return {
        "vehicle_id": v.vehicle_id, "hardware_id": v.hardware_id, "tags": list(v.tags),
        "models": [dataclasses.asdict(m) for m in v.models], "first_seen": v.first_seen, "last_seen": v.last_seen,
        "last_report": None if rep is None else {
            "name": rep.name, "version": rep.version, "status": rep.status, "reason": rep.reason,
            "at": rep.received_at},
        "campaigns": list(v.campaigns),
    }


class RegistrySource:
    """``DashboardSource`` over a registry's store, campaigns and audit log."""

    def __init__(self, registry: Registry) -> None:
        self._reg = registry

    def fleet(self, filter: str = "") -> list[VehicleView]:  # noqa: A002 - AIP's name for it
        try:
            match = compile_filter(filter)
        except FilterError as e:
            raise DashboardError(str(e)) from None
        store = self._reg.store
        reports: dict[str, list] = collections.defaultdict(list)
        for rep in store.list_reports():
            reports[rep.vehicle_id].append(rep)
        views = (vehicle_view(v, reports.get(v.vehicle_id, []), store.memberships_of(v.vehicle_id))
                 for v in store.list_vehicles())
        return [v for v in views if match(v.facts())]

    def vehicles(self, filter: str) -> list[dict[str, Any]]:  # noqa: A002
        return [vehicle_json(v) for v in self.fleet(filter)]

    def campaigns(self) -> list[dict[str, Any]]:
        from server.campaign_service import status_pb

        manager = self._reg.rollouts
        if manager is None or not hasattr(manager, "list"):
            return []
        return [MessageToDict(status_pb(v, manager, with_events=False), preserving_proto_field_name=True,
                              always_print_fields_with_no_presence=True) for v in manager.list()]

    def models(self) -> list[dict[str, Any]]:
        store = self._reg.store
        records = self._reg.list_versions()
        version_of = {r.sha256: r.version for r in records}
        out = []
        for r in records:
            encodings = [{"codec": e.codec, "base_version": version_of.get(e.base_sha256, e.base_sha256[:12]),
                          "length": e.length} for e in store.list_encodings(r.name, r.version)]
            out.append({"name": r.name, "version": r.version, "length": r.length, "sha256": r.sha256,
                        "hardware_ids": list(r.hardware_ids), "published_at": r.published_at,
                        "encodings": [{"codec": "full", "base_version": "", "length": r.length}, *encodings]})
        return out

    def audit(self, limit: int) -> list[dict[str, Any]]:
        log = getattr(self._reg, "audit", None)
        if log is None:
            return []
        return [{"at": e.at, "actor": e.actor, "action": e.action, "args": e.args} for e in log.list(limit=limit)]
