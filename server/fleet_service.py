"""The ``Fleet`` gRPC service (inventory and audit log, read-only) and its client.

Thin: the views come from ``server.fleet_view`` and ``server.audit``; this file
only pages, converts and maps errors. Page tokens are opaque to clients
(AIP-158) but carry the filter they were made for, so a changed filter with an
old token is refused instead of silently skipping vehicles.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any

import grpc

from otawire import tls
from otawire.rpcerrors import RpcFailure, describe
from otawire.v1 import fleet_pb2 as pb
from otawire.v1 import fleet_pb2_grpc as pb_grpc
from otawire.wire import INSTALL_STATUS, all_pages, from_str, timestamp
from server.audit import AuditEntry, AuditLog
from server.fleet_view import InventorySource, VehicleView, inventory
from server.vehicle_filter import FilterError

DEFAULT_PAGE, MAX_PAGE = 100, 1000


def vehicle_pb(v: VehicleView) -> pb.FleetVehicle:
    rep = v.last_report
    return pb.FleetVehicle(
        name=f"vehicles/{v.vehicle_id}",
        vehicle_id=v.vehicle_id,
        hardware_id=v.hardware_id,
        tags=list(v.tags),
        models=[
            pb.ModelState(model=m.name, installed_version=m.installed, active_version=m.active)
            for m in v.models
        ],
        first_seen_time=timestamp(v.first_seen),
        last_seen_time=timestamp(v.last_seen),
        campaigns=list(v.campaigns),
        last_report=None
        if rep is None
        else pb.LastReport(
            model=rep.name,
            version=rep.version,
            status=from_str(INSTALL_STATUS, rep.status),
            reason=rep.reason,
            report_time=timestamp(rep.received_at),
        ),
    )


def audit_pb(e: AuditEntry) -> pb.AuditEntry:
    return pb.AuditEntry(
        name=f"auditEntries/{e.seq}",
        create_time=timestamp(e.at),
        actor=e.actor,
        action=e.action,
        arguments_json=json.dumps(e.args, sort_keys=True, default=str),
    )


def _token(kind: str, position: Any, scope: str) -> str:
    raw = json.dumps(
        {"k": kind, "p": position, "s": hashlib.sha256(scope.encode()).hexdigest()[:16]}
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _untoken(token: str, kind: str, scope: str) -> Any:
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        ok = data["k"] == kind and data["s"] == hashlib.sha256(scope.encode()).hexdigest()[:16]
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ValueError(
            "page_token is not one this list gave for this filter; start again without it"
        )
    return data["p"]


def _page_size(n: int) -> int:
    if n < 0:
        raise ValueError(f"page_size {n} is negative; give 1..{MAX_PAGE} (0: {DEFAULT_PAGE})")
    return min(n or DEFAULT_PAGE, MAX_PAGE)


class FleetServicer(pb_grpc.FleetServicer):
    def __init__(self, store: InventorySource, audit: AuditLog | None) -> None:
        self._store = store
        self._audit = audit

    def ListVehicles(self, request: pb.ListVehiclesRequest, context: grpc.ServicerContext):
        try:
            size = _page_size(request.page_size)
            after = _untoken(request.page_token, "vehicles", request.filter)
            views = inventory(self._store, request.filter)
        except (FilterError, ValueError) as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        rest = [v for v in views if after is None or v.vehicle_id > after]
        page = rest[:size]
        more = len(rest) > size
        return pb.ListVehiclesResponse(
            vehicles=[vehicle_pb(v) for v in page],
            total_size=len(views),
            next_page_token=_token("vehicles", page[-1].vehicle_id, request.filter) if more else "",
        )

    def GetVehicle(self, request: pb.GetVehicleRequest, context: grpc.ServicerContext):
        vid = request.name.removeprefix("vehicles/")
        if not request.name.startswith("vehicles/") or not vid:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"name {request.name!r}: expected vehicles/VEHICLE_ID",
            )
        found = [v for v in inventory(self._store, f'vehicle_id = "{vid}"') if v.vehicle_id == vid]
        if not found:
            context.abort(
                grpc.StatusCode.NOT_FOUND, f"no vehicle {vid!r} has checked in with this registry"
            )
        return vehicle_pb(found[0])

    def ListAuditEntries(self, request: pb.ListAuditEntriesRequest, context: grpc.ServicerContext):
        if self._audit is None:
            return pb.ListAuditEntriesResponse()
        scope = f"{request.actor}\0{request.action}"
        try:
            size = _page_size(request.page_size)
            before = _untoken(request.page_token, "audit", scope)
        except ValueError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        entries = self._audit.list(size + 1, request.actor, request.action, before_seq=before)
        page, more = entries[:size], len(entries) > size
        return pb.ListAuditEntriesResponse(
            entries=[audit_pb(e) for e in page],
            next_page_token=_token("audit", page[-1].seq, scope) if more else "",
        )


def add_fleet_service(server: grpc.Server, store: InventorySource, audit: AuditLog | None) -> str:
    pb_grpc.add_FleetServicer_to_server(FleetServicer(store, audit), server)
    return "ota.v1.Fleet"


class FleetError(Exception):
    """A Fleet call failed; ``failure.refused`` tells a refusal from a transport failure."""

    def __init__(self, failure: RpcFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class FleetClient:
    def __init__(
        self,
        address: str,
        timeout_s: float = 30.0,
        *,
        tls_files: tls.TlsFiles | None = None,
        insecure: bool = False,
    ) -> None:
        self.address, self.timeout_s, self._insecure = address, timeout_s, insecure
        self._channel = tls.secure_or_insecure_channel(address, tls_files, insecure)
        self._stub = pb_grpc.FleetStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> FleetClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, fn: Callable[..., Any], request: Any) -> Any:
        try:
            return fn(request, timeout=self.timeout_s)
        except grpc.RpcError as e:
            raise FleetError(describe(e, self.address, self._insecure)) from None

    def vehicles(self, filter: str = "", page_size: int = 0) -> list[pb.FleetVehicle]:
        """Every matching vehicle, following page tokens."""

        def page(token: str) -> tuple[list[pb.FleetVehicle], str]:
            r = self._call(
                self._stub.ListVehicles,
                pb.ListVehiclesRequest(filter=filter, page_token=token, page_size=page_size),
            )
            return list(r.vehicles), r.next_page_token

        return all_pages(page)

    def vehicle(self, vehicle_id: str) -> pb.FleetVehicle:
        return self._call(
            self._stub.GetVehicle, pb.GetVehicleRequest(name=f"vehicles/{vehicle_id}")
        )

    def audit(self, limit: int = 100, actor: str = "", action: str = "") -> list[pb.AuditEntry]:
        out: list[pb.AuditEntry] = []
        token = ""
        while len(out) < limit:
            r = self._call(
                self._stub.ListAuditEntries,
                pb.ListAuditEntriesRequest(
                    page_size=min(limit - len(out), MAX_PAGE),
                    page_token=token,
                    actor=actor,
                    action=action,
                ),
            )
            out.extend(r.entries)
            token = r.next_page_token
            if not token:
                break
        return out
