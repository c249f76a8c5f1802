"""The append-only audit log: who changed what, when, with which arguments.

Every change an operator makes through the registry's APIs is one entry:
publish, release, director assign, metadata signed offline (key rotation,
re-signed targets), and each campaign action. The actor is the identity the
client certificate proved (``publisher:ml-team``), never a claim in the request;
on a plain-text registry (``--insecure``) it is ``unauthenticated``.

Recording happens in a gRPC interceptor, after the servicer succeeded, so the
servicers stay thin and no new method of an audited kind can forget it. Each
entry is also one INFO line in the registry's log. Storage is append-only: the
ports have ``append`` and ``list``, no update and no delete.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from otawire import tls
from server.storage.ports import AuditStore
from server.storage.records import AuditEntry

log = logging.getLogger(__name__)

# gRPC method name -> audit action. Keyed by method, not service, so a renamed package keeps its audit.
AUDITED: dict[str, str] = {
    "UploadModel": "publish",
    "ReleaseModel": "release",
    "ReleaseVersion": "release",
    "AssignModel": "director.assign",
    "PutMetadata": "metadata.put",
    "CreateCampaign": "campaign.create",
    "PauseCampaign": "campaign.pause",
    "ResumeCampaign": "campaign.resume",
    "AbortCampaign": "campaign.abort",
    "RollbackCampaign": "campaign.rollback",
}
# Fields never copied into the log: payloads (kept as their size) and signatures.
_BULKY = {"chunk", "data", "signed_targets", "signed", "signature", "manifest"}


class AuditLog:
    """Appends entries to a store and logs each at INFO."""

    def __init__(self, store: AuditStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    def record(self, actor: str, action: str, args: dict[str, Any]) -> AuditEntry:
        entry = AuditEntry(self._clock(), actor, action, args)
        seq = self._store.append_audit(entry)
        log.info("audit: %s by %s %s", action, actor, json.dumps(args, sort_keys=True, default=str))
        return AuditEntry(entry.at, actor, action, args, seq)

    def list(
        self, limit: int = 100, actor: str = "", action: str = "", before_seq: int | None = None
    ) -> list[AuditEntry]:
        """Newest first."""
        return self._store.list_audit(limit, actor, action, before_seq)


def actor_of(context: grpc.ServicerContext) -> str:
    try:
        ident = tls.peer_identity(context)
    except tls.TlsError:
        return "unknown-certificate"
    return f"{ident.role}:{ident.name}" if ident else "unauthenticated"


def arguments(request: Message, response: Message | None = None) -> dict[str, Any]:
    """The request's fields as JSON, payloads replaced by their length; plus what the answer decided."""
    full = MessageToDict(request, preserving_proto_field_name=True)
    out: dict[str, Any] = {}
    for f, value in request.ListFields():
        if f.name in _BULKY:
            out[f"{f.name}_bytes"] = (
                len(value) if isinstance(value, bytes | str) else value.ByteSize()
            )
        elif isinstance(full.get(f.name), dict):
            out[f.name] = {k: v for k, v in full[f.name].items() if k not in _BULKY}
        else:
            out[f.name] = full[f.name]
    if response is not None:
        for key in ("campaign_id", "version", "target_path", "release_counter", "sha256"):
            f = response.DESCRIPTOR.fields_by_name.get(key)
            if f is not None and key not in out and getattr(response, key):
                out[key] = getattr(response, key)
    return out


class AuditInterceptor(grpc.ServerInterceptor):
    """Records every successful call of an audited method; failed calls changed nothing."""

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    def intercept_service(
        self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails
    ):
        handler = continuation(handler_call_details)
        action = AUDITED.get(handler_call_details.method.rpartition("/")[2])
        if handler is None or action is None or handler.response_streaming:
            return handler
        kw = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.request_streaming:  # an upload: the first message is its header
            return grpc.stream_unary_rpc_method_handler(
                self._streamed(handler.stream_unary, action), **kw
            )
        return grpc.unary_unary_rpc_method_handler(self._unary(handler.unary_unary, action), **kw)

    def _write(
        self, action: str, context: grpc.ServicerContext, request: Message | None, response: Message
    ) -> None:
        if context.code() not in (None, grpc.StatusCode.OK):
            return
        try:
            args = arguments(request, response) if request is not None else {}
            if action == "metadata.put" and args.get("role") in ("root", "director-root"):
                action = "keys.rotate"  # a new root is how keys change (rotate, revoke)
            self._audit.record(actor_of(context), action, args)
        except Exception:
            log.exception("AUDIT ENTRY LOST for %s", action)

    def _unary(self, behaviour: Callable, action: str) -> Callable:
        def wrapped(request: Message, context: grpc.ServicerContext) -> Message:
            response = behaviour(request, context)
            self._write(action, context, request, response)
            return response

        return wrapped

    def _streamed(self, behaviour: Callable, action: str) -> Callable:
        def wrapped(requests: Iterator[Message], context: grpc.ServicerContext) -> Message:
            first: list[Message] = []

            def tee() -> Iterator[Message]:
                for i, r in enumerate(requests):
                    if i == 0:
                        first.append(r)
                    yield r

            response = behaviour(tee(), context)
            header = first[0] if first else None
            part = (
                header.WhichOneof("part")
                if header is not None and header.DESCRIPTOR.oneofs
                else None
            )
            self._write(action, context, getattr(header, part) if part else header, response)
            return response

        return wrapped
