"""What every servicer shares: typed errors to statuses, unexpected ones to INTERNAL."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import grpc

from server.errors import InvalidArgument, RegistryError

log = logging.getLogger(__name__)
T = TypeVar("T")


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


def page_of(items: Sequence[T], page_size: int, page_token: str) -> tuple[list[T], str]:
    """One page of an in-memory list (AIP-158): the token is the next item's offset."""
    try:
        start = int(page_token or 0)
    except ValueError:
        raise InvalidArgument(f"invalid page_token {page_token!r}") from None
    if start < 0 or page_size < 0:
        raise InvalidArgument("page_size and page_token must not be negative")
    if not page_size:
        return list(items[start:]), ""
    end = start + page_size
    return list(items[start:end]), str(end) if end < len(items) else ""
