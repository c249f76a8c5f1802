"""The Campaigns gRPC service (admin API) and its client, over ``CampaignManager``."""

from __future__ import annotations

import grpc

from otawire import tls
from otawire.constants import CAMPAIGNS_SERVICE
from otawire.rpcerrors import describe
from otawire.v1 import campaigns_pb2 as pb
from otawire.v1 import campaigns_pb2_grpc as pb_grpc
from server.audit import actor_of
from server.campaigns.manager import CampaignManager
from server.campaigns.rollout import (
    CampaignSpec,
    CampaignView,
    TargetSelection,
    Threshold,
    WaveSpec,
)
from server.rpc import guarded


def spec_from_pb(m: pb.CampaignSpec) -> CampaignSpec:
    """Wire spec to domain spec; unset fields take the domain defaults."""
    defaults = CampaignSpec(name="", model="", version="")
    th = m.threshold if m.HasField("threshold") else None
    return CampaignSpec(
        name=m.name,
        model=m.model,
        version=m.version,
        target=TargetSelection(
            tuple(m.target.hardware_ids), tuple(m.target.tags), tuple(m.target.vehicle_ids)
        ),
        waves=tuple(_wave(w) for w in m.waves) or defaults.waves,
        threshold=Threshold(th.trip_failures, th.trip_failure_share, th.action or "abort")
        if th
        else defaults.threshold,
        max_concurrent_downloads=m.max_concurrent_downloads,
        timeout_s=m.timeout_s or defaults.timeout_s,
        require_confirmed=m.require_confirmed,
        rollback_of=m.rollback_of,
    )


def _wave(w: pb.WaveSpec) -> WaveSpec:
    return WaveSpec(w.percent, w.success_share, w.min_soak_s)


def spec_to_pb(s: CampaignSpec) -> pb.CampaignSpec:
    return pb.CampaignSpec(
        name=s.name,
        model=s.model,
        version=s.version,
        target=pb.TargetSelection(
            hardware_ids=s.target.hardware_ids, tags=s.target.tags, vehicle_ids=s.target.vehicle_ids
        ),
        waves=[
            pb.WaveSpec(percent=w.percent, success_share=w.success_share, min_soak_s=w.min_soak_s)
            for w in s.waves
        ],
        threshold=pb.ErrorThreshold(
            trip_failures=s.threshold.trip_failures,
            trip_failure_share=s.threshold.trip_failure_share,
            action=s.threshold.action,
        ),
        max_concurrent_downloads=s.max_concurrent_downloads,
        timeout_s=s.timeout_s,
        require_confirmed=s.require_confirmed,
        rollback_of=s.rollback_of,
    )


def status_pb(
    v: CampaignView, manager: CampaignManager, with_events: bool = True
) -> pb.CampaignStatus:
    waves = []
    for w in v.waves:
        c = w.counts
        waves.append(
            pb.WaveStatus(
                index=w.index,
                percent=w.spec.percent,
                size=w.size,
                state=w.state,
                pending=c["pending"],
                in_flight=c["in_flight"],
                installed=c["installed"],
                confirmed=c["confirmed"],
                failed=c["failed"] + c["rolled_back"] + c["attack_detected"],
                timed_out=c["timed_out"],
                opened_at=w.opened_at or 0.0,
                soaked_s=w.soaked_s,
                success_share=w.spec.success_share,
                min_soak_s=w.spec.min_soak_s,
            )
        )
    failures = [
        pb.FailureGroup(status=st, reason=reason, count=len(vids), vehicle_ids=vids[:5])
        for st, reason, vids in v.failure_groups(limit=20)
    ]
    events = (
        [
            pb.CampaignEvent(at=e.at, kind=e.kind, wave=e.wave, detail=e.detail, actor=e.actor)
            for e in manager.events(v.campaign_id)
        ]
        if with_events
        else []
    )
    return pb.CampaignStatus(
        campaign_id=v.campaign_id,
        spec=spec_to_pb(v.spec),
        state=v.state,
        state_reason=v.reason,
        current_wave=v.current_wave,
        created_at=v.created_at,
        vehicles=len(v.wave_of),
        waves=waves,
        failures=failures,
        events=events,
    )


class CampaignsServicer(pb_grpc.CampaignsServicer):
    def __init__(self, manager: CampaignManager) -> None:
        self._m = manager

    @guarded
    def CreateCampaign(self, request: pb.CreateCampaignRequest, context: grpc.ServicerContext):
        view = self._m.create(spec_from_pb(request.spec), actor_of(context))
        return status_pb(view, self._m)

    @guarded
    def ListCampaigns(self, request: pb.ListCampaignsRequest, context: grpc.ServicerContext):
        return pb.ListCampaignsResponse(
            campaigns=[
                status_pb(self._m.view(cid), self._m, with_events=False) for cid in self._m.ids()
            ]
        )

    def _act(self, context: grpc.ServicerContext, cid: str, fn) -> pb.CampaignStatus:
        if not cid:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "campaign_id is required")
        view = fn()
        return status_pb(view, self._m)

    @guarded
    def GetCampaign(self, request: pb.CampaignRef, context: grpc.ServicerContext):
        return self._act(context, request.campaign_id, lambda: self._m.view(request.campaign_id))

    @guarded
    def PauseCampaign(self, request: pb.CampaignRef, context: grpc.ServicerContext):
        return self._act(
            context,
            request.campaign_id,
            lambda: self._m.pause(request.campaign_id, request.reason, actor_of(context)),
        )

    @guarded
    def ResumeCampaign(self, request: pb.CampaignRef, context: grpc.ServicerContext):
        return self._act(
            context,
            request.campaign_id,
            lambda: self._m.resume(request.campaign_id, request.reason, actor_of(context)),
        )

    @guarded
    def AbortCampaign(self, request: pb.CampaignRef, context: grpc.ServicerContext):
        return self._act(
            context,
            request.campaign_id,
            lambda: self._m.abort(request.campaign_id, request.reason, actor_of(context)),
        )

    @guarded
    def RollbackCampaign(self, request: pb.RollbackRequest, context: grpc.ServicerContext):
        if not request.campaign_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "campaign_id is required")
        view = self._m.rollback(
            request.campaign_id,
            request.to_version,
            tuple(_wave(w) for w in request.waves),
            request.reason,
            actor_of(context),
        )
        return status_pb(view, self._m)


def add_campaigns_service(server, manager: CampaignManager) -> str:
    """Register the Campaigns service on ``server``; return its health-check name."""
    pb_grpc.add_CampaignsServicer_to_server(CampaignsServicer(manager), server)
    return CAMPAIGNS_SERVICE


class CampaignError(Exception):
    """The registry refused a campaign request or could not be reached."""


class CampaignClient:
    """Admin-side client of the Campaigns service (used by ``ota campaign``)."""

    def __init__(
        self,
        address: str,
        timeout_s: float = 30.0,
        *,
        tls_files: tls.TlsFiles | None = None,
        insecure: bool = False,
    ) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._insecure = insecure
        # security (issue 4): mutual TLS with a publisher certificate; plain text only if asked.
        self._channel = tls.secure_or_insecure_channel(address, tls_files, insecure)
        self._stub = pb_grpc.CampaignsStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> CampaignClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, request) -> pb.CampaignStatus:
        try:
            return getattr(self._stub, method)(request, timeout=self.timeout_s)
        except grpc.RpcError as e:
            raise CampaignError(describe(e, self.address, self._insecure)) from None

    def create(self, spec: CampaignSpec) -> pb.CampaignStatus:
        return self._call("CreateCampaign", pb.CreateCampaignRequest(spec=spec_to_pb(spec)))

    def list(self) -> list[pb.CampaignStatus]:
        return list(self._call("ListCampaigns", pb.ListCampaignsRequest()).campaigns)

    def get(self, campaign_id: str) -> pb.CampaignStatus:
        return self._call("GetCampaign", pb.CampaignRef(campaign_id=campaign_id))

    def pause(self, campaign_id: str, reason: str = "") -> pb.CampaignStatus:
        return self._call("PauseCampaign", pb.CampaignRef(campaign_id=campaign_id, reason=reason))

    def resume(self, campaign_id: str, reason: str = "") -> pb.CampaignStatus:
        return self._call("ResumeCampaign", pb.CampaignRef(campaign_id=campaign_id, reason=reason))

    def abort(self, campaign_id: str, reason: str = "") -> pb.CampaignStatus:
        return self._call("AbortCampaign", pb.CampaignRef(campaign_id=campaign_id, reason=reason))

    def rollback(
        self, campaign_id: str, to_version: str = "", reason: str = ""
    ) -> pb.CampaignStatus:
        return self._call(
            "RollbackCampaign",
            pb.RollbackRequest(campaign_id=campaign_id, to_version=to_version, reason=reason),
        )
