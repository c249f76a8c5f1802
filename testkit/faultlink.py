"""A TCP relay on loopback that breaks the link the way a car's modem does.

Between the agent and a real registry: every registry→vehicle byte passes
through it, and it can drop each connection after N bytes (the link goes down
every few hundred kilobytes), flip one bit at a chosen byte (a corrupting
middlebox: TCP's checksum is no defence against that), or stop forwarding
after N bytes while keeping the connection open (a stalled stream, or a
slow-retrieval attack). ``tc`` can shape rates here but this kernel has no
``netem``, and ``netem`` cannot stall or flip a chosen byte anyway.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class LinkStats:
    connections: int = 0
    drops: int = 0
    flips: int = 0
    stalls: int = 0
    refused: int = 0  # connections reset at once while the link was down
    bytes_down: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class FaultyLink:
    def __init__(
        self,
        upstream: str,
        *,
        drop_every: int = 0,
        flip_at: int | None = None,
        stall_after: int | None = None,
        record: bool = False,
    ) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.drop_every = drop_every  # per connection: close it after this many bytes down
        self.flip_at = flip_at  # global down-byte offset whose lowest bit is flipped (once)
        self.stall_after = (
            stall_after  # global down-byte offset after which one connection goes silent (once)
        )
        self.stats = LinkStats()
        self.record = record  # keep every byte, both ways, in ``captured`` (a wiretap)
        self.captured = bytearray()
        self._closing = threading.Event()
        self._down = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._spawn(self._accept)

    def _spawn(self, fn, *args) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._down.is_set():
                with self.stats.lock:
                    self.stats.refused += 1
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            for s in (client, server):  # no Nagle: the relay must not add 40 ms delayed-ACK stalls
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.stats.lock:
                self.stats.connections += 1
            self._socks += [client, server]
            self._spawn(self._pump, client, server, False)
            self._spawn(self._pump, server, client, True)

    def _pump(self, src: socket.socket, dst: socket.socket, down: bool) -> None:
        sent = 0
        try:
            while not self._closing.is_set():
                data = bytearray(src.recv(16384))
                if not data:
                    break
                if self.record:
                    with self.stats.lock:
                        self.captured += data
                if down:
                    data, cut = self._fault(data, sent)
                    sent += len(data)
                    if data:
                        dst.sendall(data)
                    if cut == "drop":
                        _reset(src)
                        _reset(dst)
                        return
                    if cut == "stall":
                        self._closing.wait()  # hold the connection open, forward nothing
                        return
                else:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _fault(self, data: bytearray, sent: int) -> tuple[bytearray, str]:
        st = self.stats
        with st.lock:
            start = st.bytes_down
            if self.flip_at is not None and start <= self.flip_at < start + len(data):
                data[self.flip_at - start] ^= 0x01
                st.flips += 1
                self.flip_at = None
            if self.stall_after is not None and start + len(data) > self.stall_after:
                keep = max(0, self.stall_after - start)
                data = data[:keep]
                st.stalls += 1
                self.stall_after = None
                st.bytes_down += len(data)
                return data, "stall"
            if self.drop_every and sent + len(data) >= self.drop_every:
                data = data[: self.drop_every - sent]
                st.drops += 1
                st.bytes_down += len(data)
                return data, "drop"
            st.bytes_down += len(data)
        return data, ""

    def cut(self) -> None:
        """The link goes down: open connections are reset, new ones too, until ``restore``."""
        self._down.set()
        for s in list(self._socks):
            _reset(s)

    def restore(self) -> None:
        self._down.clear()

    def close(self) -> None:
        self._closing.set()
        self._listener.close()
        for s in self._socks:
            _reset(s)

    def __enter__(self) -> FaultyLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reset(s: socket.socket) -> None:
    """Close with RST, as a dropped radio link looks to the peer."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    except OSError:
        pass
