"""gRPC servicers: thin adapters from the wire contract to ``Registry``."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from otawire import tls
from otawire.constants import (
    CHUNK_SIZE,
    FILE_KINDS,
    MAX_MESSAGE_BYTES,
    MESSAGE_BYTES,
    PUBLISHER_SERVICE,
    VEHICLE_SERVICE,
)
from otawire.paths import model_version_name
from otawire.v1 import ota_pb2, ota_pb2_grpc
from otawire.wire import (
    ENCODING,
    INSTALL_STATUS,
    RELEASE_KIND,
    from_str,
    timestamp,
    to_str,
    to_strs,
)
from server import authz
from server.aio_serving import AioServer, HandlerSet
from server.audit import AuditInterceptor, AuditLog
from server.campaigns.manager import CampaignManager
from server.campaigns.service import add_campaigns_service
from server.delivery import Offer
from server.errors import InvalidArgument, RegistryError
from server.fleet_service import add_fleet_service
from server.metrics import RegistryMetrics
from server.registry import Registry
from server.rpc import guarded, page_of
from server.storage.records import ModelRecord, ReportRecord

__all__ = [
    "CHUNK_SIZE",
    "MAX_MESSAGE_BYTES",
    "MESSAGE_BYTES",
    "PublisherServicer",
    "VehicleServicer",
    "create_server",
]

log = logging.getLogger(__name__)


def _record_pb(rec: ModelRecord) -> ota_pb2.ModelVersion:
    return ota_pb2.ModelVersion(
        name=rec.name,
        version=rec.version,
        sha256=rec.sha256,
        length=rec.length,
        target_path=rec.target_path,
        hardware_ids=list(rec.hardware_ids),
        metadata_json=rec.metadata_json,
        resource_name=model_version_name(rec.name, rec.version),
        publish_time=timestamp(rec.published_at),
    )


def _offer_pb(o: Offer) -> ota_pb2.UpdateOffer:
    """Offer's fields are UpdateOffer's, one for one; the encodings go to their enum."""
    fields = dataclasses.asdict(o)
    fields["encoding"] = from_str(ENCODING, o.encoding)
    fields["fallback_encoding"] = from_str(ENCODING, o.fallback_encoding)
    return ota_pb2.UpdateOffer(**fields)


def _actor(context: grpc.ServicerContext) -> str:
    """Who asks: the publisher certificate's name (recorded in the release log); "" on plain text."""
    ident = authz.require(context, "publisher")
    return ident.name if ident else ""


class PublisherServicer(ota_pb2_grpc.PublisherServicer):
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    @guarded
    def UploadModel(
        self, request_iterator: Iterator[ota_pb2.UploadModelRequest], context: grpc.ServicerContext
    ):
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("the first UploadModelRequest must carry the header")
        h = first.header

        def chunks() -> Iterator[bytes]:
            for req in request_iterator:
                if req.WhichOneof("part") != "chunk":
                    raise InvalidArgument("only one header is allowed, at the start")
                yield req.chunk

        rec = self._registry.publish_stream(
            h.name,
            h.version,
            h.length,
            h.sha256,
            chunks(),
            h.hardware_ids,
            h.metadata_json,
            h.signed_targets,
            allow_downgrade=h.allow_downgrade,
            reason=h.reason,
            actor=_actor(context),
        )
        return ota_pb2.UploadModelResponse(
            name=rec.name,
            version=rec.version,
            sha256=rec.sha256,
            length=rec.length,
            target_path=rec.target_path,
            bytes_received=rec.length,
            resource_name=model_version_name(rec.name, rec.version),
        )

    @guarded
    def ListModels(self, request: ota_pb2.ListModelsRequest, context: grpc.ServicerContext):
        page, token = self._registry.list_page(request.name, request.page_size, request.page_token)
        return ota_pb2.ListModelsResponse(
            versions=[_record_pb(r) for r in page], next_page_token=token
        )

    @guarded
    def GetMetadata(self, request: ota_pb2.GetMetadataRequest, context: grpc.ServicerContext):
        return ota_pb2.SignedMetadata(
            role=request.role, data=self._registry.get_metadata(request.role)
        )

    @guarded
    def PutMetadata(self, request: ota_pb2.PutMetadataRequest, context: grpc.ServicerContext):
        md = request.metadata
        version = self._registry.put_metadata(md.role, md.data)
        return ota_pb2.PutMetadataResponse(role=md.role, version=version)

    @guarded
    def AssignModel(self, request: ota_pb2.AssignModelRequest, context: grpc.ServicerContext):
        self._registry.director.assign(request.vehicle_id, request.name, request.version or None)
        return ota_pb2.AssignModelResponse(
            vehicle_id=request.vehicle_id, name=request.name, version=request.version
        )

    @guarded
    def ReleaseModel(self, request: ota_pb2.ReleaseModelRequest, context: grpc.ServicerContext):
        self._registry.release(
            request.name, request.version, request.scope, _actor(context), request.reason
        )
        return ota_pb2.ReleaseModelResponse(
            name=request.name, version=request.version, scope=request.scope
        )

    @guarded
    def ListReleases(self, request: ota_pb2.ListReleasesRequest, context: grpc.ServicerContext):
        page, token = page_of(
            self._registry.releases.log(request.name), request.page_size, request.page_token
        )
        return ota_pb2.ListReleasesResponse(
            releases=[
                ota_pb2.ReleaseEntry(
                    name=r.name,
                    version=r.version,
                    kind=from_str(RELEASE_KIND, r.kind),
                    scope=r.scope,
                    actor=r.actor,
                    reason=r.reason,
                    create_time=timestamp(r.at),
                )
                for r in page
            ],
            next_page_token=token,
        )


class VehicleServicer(ota_pb2_grpc.VehicleServicer):
    def __init__(self, registry: Registry, chunk_size: int = MESSAGE_BYTES) -> None:
        self._registry = registry
        self._chunk_size = chunk_size

    @guarded
    def CheckForUpdate(self, request: ota_pb2.CheckForUpdateRequest, context: grpc.ServicerContext):
        vehicle_id = authz.vehicle_for(context, request.vehicle_id)
        if not vehicle_id:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "CheckForUpdateRequest.vehicle_id is required"
            )
        installed = {m.name: (m.version, m.sha256) for m in request.installed}
        offers = self._registry.offers_for(
            vehicle_id,
            request.hardware_id,
            installed,
            request.wanted_models,
            request.tags,
            to_strs(ENCODING, request.accepted_encodings),
        )
        return ota_pb2.CheckForUpdateResponse(offers=[_offer_pb(o) for o in offers])

    @guarded
    def Download(self, request: ota_pb2.DownloadRequest, context: grpc.ServicerContext):
        vehicle_id = authz.vehicle_for(context, request.vehicle_id)
        kind = FILE_KINDS.get(request.kind)
        if kind is None:
            raise InvalidArgument(f"unsupported file kind {request.kind}")
        for offset, data, total in self._registry.read_chunks(
            kind, request.path, request.offset, request.max_bytes, self._chunk_size, vehicle_id
        ):
            if not context.is_active():
                return
            yield ota_pb2.DownloadChunk(offset=offset, data=data, total_length=total)

    @guarded
    def ReportInstall(self, request: ota_pb2.ReportInstallRequest, context: grpc.ServicerContext):
        rep = ReportRecord(
            vehicle_id=authz.vehicle_for(context, request.vehicle_id),
            name=request.name,
            version=request.version,
            status=to_str(INSTALL_STATUS, request.status),
            reason=request.reason,
            hardware_id=request.hardware_id,
            sha256=request.sha256,
            from_version=request.from_version,
            encoding=to_str(ENCODING, request.encoding),
            bytes_downloaded=request.bytes_downloaded,
            duration_s=request.duration_s,
            active_version=request.active_version,
        )
        self._registry.record_report(rep)
        return ota_pb2.ReportInstallResponse(accepted=True)

    @guarded
    def SubmitManifest(self, request: ota_pb2.SubmitManifestRequest, context: grpc.ServicerContext):
        ident = authz.require(context, "vehicle")
        try:
            rec = self._registry.director.process_manifest(
                request.manifest, ident, tls.peer_cert_pem(context)
            )
        except RegistryError as e:
            log.warning("manifest refused: %s", e)
            raise
        return ota_pb2.SubmitManifestResponse(accepted=True, counter=rec.counter)


def create_server(
    registry: Registry,
    listen: str = "127.0.0.1:0",
    max_workers: int = 16,
    metrics: RegistryMetrics | None = None,
    *,
    tls_files: tls.TlsFiles | None = None,
    insecure: bool = False,
    chunk_size: int = MESSAGE_BYTES,
    audit: AuditLog | None = None,
) -> tuple[AioServer, int]:
    """Build and start a registry gRPC server (``grpc.aio``); return it and the bound port.

    TLS with mutual authentication unless ``insecure`` is asked for explicitly.
    With ``metrics``, every call is counted and timed into it (see server/metrics.py).
    ``max_workers`` bounds the threads that run blocking work (SQL, signing,
    hashing); open streams do not hold them (``server/aio_serving.py``).
    gRPC sets SO_REUSEPORT on Linux, so several processes may listen on one
    port and the kernel spreads connections over them (``--workers``).
    Every change is recorded in ``audit`` (default: the log in the registry's store);
    server reflection is on, so ``grpcurl`` and other generic tools can list the APIs.
    """
    if tls_files is None and not insecure:
        raise tls.TlsError(
            "the registry needs TLS files (--ca/--cert/--key), or --insecure for plain text"
        )
    handlers = HandlerSet()
    ota_pb2_grpc.add_PublisherServicer_to_server(PublisherServicer(registry), handlers)
    ota_pb2_grpc.add_VehicleServicer_to_server(VehicleServicer(registry, chunk_size), handlers)
    audit = audit or AuditLog(registry.store)
    services = [
        "",
        PUBLISHER_SERVICE,
        VEHICLE_SERVICE,
        add_fleet_service(handlers, registry.store, audit),
    ]
    if isinstance(registry.rollouts, CampaignManager):
        services.append(add_campaigns_service(handlers, registry.rollouts))
    health_servicer = health.aio.HealthServicer()
    reflected = [*(s for s in services if s), health.SERVICE_NAME, reflection.SERVICE_NAME]

    def add_native(s: grpc.aio.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, s)
        reflection.enable_server_reflection(reflected, s)

    server = AioServer(
        handlers,
        # security (issue 4): each service only for its certificate role (after metrics, so refusals count);
        # the audit records only calls the role check let through and the servicer completed.
        [
            *([metrics.interceptor()] if metrics else []),
            authz.RoleInterceptor(),
            AuditInterceptor(audit),
        ],
        workers=max_workers,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
        add_native=add_native,
    )
    if tls_files is not None:
        port = server.add_secure_port(listen, tls.server_credentials(tls_files))
    else:
        log.warning(
            "registry on %s speaks plain text (--insecure): no authentication, no confidentiality",
            listen,
        )
        port = server.add_insecure_port(listen)
    if port == 0:
        server.stop(None)
        raise OSError(f"could not listen on {listen}")
    server.start()
    for svc in services:
        server.call(health_servicer.set(svc, health_pb2.HealthCheckResponse.SERVING))
    log.info("registry listening on %s (port %d)", listen, port)
    return server, port
