"""Who may call what: authorisation from the certificate mutual TLS verified.

Each gRPC service belongs to one role (``urn:ota:<role>:<name>`` in the client
certificate, see ``ota/tls.py``): the Vehicle service to vehicles, the
Publisher and Campaigns services (and any other ``ota.v1`` admin service) to
publishers. A server interceptor enforces it before any servicer code runs,
so a new method cannot forget. Within the Vehicle service a vehicle acts only
for itself: ``vehicle_for`` replaces the id a request claims by the
certificate's. On a plain-text server (``--insecure``) there is no certificate
and identities are taken on faith: that mode exists for local experiments.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc

from otawire import tls

log = logging.getLogger(__name__)

SERVICE_ROLES = {
    "ota.v1.Vehicle": "vehicle",
    "ota.v1.Publisher": "publisher",
    "ota.v1.Campaigns": "publisher",
}
ADMIN_ROLE = "publisher"  # for ota.v1 services not listed: deny vehicles by default


def role_for(method: str) -> str | None:
    """The role a full method name (``/ota.v1.Vehicle/Download``) requires; None: open (health)."""
    service = method.lstrip("/").split("/", 1)[0]
    if service in SERVICE_ROLES:
        return SERVICE_ROLES[service]
    return ADMIN_ROLE if service.startswith("ota.") else None


def require(context: grpc.ServicerContext, role: str) -> tls.Identity | None:
    """The caller's certified identity, which must hold ``role``; None on a plain-text server."""
    try:
        ident = tls.peer_identity(context)
    except tls.TlsError as e:
        context.abort(grpc.StatusCode.PERMISSION_DENIED, f"client certificate refused: {e}")
    if ident is not None and ident.role != role:
        context.abort(
            grpc.StatusCode.PERMISSION_DENIED,
            f"the {role} API refuses {ident.role} certificate {ident.name!r}",
        )
    return ident


def vehicle_for(context: grpc.ServicerContext, claimed: str) -> str:
    """The vehicle id a call acts for: the certificate's; a claim of another id is refused."""
    ident = require(context, "vehicle")
    if ident is None:
        return claimed  # --insecure: identities are taken on faith
    if claimed and claimed != ident.name:
        context.abort(
            grpc.StatusCode.PERMISSION_DENIED,
            f"vehicle {ident.name!r} cannot act for vehicle {claimed!r}",
        )
    return ident.name


class RoleInterceptor(grpc.ServerInterceptor):
    """Refuses a call whose certificate lacks the role of the service it calls."""

    def intercept_service(
        self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails
    ):
        handler = continuation(handler_call_details)
        role = role_for(handler_call_details.method)
        if handler is None or role is None:
            return handler

        def guard(behaviour: Callable) -> Callable:
            def checked(request_or_iterator, context):
                require(context, role)
                return behaviour(request_or_iterator, context)

            return checked

        kinds = {
            (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
            (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
            (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
            (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
        }
        attr, make = kinds[(handler.request_streaming, handler.response_streaming)]
        return make(
            guard(getattr(handler, attr)),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
