"""Serve the registry's servicers on ``grpc.aio``: a slow reader costs a coroutine, not a thread.

The servicers (``server/service.py``, ``server/campaign_service.py`` and any
added later) stay plain, blocking code: SQL, signing and hashing block, and
writing them as coroutines would only move the blocking into the event loop.
This module serves them from one asyncio event loop and runs their blocking
parts in a **bounded** thread pool:

- a unary call runs its method in the pool and is answered from the loop;
- a server-streaming call (``Download``) pulls one message at a time from the
  method's generator in the pool, then *awaits* gRPC's flow control in the
  loop while the client reads it. A vehicle on a slow link therefore holds no
  thread and no database connection while it drains its buffer (PostgreSQL
  blob chunks are read through a pooled connection per chunk, see
  ``server/storage_pg.py``), so ten thousand of them fit in one process;
- request-streaming calls (publisher uploads) get a pool of their own, since
  the method blocks its thread while the publisher sends: an upload never
  makes a vehicle's check-in wait.

Sync server interceptors (metrics, certificate roles) are applied to the
blocking handler before it is adapted, exactly as ``grpc.server`` would, so
they keep their meaning. ``AioServer`` has the blocking ``stop``/``wait``
interface of ``grpc.Server`` that the CLI and the tests use; its event loop
runs in a thread of its own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent import futures
from typing import Any

import grpc
from grpc import aio

log = logging.getLogger(__name__)

_END = object()


class _Aborted(Exception):
    """Raised in a pool thread by ``SyncContext.abort``; the loop answers with the status."""


class SyncContext:
    """The blocking ``grpc.ServicerContext`` interface over an aio context.

    Status and details are recorded here (the pool thread must not touch the
    call) and applied by the loop when the method returns or aborts.
    """

    def __init__(self, ctx: aio.ServicerContext) -> None:
        self._ctx = ctx
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self._trailing: Sequence[tuple[str, str | bytes]] | None = None
        self._callbacks: list[Callable[[], None]] = []

    def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        if code == grpc.StatusCode.OK:
            raise ValueError("abort() needs a non-OK status code")
        self._code, self._details = code, details
        raise _Aborted(details)

    def abort_with_status(self, status: Any) -> None:
        self.abort(status.code, status.details)

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str:
        return self._details

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, str | bytes]]) -> None:
        self._trailing = metadata

    def is_active(self) -> bool:
        return not self._ctx.done()

    def add_callback(self, callback: Callable[[], None]) -> bool:
        self._callbacks.append(callback)
        return True

    def invocation_metadata(self) -> Any:
        return self._ctx.invocation_metadata()

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._ctx.auth_context()

    def peer(self) -> str:
        return self._ctx.peer()

    def peer_identities(self) -> Any:
        return self._ctx.peer_identities()

    def peer_identity_key(self) -> Any:
        return self._ctx.peer_identity_key()

    def time_remaining(self) -> float | None:
        return self._ctx.time_remaining()

    async def settle(self, aborted: bool) -> None:
        """Apply what the method set; on ``abort`` answer with its status (raises)."""
        if self._trailing is not None:
            self._ctx.set_trailing_metadata(tuple(self._trailing))
        if aborted:
            await self._ctx.abort(self._code or grpc.StatusCode.UNKNOWN, self._details)
        if self._code is not None:
            self._ctx.set_code(self._code)
        if self._details:
            self._ctx.set_details(self._details)

    def run_callbacks(self) -> None:
        for cb in self._callbacks:
            try:
                cb()
            except Exception:
                log.exception("RPC termination callback failed")


class Pools:
    """The bounded thread pools blocking servicer code runs in."""

    def __init__(self, workers: int, stream_workers: int) -> None:
        self.calls = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="registry")
        self.uploads = futures.ThreadPoolExecutor(
            max_workers=stream_workers, thread_name_prefix="registry-upload"
        )

    def shutdown(self) -> None:
        self.calls.shutdown(wait=False, cancel_futures=True)
        self.uploads.shutdown(wait=False, cancel_futures=True)


def _sync_requests(requests: AsyncIterator[Any], loop: asyncio.AbstractEventLoop) -> Iterator[Any]:
    """A blocking iterator (for a pool thread) over an aio request stream."""

    async def pull() -> Any:
        try:
            return await requests.__anext__()
        except StopAsyncIteration:
            return _END

    while True:
        item = asyncio.run_coroutine_threadsafe(pull(), loop).result()
        if item is _END:
            return
        yield item


def _close_later(
    gen: Iterator[Any], pending: asyncio.Future | None, pool: futures.Executor
) -> None:
    """Close a servicer generator (runs its ``finally``) once no thread is inside it."""
    close = getattr(gen, "close", None)
    if close is None:
        return

    def run(_: object = None) -> None:
        try:
            pool.submit(close)
        except RuntimeError:  # pool already shut down with the server
            close()

    if pending is not None and not pending.done():
        pending.add_done_callback(run)
    else:
        run()


def adapt(handler: grpc.RpcMethodHandler, pools: Pools) -> grpc.RpcMethodHandler:
    """The aio equivalent of a blocking method handler (see the module docstring)."""
    streaming_in, streaming_out = handler.request_streaming, handler.response_streaming
    behaviour = {
        (False, False): handler.unary_unary,
        (False, True): handler.unary_stream,
        (True, False): handler.stream_unary,
        (True, True): handler.stream_stream,
    }[(streaming_in, streaming_out)]
    pool = pools.uploads if streaming_in else pools.calls

    def start(request: Any) -> tuple[asyncio.AbstractEventLoop, Any]:
        loop = asyncio.get_running_loop()
        return loop, (_sync_requests(request, loop) if streaming_in else request)

    async def unary(request: Any, ctx: aio.ServicerContext) -> Any:
        loop, req = start(request)
        sc = SyncContext(ctx)
        try:
            response = await loop.run_in_executor(pool, behaviour, req, sc)
        except _Aborted:
            await sc.settle(aborted=True)
            raise  # not reached: settle raises the abort
        finally:
            sc.run_callbacks()
        await sc.settle(aborted=False)
        return response

    async def stream(request: Any, ctx: aio.ServicerContext) -> AsyncIterator[Any]:
        loop, req = start(request)
        sc = SyncContext(ctx)
        gen: Iterator[Any] | None = None
        pending: asyncio.Future | None = None
        try:
            try:
                pending = loop.run_in_executor(pool, lambda: iter(behaviour(req, sc)))
                gen = await pending
                while True:
                    pending = loop.run_in_executor(pool, next, gen, _END)
                    item = await pending
                    if item is _END:
                        break
                    yield item  # back-pressure: the loop waits here, no thread does
            except _Aborted:
                await sc.settle(aborted=True)
            await sc.settle(aborted=False)
        finally:
            if gen is not None:
                _close_later(gen, pending, pool)
            sc.run_callbacks()

    kw = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(streaming_in, streaming_out)]
    return make(stream if streaming_out else unary, **kw)


class HandlerSet:
    """Collects what generated ``add_*Servicer_to_server`` functions register (they take any server)."""

    def __init__(self) -> None:
        self.generic: list[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        pass  # the generic handler registered alongside answers for the same methods

    def lookup(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        for h in self.generic:
            found = h.service(details)
            if found is not None:
                return found
        return None


class _Adapted(grpc.GenericRpcHandler):
    """Looks a call up among the blocking handlers, through the sync interceptors, and adapts it."""

    def __init__(
        self, handlers: HandlerSet, interceptors: Sequence[grpc.ServerInterceptor], pools: Pools
    ) -> None:
        self._handlers, self._interceptors, self._pools = handlers, list(interceptors), pools

    def _intercepted(
        self, details: grpc.HandlerCallDetails, i: int = 0
    ) -> grpc.RpcMethodHandler | None:
        if i == len(self._interceptors):
            return self._handlers.lookup(details)
        return self._interceptors[i].intercept_service(
            lambda d: self._intercepted(d, i + 1), details
        )

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self._intercepted(details)
        return adapt(handler, self._pools) if handler is not None else None


class AioServer:
    """A ``grpc.aio`` server on its own event-loop thread, with ``grpc.Server``'s blocking interface."""

    def __init__(
        self,
        handlers: HandlerSet,
        interceptors: Sequence[grpc.ServerInterceptor],
        workers: int,
        options: Sequence[tuple[str, Any]],
        stream_workers: int = 4,
        add_native: Callable[[aio.Server], None] | None = None,
    ) -> None:
        self.pools = Pools(workers, stream_workers)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="registry-aio", daemon=True)
        self._thread.start()
        self._stopped = threading.Event()

        async def build() -> aio.Server:
            server = aio.server(options=list(options))
            server.add_generic_rpc_handlers((_Adapted(handlers, interceptors, self.pools),))
            if add_native is not None:
                add_native(server)
            return server

        self._server = self.call(build())

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def call(self, coro: Any, timeout: float | None = 30.0) -> Any:
        """Run a coroutine on the server's loop and wait for its result (from any other thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def add_secure_port(self, address: str, credentials: grpc.ServerCredentials) -> int:
        return self._server.add_secure_port(address, credentials)

    def add_insecure_port(self, address: str) -> int:
        return self._server.add_insecure_port(address)

    def start(self) -> None:
        self.call(self._server.start())

    def stop(self, grace: float | None) -> threading.Event:
        """Stop serving (in-flight calls get ``grace`` seconds); the event is set once stopped.

        Like ``grpc.Server.stop``, new calls are refused at once; without grace this
        also waits until in-flight calls are cancelled, so a test that "kills" a
        replica sees it gone when this returns.
        """
        if self._stopped.is_set() or self.loop.is_closed():
            return self._stopped

        async def stop() -> None:
            await self._server.stop(grace)

        def done(_: object) -> None:
            self.pools.shutdown()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._stopped.set()

        fut = asyncio.run_coroutine_threadsafe(stop(), self.loop)
        fut.add_done_callback(done)
        if not grace:
            self._stopped.wait(10)
        return self._stopped

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)
