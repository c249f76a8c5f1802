"""Prometheus metrics for a registry replica, collected by a gRPC interceptor.

Every replica exposes its own ``/metrics`` over HTTP (``ota registry serve
--metrics-listen``); Prometheus scrapes each and sums. What an operator of a
fleet rollout watches:

- ``ota_registry_requests_total{service,method,code}``: calls answered, by status;
- ``ota_registry_request_seconds{service,method}``: latency (check-in latency is
  ``method="CheckForUpdate"``; for the Download stream it is the whole stream);
- ``ota_registry_bytes_served_total{kind,encoding}``: payload bytes streamed,
  by file kind and encoding (``full`` model, a codec such as ``tensordelta``,
  or ``metadata``);
- ``ota_registry_downloads_in_flight{kind}`` and
  ``ota_registry_download_resumes_total{kind}`` (a Download that starts past
  byte 0: a vehicle resuming, e.g. after its replica went away);
- ``ota_campaign_vehicles{campaign,state}``, ``ota_campaign_current_wave``
  and ``ota_campaign_state``: rollout progress, derived from the shared
  database at each scrape (the same on every replica: aggregate with ``max``);
- ``ota_install_reports_total{model,version,status}``: install outcomes the
  vehicles reported to this replica (installed, confirmed, failed, rolled_back, …);
- ``ota_fleet_vehicles{model,version}``: vehicles per installed version, and
  ``ota_tuf_expires_in_seconds{repository,role}``: time left before each
  served TUF role expires (negative: expired) — both from the database at
  each scrape, like the campaign figures.

Each ``RegistryMetrics`` has its own collector registry, so several replicas in
one test process do not mix their counts.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    120.0,
)
_KIND_NAMES = {1: "metadata", 2: "target", 3: "encoding"}  # ota.v1.FileKind values


@dataclass
class RegistryMetrics:
    """The metric families of one replica, and the interceptor that feeds them.

    ``codec_of`` names the codec of an ``encodings/<blob sha256>`` download
    (a delta or compressed model), e.g. from the metadata store.
    """

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    codec_of: Callable[[str], str | None] | None = None

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "ota_registry_requests",
            "gRPC calls answered",
            ["service", "method", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "ota_registry_request_seconds",
            "gRPC call latency",
            ["service", "method"],
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.bytes_served = Counter(
            "ota_registry_bytes_served",
            "payload bytes streamed by Download",
            ["kind", "encoding"],
            registry=r,
        )
        self.in_flight = Gauge(
            "ota_registry_downloads_in_flight", "Download streams now open", ["kind"], registry=r
        )
        self._codecs: dict[str, str] = {}
        self.install_reports = Counter(
            "ota_install_reports",
            "install outcomes reported by vehicles",
            ["model", "version", "status"],
            registry=r,
        )
        self.resumes = Counter(
            "ota_registry_download_resumes", "Downloads starting past byte 0", ["kind"], registry=r
        )

    def encoding_of(self, kind: str, path: str) -> str:
        """The label for bytes served: metadata, the full model, or the codec of an encoding."""
        if kind == "target":
            return "full"
        if kind != "encoding":
            return kind
        digest = path.rpartition("/")[2]
        codec = self._codecs.get(digest)
        if codec is None and self.codec_of is not None:
            try:
                codec = self.codec_of(digest)
            except Exception:
                log.exception("cannot name the codec of %s", path)
            if codec and len(self._codecs) < 4096:  # blobs are immutable: remember, bounded
                self._codecs[digest] = codec
        return codec or "unknown"

    def watch_campaigns(self, manager: CampaignSource) -> None:
        """Export campaign progress, derived from the database at each scrape.

        Every replica derives the same numbers from the shared database, so
        aggregate them with ``max`` (not ``sum``) across replicas.
        """
        self.registry.register(_CampaignCollector(manager))

    def watch_blobs(self, registry: Any) -> None:
        """Export the blob checks of ``registry.guard`` (``server/integrity.py``): bad blobs found by
        this replica since it started (a counter), and how many are out of service now."""
        self.registry.register(_BlobCollector(registry.guard))

    def watch_fleet(
        self, vehicles: Callable[[], Iterable[Any]], metadata: Callable[[str, str], bytes | None]
    ) -> None:
        """Export versions per vehicle and TUF expiry, derived at each scrape.

        ``vehicles()`` yields records with ``installed`` (name -> (version, sha256));
        ``metadata(repository, role)`` the served metadata bytes (repository
        ``image`` or ``director``), or None.
        """
        self.registry.register(_FleetCollector(vehicles, metadata))

    def count_report(self, model: str, version: str, status: str) -> None:
        self.install_reports.labels(model, version, status).inc()

    def interceptor(self) -> grpc.ServerInterceptor:
        return _MetricsInterceptor(self)

    def serve_http(self, listen: str) -> tuple[Any, int]:
        """Expose ``/metrics`` on ``host:port`` (port 0 picks a free one); return (server, port)."""
        host, _, port = listen.rpartition(":")
        server, _thread = start_http_server(
            int(port), addr=host or "127.0.0.1", registry=self.registry
        )
        bound = server.server_port
        log.info("metrics on http://%s:%d/metrics", host, bound)
        return server, bound

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        """One sample's current value (0 when it was never set): for tests and benchmarks."""
        value = self.registry.get_sample_value(name, labels or {})
        return value or 0.0


class CampaignSource(Protocol):
    """What the collector needs of ``server.campaigns.CampaignManager``."""

    def list(
        self,
    ) -> list[Any]: ...  # CampaignView: campaign_id, state, current_wave, waves[].counts


class _BlobCollector(Collector):
    def __init__(self, guard: Any) -> None:
        self._guard = guard

    def collect(self) -> Iterator[Metric]:
        bad = CounterMetricFamily(
            "ota_registry_bad_blobs", "blobs found not to match their sha256, taken out of service"
        )
        bad.add_metric([], self._guard.failures)
        out = GaugeMetricFamily(
            "ota_registry_blobs_out_of_service", "blobs this replica does not offer or serve"
        )
        out.add_metric([], len(self._guard.out_of_service))
        yield bad
        yield out


class _CampaignCollector(Collector):
    def __init__(self, manager: CampaignSource) -> None:
        self._manager = manager

    def collect(self) -> Iterator[Metric]:
        vehicles = GaugeMetricFamily(
            "ota_campaign_vehicles",
            "Campaign members by state (derived from reports)",
            labels=["campaign", "state"],
        )
        wave = GaugeMetricFamily(
            "ota_campaign_current_wave", "Index of the campaign's open wave", labels=["campaign"]
        )
        state = GaugeMetricFamily(
            "ota_campaign_state",
            "1 for the campaign's state (running, paused, aborted, completed)",
            labels=["campaign", "state"],
        )
        try:
            for view in self._manager.list():
                cid = view.campaign_id
                counts: collections.Counter[str] = collections.Counter()
                for w in view.waves:
                    counts.update(w.counts)
                for st, n in sorted(counts.items()):
                    vehicles.add_metric([cid, st], n)
                wave.add_metric([cid], view.current_wave)
                state.add_metric([cid, view.state], 1)
        except Exception:
            log.exception("cannot derive campaign metrics")
        yield from (vehicles, wave, state)


TUF_ROLES = (
    ("image", "root"),
    ("image", "targets"),
    ("image", "snapshot"),
    ("image", "timestamp"),
    ("director", "root"),
)


class _FleetCollector(Collector):
    def __init__(
        self, vehicles: Callable[[], Iterable[Any]], metadata: Callable[[str, str], bytes | None]
    ) -> None:
        self._vehicles = vehicles
        self._metadata = metadata

    def collect(self) -> Iterator[Metric]:
        from tuf.api.metadata import Metadata

        fleet = GaugeMetricFamily(
            "ota_fleet_vehicles",
            "Vehicles by installed model version (last check-in)",
            labels=["model", "version"],
        )
        expiry = GaugeMetricFamily(
            "ota_tuf_expires_in_seconds",
            "Seconds until the served metadata of a TUF role expires (negative: expired)",
            labels=["repository", "role"],
        )
        try:
            counts: collections.Counter[tuple[str, str]] = collections.Counter()
            for v in self._vehicles():
                counts.update((name, ver) for name, (ver, _sha) in v.installed.items())
            for (name, ver), n in sorted(counts.items()):
                fleet.add_metric([name, ver], n)
            now = time.time()
            for repo, role in TUF_ROLES:
                data = self._metadata(repo, role)
                if data:
                    expires = Metadata.from_bytes(data).signed.expires.timestamp()
                    expiry.add_metric([repo, role], round(expires - now, 1))
        except Exception:
            log.exception("cannot derive fleet metrics")
        yield from (fleet, expiry)


def _enum_name(msg: Any, field_name: str) -> str:
    """``INSTALL_STATUS_FAILED`` -> ``failed``, read from the message's own descriptor."""
    enum = msg.DESCRIPTOR.fields_by_name[field_name].enum_type
    value = enum.values_by_number.get(getattr(msg, field_name))
    if value is None:
        return "unknown"
    prefix = "".join(f"_{c}" if c.isupper() else c.upper() for c in enum.name).lstrip("_") + "_"
    return value.name.removeprefix(prefix).lower()


def _split(full_method: str) -> tuple[str, str]:
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


def _code(context: grpc.ServicerContext, failed: bool) -> str:
    code = context.code()
    if code is None:
        return "UNKNOWN" if failed else "OK"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


class _MetricsInterceptor(grpc.ServerInterceptor):
    def __init__(self, m: RegistryMetrics) -> None:
        self._m = m

    def intercept_service(
        self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails
    ):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        service, method = _split(handler_call_details.method)
        kw = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, service, method), **kw
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(handler.stream_unary, service, method), **kw
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(handler.unary_stream, service, method), **kw
            )
        return grpc.stream_stream_rpc_method_handler(
            self._stream(handler.stream_stream, service, method), **kw
        )

    def _done(
        self, service: str, method: str, context: grpc.ServicerContext, failed: bool, t0: float
    ) -> None:
        self._m.requests.labels(service, method, _code(context, failed)).inc()
        self._m.latency.labels(service, method).observe(time.perf_counter() - t0)

    def _unary(self, behavior: Callable, service: str, method: str) -> Callable:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            t0, failed = time.perf_counter(), True
            try:
                response = behavior(request, context)
                failed = False
                if method == "ReportInstall":
                    self._m.count_report(
                        request.name, request.version, _enum_name(request, "status")
                    )
                return response
            finally:
                self._done(service, method, context, failed, t0)

        return wrapped

    def _stream(self, behavior: Callable, service: str, method: str) -> Callable:
        m = self._m

        def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            t0, failed = time.perf_counter(), True
            kind = _KIND_NAMES.get(getattr(request, "kind", 0), "")
            bytes_counter = (
                m.bytes_served.labels(kind, m.encoding_of(kind, request.path)) if kind else None
            )
            if kind:
                m.in_flight.labels(kind).inc()
                if request.offset > 0:
                    m.resumes.labels(kind).inc()
            try:
                for response in behavior(request, context):
                    yield response
                    if bytes_counter is not None:  # counted once gRPC took it
                        bytes_counter.inc(len(response.data))
                failed = False
            finally:
                if kind:
                    m.in_flight.labels(kind).dec()
                self._done(service, method, context, failed, t0)

        return wrapped
