"""The registry's refusals: one class per kind, each knowing its gRPC status code.

Domain code raises these (free of gRPC otherwise); ``server/rpc.py`` turns one
into ``context.abort(error.code, message)``. The message is a one-line cause and
fix, shown to the operator or vehicle as is.
"""

from __future__ import annotations

import grpc


class RegistryError(Exception):
    """A request the registry refuses. Subclasses fix the gRPC status code."""

    code: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION


class InvalidArgument(RegistryError):
    """The request itself is malformed (bad name, version, upload, offset...)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class AlreadyExists(RegistryError):
    """What the request would create exists already (an immutable version, a campaign)."""

    code = grpc.StatusCode.ALREADY_EXISTS


class NotFound(RegistryError):
    code = grpc.StatusCode.NOT_FOUND


class TooLarge(RegistryError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(RegistryError):
    """The request is well-formed but the registry's state does not allow it now."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unsigned(FailedPrecondition):
    """Metadata is not signed (or not by the right keys): sign it where the key lives."""


class Replay(FailedPrecondition):
    """A vehicle manifest whose counter is not above the last one accepted."""


class PermissionDenied(RegistryError):
    code = grpc.StatusCode.PERMISSION_DENIED
