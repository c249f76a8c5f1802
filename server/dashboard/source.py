"""The dashboard's data, read from a running ``Registry`` (the same facts the gRPC APIs serve)."""

from __future__ import annotations

from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from server.audit import AuditLog
from server.campaigns.manager import CampaignManager
from server.fleet_service import audit_pb, vehicle_pb
from server.fleet_view import inventory
from server.registry import Registry


def _json(msg: Message) -> dict[str, Any]:
    return MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


class RegistrySource:
    """``DashboardSource`` over a registry's store, campaigns and audit log."""

    def __init__(self, registry: Registry, audit: AuditLog | None = None) -> None:
        self._reg = registry
        self._audit = audit

    def vehicles(self, filter: str) -> list[dict[str, Any]]:
        """The same JSON as ``ota vehicles list --json`` (the Fleet API's FleetVehicle); bad filters: 400."""
        return [_json(vehicle_pb(v)) for v in inventory(self._reg.store, filter)]

    def campaigns(self) -> list[dict[str, Any]]:
        from server.campaigns.service import status_pb

        manager = self._reg.rollouts
        if not isinstance(manager, CampaignManager):
            return []
        # With their event history: the dashboard shows who created, paused or aborted each one.
        return [_json(status_pb(v, manager)) for v in manager.list()]

    def models(self) -> list[dict[str, Any]]:
        store = self._reg.store
        records = self._reg.list_versions()
        version_of = {r.sha256: r.version for r in records}
        out = []
        for r in records:
            encodings = [
                {
                    "codec": e.codec,
                    "base_version": version_of.get(e.base_sha256, e.base_sha256[:12]),
                    "length": e.length,
                }
                for e in store.list_encodings(r.name, r.version)
            ]
            out.append(
                {
                    "name": r.name,
                    "version": r.version,
                    "length": r.length,
                    "sha256": r.sha256,
                    "hardware_ids": list(r.hardware_ids),
                    "published_at": r.published_at,
                    "encodings": [
                        {"codec": "full", "base_version": "", "length": r.length},
                        *encodings,
                    ],
                }
            )
        return out

    def audit(self, limit: int) -> list[dict[str, Any]]:
        if self._audit is None:
            return []
        return [{**_json(audit_pb(e)), "arguments": e.args} for e in self._audit.list(limit=limit)]
