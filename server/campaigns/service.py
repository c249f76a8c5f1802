"""The Campaigns gRPC service (admin API) and its client, over ``CampaignManager``."""

from __future__ import annotations

from typing import Any

import grpc

from otawire import tls
from otawire.constants import CAMPAIGNS_SERVICE
from otawire.paths import campaign_name, parse_campaign_name
from otawire.rpcerrors import describe
from otawire.v1 import campaigns_pb2 as pb
from otawire.v1 import campaigns_pb2_grpc as pb_grpc
from otawire.wire import (
    CAMPAIGN_EVENT_KIND,
    CAMPAIGN_STATE,
    INSTALL_STATUS,
    THRESHOLD_ACTION,
    WAVE_STATE,
    all_pages,
    from_str,
    timestamp,
    to_str,
)
from server.audit import actor_of
from server.campaigns.manager import CampaignManager
from server.campaigns.rollout import (
    CampaignSpec,
    CampaignView,
    TargetSelection,
    Threshold,
    WaveSpec,
)
from server.errors import InvalidArgument
from server.rpc import guarded, page_of


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
        threshold=Threshold(
            th.trip_failures, th.trip_failure_share, to_str(THRESHOLD_ACTION, th.action) or "abort"
        )
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
            action=from_str(THRESHOLD_ACTION, s.threshold.action),
        ),
        max_concurrent_downloads=s.max_concurrent_downloads,
        timeout_s=s.timeout_s,
        require_confirmed=s.require_confirmed,
        rollback_of=s.rollback_of,
    )


def status_pb(v: CampaignView, manager: CampaignManager, with_events: bool = True) -> pb.Campaign:
    waves = []
    for w in v.waves:
        c = w.counts
        waves.append(
            pb.WaveStatus(
                index=w.index,
                percent=w.spec.percent,
                size=w.size,
                state=from_str(WAVE_STATE, w.state),
                pending=c["pending"],
                in_flight=c["in_flight"],
                installed=c["installed"],
                confirmed=c["confirmed"],
                failed=c["failed"] + c["rolled_back"] + c["attack_detected"],
                timed_out=c["timed_out"],
                open_time=timestamp(w.opened_at),
                soaked_s=w.soaked_s,
                success_share=w.spec.success_share,
                min_soak_s=w.spec.min_soak_s,
            )
        )
    failures = [
        pb.FailureGroup(
            status=from_str(INSTALL_STATUS, st),
            reason=reason,
            count=len(vids),
            vehicle_ids=vids[:5],
        )
        for st, reason, vids in v.failure_groups(limit=20)
    ]
    events = (
        [
            pb.CampaignEvent(
                event_time=timestamp(e.at),
                kind=from_str(CAMPAIGN_EVENT_KIND, e.kind),
                wave=e.wave,
                detail=e.detail,
                actor=e.actor,
            )
            for e in manager.events(v.campaign_id)
        ]
        if with_events
        else []
    )
    return pb.Campaign(
        name=campaign_name(v.campaign_id),
        campaign_id=v.campaign_id,
        spec=spec_to_pb(v.spec),
        state=from_str(CAMPAIGN_STATE, v.state),
        state_reason=v.reason,
        current_wave=v.current_wave,
        create_time=timestamp(v.created_at),
        vehicles=len(v.wave_of),
        waves=waves,
        failures=failures,
        events=events,
    )


def campaign_id_of(name: str) -> str:
    """The id in a request's ``campaigns/{campaign_id}``; INVALID_ARGUMENT otherwise."""
    cid = parse_campaign_name(name)
    if cid is None:
        raise InvalidArgument(f"name must be campaigns/{{campaign_id}}, not {name!r}")
    return cid


class CampaignsServicer(pb_grpc.CampaignsServicer):
    def __init__(self, manager: CampaignManager) -> None:
        self._m = manager

    @guarded
    def CreateCampaign(self, request: pb.CreateCampaignRequest, context: grpc.ServicerContext):
        view = self._m.create(spec_from_pb(request.spec), actor_of(context))
        return status_pb(view, self._m)

    @guarded
    def ListCampaigns(self, request: pb.ListCampaignsRequest, context: grpc.ServicerContext):
        page, token = page_of(self._m.ids(), request.page_size, request.page_token)
        return pb.ListCampaignsResponse(
            campaigns=[status_pb(self._m.view(cid), self._m, with_events=False) for cid in page],
            next_page_token=token,
        )

    @guarded
    def GetCampaign(self, request: pb.GetCampaignRequest, context: grpc.ServicerContext):
        cid = campaign_id_of(request.name)
        return status_pb(self._m.view(cid), self._m)

    @guarded
    def PauseCampaign(self, request: pb.PauseCampaignRequest, context: grpc.ServicerContext):
        return status_pb(
            self._m.pause(campaign_id_of(request.name), request.reason, actor_of(context)), self._m
        )

    @guarded
    def ResumeCampaign(self, request: pb.ResumeCampaignRequest, context: grpc.ServicerContext):
        return status_pb(
            self._m.resume(campaign_id_of(request.name), request.reason, actor_of(context)), self._m
        )

    @guarded
    def AbortCampaign(self, request: pb.AbortCampaignRequest, context: grpc.ServicerContext):
        return status_pb(
            self._m.abort(campaign_id_of(request.name), request.reason, actor_of(context)), self._m
        )

    @guarded
    def RollbackCampaign(self, request: pb.RollbackCampaignRequest, context: grpc.ServicerContext):
        view = self._m.rollback(
            campaign_id_of(request.name),
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

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=self.timeout_s)
        except grpc.RpcError as e:
            raise CampaignError(describe(e, self.address, self._insecure)) from None

    def create(self, spec: CampaignSpec) -> pb.Campaign:
        return self._call("CreateCampaign", pb.CreateCampaignRequest(spec=spec_to_pb(spec)))

    def list(self, page_size: int = 100) -> list[pb.Campaign]:
        """Every campaign, oldest first, fetched a page at a time."""

        def page(token: str) -> tuple[list[pb.Campaign], str]:
            resp = self._call(
                "ListCampaigns", pb.ListCampaignsRequest(page_size=page_size, page_token=token)
            )
            return list(resp.campaigns), resp.next_page_token

        return all_pages(page)

    def get(self, campaign_id: str) -> pb.Campaign:
        return self._call("GetCampaign", pb.GetCampaignRequest(name=campaign_name(campaign_id)))

    def pause(self, campaign_id: str, reason: str = "") -> pb.Campaign:
        return self._call(
            "PauseCampaign", pb.PauseCampaignRequest(name=campaign_name(campaign_id), reason=reason)
        )

    def resume(self, campaign_id: str, reason: str = "") -> pb.Campaign:
        return self._call(
            "ResumeCampaign",
            pb.ResumeCampaignRequest(name=campaign_name(campaign_id), reason=reason),
        )

    def abort(self, campaign_id: str, reason: str = "") -> pb.Campaign:
        return self._call(
            "AbortCampaign", pb.AbortCampaignRequest(name=campaign_name(campaign_id), reason=reason)
        )

    def rollback(self, campaign_id: str, to_version: str = "", reason: str = "") -> pb.Campaign:
        return self._call(
            "RollbackCampaign",
            pb.RollbackCampaignRequest(
                name=campaign_name(campaign_id), to_version=to_version, reason=reason
            ),
        )
