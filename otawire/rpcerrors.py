"""One line a person can act on for a failed gRPC call: transport failure, or a refusal.

gRPC reports a registry that is not running, one speaking plain text to our TLS,
a certificate from another CA and a registry that said no with the same
exception type; only the last is the registry *refusing*. ``describe`` tells
them apart from the status code and core's detail text, and names the fix.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

# Status codes a registry answers with on purpose (the others come from the transport).
_REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.UNIMPLEMENTED,
}


@dataclass(frozen=True)
class RpcFailure:
    message: str
    refused: bool  # the registry answered "no"; False: it was never reached, or the link failed
    # Nothing listens at the address, or it does not resolve: the next call fails the same way,
    # so a caller stops its cycle here instead of waiting on downloads that cannot start.
    unreachable: bool = False

    def __str__(self) -> str:
        return self.message


def describe(
    e: grpc.RpcError, address: str, insecure: bool = False, connected_before: bool = False
) -> RpcFailure:
    """``connected_before``: this client's channel was READY before, so the registry accepted
    our certificate (and our TLS or plain text); a reset handshake is then the link dropping."""
    code = e.code() if callable(getattr(e, "code", None)) else grpc.StatusCode.UNKNOWN
    details = (e.details() if callable(getattr(e, "details", None)) else str(e)) or ""
    if code in _REFUSALS:
        return RpcFailure(f"registry {address} refused ({code.name}): {details}", refused=True)
    if code == grpc.StatusCode.INTERNAL:
        return RpcFailure(
            f"registry {address} failed answering: {details} (its log has the cause)", refused=False
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return RpcFailure(
            f"registry {address} did not answer in time (deadline exceeded): check that it runs "
            "and the link to it; transport failure, not a refusal",
            refused=False,
        )
    low = details.lower()
    if (
        "connection refused" in low
        or "name resolution" in low
        or "dns resolution" in low
        or "no route" in low
    ):
        if "refused" in low:
            return RpcFailure(
                f"registry at {address} is not listening (connection refused): start it with "
                "`ota registry serve`, or check --registry / OTA_REGISTRY",
                refused=False,
                unreachable=True,
            )
        return RpcFailure(
            f"registry at {address} is not reachable (cannot resolve or route to it): check the "
            "host in --registry / OTA_REGISTRY and the network",
            refused=False,
            unreachable=True,
        )
    if "wrong_version_number" in low:
        return RpcFailure(
            f"registry {address} speaks plain text, not TLS (started with --insecure?): serve it with "
            "--ca/--cert/--key, or pass --insecure here too",
            refused=False,
        )
    if (
        "bad_signature" in low
        or "certificate_verify_failed" in low
        or "certificate verify failed" in low
    ):
        return RpcFailure(
            f"registry {address}'s certificate is not issued by our --ca (another fleet's CA?): give "
            "the ca.pem of the registry's PKI",
            refused=False,
        )
    if "socket closed" in low or "connection reset" in low or "handshake" in low:
        if connected_before:
            return RpcFailure(
                f"registry {address}: the connection broke before it was set up ({details}); it "
                "accepted this vehicle before, so the link dropped: transport failure, not a refusal",
                refused=False,
            )
        if insecure:
            return RpcFailure(
                f"registry {address} speaks TLS and we sent plain text (--insecure): drop --insecure "
                "and give --ca/--cert/--key",
                refused=False,
            )
        return RpcFailure(
            f"registry {address} closed the TLS handshake: it does not accept our certificate "
            "(issued by another fleet CA, or expired); use a certificate from its PKI (`ota certs`)",
            refused=False,
        )
    return RpcFailure(
        f"registry {address} unreachable ({code.name}: {details}); transport failure, not a refusal",
        refused=False,
    )
