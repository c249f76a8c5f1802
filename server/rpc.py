"""What every servicer shares: typed errors to statuses, unexpected ones to INTERNAL."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, NoReturn

import grpc

from server.errors import RegistryError

log = logging.getLogger(__name__)


def abort(context: grpc.ServicerContext, e: RegistryError) -> NoReturn:
    context.abort(e.code, str(e))
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a ``RegistryError`` into its status, anything unexpected into INTERNAL (logged).

    Without this gRPC answers UNKNOWN with an empty text, which nobody can act on.
    """

    def fail(e: Exception, context: grpc.ServicerContext) -> NoReturn:
        if isinstance(e, grpc.RpcError) or context.code() is not None:
            raise e  # already a deliberate status (abort) or a call that failed below us
        if isinstance(e, RegistryError):
            abort(context, e)
        log.exception("%s failed", method.__name__)
        context.abort(grpc.StatusCode.INTERNAL, f"{method.__name__}: {type(e).__name__}: {e}")
        raise AssertionError("unreachable: context.abort raises")  # pragma: no cover

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def gen_wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                yield from method(self, request, context)
            except Exception as e:
                fail(e, context)

        return gen_wrapper

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as e:
            fail(e, context)

    return wrapper
