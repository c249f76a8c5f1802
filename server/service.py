"""gRPC servicers: thin adapters from the wire contract to ``Registry``."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
from collections.abc import Iterator
from concurrent import futures
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ota import tls
from ota.v1 import ota_pb2, ota_pb2_grpc
from server import authz
from server.audit import AuditInterceptor, AuditLog
from server.audit_store import open_audit
from server.fleet_service import add_fleet_service
from server.director import DirectorError
from server.registry import Registry, RegistryError
from server.storage import ReportRecord

if TYPE_CHECKING:
    from server.metrics import RegistryMetrics

log = logging.getLogger(__name__)

CHUNK_SIZE = 256 * 1024
MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # every message is a chunk or a small record

_CODES = {
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "exists": grpc.StatusCode.ALREADY_EXISTS,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "too_large": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "unsigned": grpc.StatusCode.FAILED_PRECONDITION,
    "denied": grpc.StatusCode.PERMISSION_DENIED,
    "replay": grpc.StatusCode.FAILED_PRECONDITION,
}
_KINDS = {
    ota_pb2.FILE_KIND_METADATA: "metadata",
    ota_pb2.FILE_KIND_TARGET: "target",
    ota_pb2.FILE_KIND_ENCODING: "encoding",
}


def guarded(method):
    """Turn unexpected exceptions into INTERNAL with a message, and log them.

    Without this gRPC answers UNKNOWN with an empty text, which nobody can act on.
    """

    def internal(e: Exception, context: grpc.ServicerContext) -> None:
        if isinstance(e, grpc.RpcError) or context.code() is not None:
            raise e  # already a deliberate status (abort) or a call that failed below us
        log.exception("%s failed", method.__name__)
        context.abort(grpc.StatusCode.INTERNAL, f"{method.__name__}: {type(e).__name__}: {e}")

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def gen_wrapper(self, request, context):
            try:
                yield from method(self, request, context)
            except Exception as e:
                internal(e, context)

        return gen_wrapper

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except Exception as e:
            internal(e, context)

    return wrapper


def _abort(context: grpc.ServicerContext, e: RegistryError | DirectorError) -> None:
    context.abort(_CODES.get(e.kind, grpc.StatusCode.FAILED_PRECONDITION), str(e))




def _record_pb(rec) -> ota_pb2.ModelVersion:
    return ota_pb2.ModelVersion(
        name=rec.name,
        version=rec.version,
        sha256=rec.sha256,
        length=rec.length,
        target_path=rec.target_path,
        hardware_ids=list(rec.hardware_ids),
        published_at=rec.published_at,
        metadata_json=rec.metadata_json,
    )


class PublisherServicer(ota_pb2_grpc.PublisherServicer):
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    @guarded
    def UploadModel(self, request_iterator: Iterator[ota_pb2.UploadRequest], context: grpc.ServicerContext):
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first UploadRequest must carry the header")
        h = first.header

        def chunks() -> Iterator[bytes]:
            for req in request_iterator:
                if req.WhichOneof("part") != "chunk":
                    raise RegistryError("invalid", "only one header is allowed, at the start")
                yield req.chunk

        try:
            rec = self._registry.publish_stream(
                h.name, h.version, h.length, h.sha256, chunks(), h.hardware_ids, h.metadata_json, h.signed_targets
            )
        except RegistryError as e:
            _abort(context, e)
        return ota_pb2.UploadResponse(
            name=rec.name,
            version=rec.version,
            sha256=rec.sha256,
            length=rec.length,
            target_path=rec.target_path,
            bytes_received=rec.length,
        )

    @guarded
    def ListModels(self, request: ota_pb2.ListModelsRequest, context: grpc.ServicerContext):
        return ota_pb2.ListModelsResponse(versions=[_record_pb(r) for r in self._registry.list_versions(request.name)])

    @guarded
    def GetMetadata(self, request: ota_pb2.MetadataRequest, context: grpc.ServicerContext):
        try:
            return ota_pb2.SignedMetadata(role=request.role, data=self._registry.get_metadata(request.role))
        except RegistryError as e:
            _abort(context, e)

    @guarded
    def PutMetadata(self, request: ota_pb2.SignedMetadata, context: grpc.ServicerContext):
        try:
            version = self._registry.put_metadata(request.role, request.data)
        except RegistryError as e:
            _abort(context, e)
        return ota_pb2.PutMetadataResponse(role=request.role, version=version)

    @guarded
    def AssignModel(self, request: ota_pb2.AssignRequest, context: grpc.ServicerContext):
        try:
            self._registry.director.assign(request.vehicle_id, request.name, request.version or None)
        except DirectorError as e:
            _abort(context, e)
        return ota_pb2.AssignResponse(vehicle_id=request.vehicle_id, name=request.name, version=request.version)


class VehicleServicer(ota_pb2_grpc.VehicleServicer):
    def __init__(self, registry: Registry, chunk_size: int = CHUNK_SIZE) -> None:
        self._registry = registry
        self._chunk_size = chunk_size

    @guarded
    def CheckForUpdate(self, request: ota_pb2.CheckRequest, context: grpc.ServicerContext):
        vehicle_id = authz.vehicle_for(context, request.vehicle_id)
        if not vehicle_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "CheckRequest.vehicle_id is required")
        installed = {m.name: (m.version, m.sha256) for m in request.installed}
        offers = self._registry.offers_for(
            vehicle_id, request.hardware_id, installed, request.wanted_models, request.tags
        )
        # Offer's fields are UpdateOffer's, one for one.
        return ota_pb2.CheckResponse(offers=[ota_pb2.UpdateOffer(**dataclasses.asdict(o)) for o in offers])

    @guarded
    def Download(self, request: ota_pb2.DownloadRequest, context: grpc.ServicerContext):
        vehicle_id = authz.vehicle_for(context, request.vehicle_id)
        kind = _KINDS.get(request.kind)
        if kind is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported file kind {request.kind}")
        try:
            for offset, data, total in self._registry.read_chunks(
                kind, request.path, request.offset, request.max_bytes, self._chunk_size, vehicle_id
            ):
                if not context.is_active():
                    return
                yield ota_pb2.DownloadChunk(offset=offset, data=data, total_length=total)
        except RegistryError as e:
            _abort(context, e)

    @guarded
    def ReportInstall(self, request: ota_pb2.InstallReport, context: grpc.ServicerContext):
        rep = ReportRecord(
            vehicle_id=authz.vehicle_for(context, request.vehicle_id),
            name=request.name,
            version=request.version,
            status=ota_pb2.InstallStatus.Name(request.status).removeprefix("INSTALL_STATUS_").lower(),
            reason=request.reason,
            hardware_id=request.hardware_id,
            sha256=request.sha256,
            from_version=request.from_version,
            encoding=request.encoding,
            bytes_downloaded=request.bytes_downloaded,
            duration_s=request.duration_s,
            active_version=request.active_version,
        )
        try:
            self._registry.record_report(rep)
        except RegistryError as e:
            _abort(context, e)
        return ota_pb2.ReportAck(accepted=True)

    @guarded
    def SubmitManifest(self, request: ota_pb2.SignedManifest, context: grpc.ServicerContext):
        ident = authz.require(context, "vehicle")
        try:
            rec = self._registry.director.process_manifest(request, ident, tls.peer_cert_pem(context))
        except DirectorError as e:
            log.warning("manifest refused: %s", e)
            _abort(context, e)
        return ota_pb2.ManifestAck(accepted=True, counter=rec.counter)

def create_server(
    registry: Registry, listen: str = "127.0.0.1:0", max_workers: int = 16, metrics: RegistryMetrics | None = None,
    *, tls_files: tls.TlsFiles | None = None, insecure: bool = False, audit: AuditLog | None = None,
) -> tuple[grpc.Server, int]:
    """Build and start a registry gRPC server; return it and the bound port.

    TLS with mutual authentication unless ``insecure`` is asked for explicitly.
    With ``metrics``, every call is counted and timed into it (see server/metrics.py).
    Every change is recorded in ``audit`` (default: the log in the registry's store).
    Server reflection is on, so ``grpcurl`` and other generic tools can list the APIs.
    """
    if tls_files is None and not insecure:
        raise tls.TlsError("the registry needs TLS files (--ca/--cert/--key), or --insecure for plain text")
    audit = audit or open_audit(registry.store)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="registry"),
        # security (issue 4): each service only for its certificate role (after metrics, so refusals count);
        # the audit records only calls the role check let through and the servicer completed.
        interceptors=[*([metrics.interceptor()] if metrics else []), authz.RoleInterceptor(),
                      AuditInterceptor(audit)],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # gRPC's default lets a second registry bind the same port and take half the calls.
            ("grpc.so_reuseport", 0),
        ],
    )
    ota_pb2_grpc.add_PublisherServicer_to_server(PublisherServicer(registry), server)
    ota_pb2_grpc.add_VehicleServicer_to_server(VehicleServicer(registry), server)
    services = ["", "ota.v1.Publisher", "ota.v1.Vehicle", add_fleet_service(server, registry.store, audit)]
    if registry.rollouts is not None and hasattr(registry.rollouts, "create"):
        from server.campaign_service import add_campaigns_service

        services.append(add_campaigns_service(server, registry.rollouts))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*(s for s in services if s), health.SERVICE_NAME,
                                         reflection.SERVICE_NAME], server)
    try:
        if tls_files is not None:
            port = server.add_secure_port(listen, tls.server_credentials(tls_files))
        else:
            log.warning("registry on %s speaks plain text (--insecure): no authentication, no confidentiality", listen)
            port = server.add_insecure_port(listen)
    except RuntimeError as e:  # grpc raises this when it cannot bind
        raise OSError(f"cannot listen on {listen} ({e}): is another registry running there? "
                      "Stop it or pick another --listen port") from None
    if port == 0:
        raise OSError(f"cannot listen on {listen}: is another registry running there? "
                      "Stop it or pick another --listen port")
    server.start()
    for svc in services:
        health_servicer.set(svc, health_pb2.HealthCheckResponse.SERVING)
    log.info("registry listening on %s (port %d)", listen, port)
    return server, port
