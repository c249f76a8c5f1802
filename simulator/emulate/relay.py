"""A userspace relay that gives each vehicle's link its latency and its windows.

The kernel shapes bandwidth (``tc tbf`` on the veth); what ``netem`` would do
and this kernel cannot, the relay does at the byte-stream level:

* **latency**: every chunk read in either direction is delivered half a
  round trip later (a delay line, so throughput is not cut by the delay);
* **reachability windows and drop-outs**: outside a vehicle's windows the
  relay refuses its connections, and at the end of a window it resets the
  ones that are open, as a lost cell or a modem switched off would.

Packet loss is not emulated (a stream relay cannot drop segments); the
emulated scenario therefore has no loss and says so.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

READ_BYTES = 64 * 1024


@dataclass
class VehicleRelay:
    """Relay state of one vehicle."""

    index: int
    listen_ip: str
    one_way_s: float
    windows: list[tuple[float, float]]  # seconds after t0
    port: int = 0
    refused: int = 0
    sessions: int = 0
    conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = field(default_factory=set)

    def online(self, t: float) -> bool:
        return any(s <= t < e for s, e in self.windows)


class Relay:
    """Runs all vehicles' relays on one asyncio loop in a background thread."""

    def __init__(self, upstream: tuple[str, int], vehicles: list[VehicleRelay]) -> None:
        self.upstream = upstream
        self.vehicles = vehicles
        self.t0 = float("inf")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="emulation-relay", daemon=True
        )
        self._servers: list[asyncio.base_events.Server] = []
        self._tasks: list[asyncio.Task[None]] = []

    def __enter__(self) -> Relay:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def start_clock(self, t0: float) -> None:
        """Windows count from ``t0`` (``time.time()``); cuts are scheduled from now on."""
        self.t0 = t0
        asyncio.run_coroutine_threadsafe(self._schedule_cuts(), self._loop).result(timeout=10)

    async def _start(self) -> None:
        for v in self.vehicles:
            srv = await asyncio.start_server(functools.partial(self._handle, v), v.listen_ip, 0)
            v.port = srv.sockets[0].getsockname()[1]
            self._servers.append(srv)

    async def _schedule_cuts(self) -> None:
        for v in self.vehicles:
            self._tasks.append(asyncio.ensure_future(self._cutter(v)))

    async def _cutter(self, v: VehicleRelay) -> None:
        for _, end in v.windows:
            delay = self.t0 + end - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            for down, up in list(v.conns):
                _reset(down)
                _reset(up)
            v.conns.clear()

    async def _handle(
        self, v: VehicleRelay, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if not v.online(time.time() - self.t0):
            v.refused += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError as e:
            log.warning("relay %d: upstream %s unreachable: %s", v.index, self.upstream, e)
            _reset(writer)
            return
        v.sessions += 1
        pair = (writer, up_writer)
        v.conns.add(pair)
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, v.one_way_s),
                self._pipe(up_reader, writer, v.one_way_s),
                return_exceptions=True,
            )
        finally:
            v.conns.discard(pair)
            for w in pair:
                w.close()

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float
    ) -> None:
        """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds late (a delay line)."""
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await line.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        task = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(READ_BYTES)
                line.put_nowait((time.monotonic() + delay, data))
                if not data:
                    break
            await task
        finally:
            task.cancel()

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            for t in self._tasks:
                t.cancel()
            for v in self.vehicles:
                for down, up in list(v.conns):
                    _reset(down)
                    _reset(up)
            for s in self._servers:
                s.close()
            # Reset connections end their handlers by themselves; cancel only stragglers
            # (asyncio logs a cancelled connection handler as an error).
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if rest:
                _, pending = await asyncio.wait(rest, timeout=2)
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset, as a vanished link looks to the other end."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
        except OSError:
            pass
    writer.transport.abort()
