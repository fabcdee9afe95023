"""Before TLS: cap the unauthenticated connections of one source address, then wrap in TLS.

A TLS handshake costs the broker a private-key operation and asyncio's TLS state (tens of KiB); a
single address that opens thousands of connections and never authenticates would hold them all.
The listener therefore accepts plain TCP (:class:`Admission`), counts the source address, refuses
one connection too many at once (the socket is closed, no TLS work), and only then wraps the
connection in TLS, as ``create_server(ssl=...)`` would. A connection stops counting when the
application says the peer is authenticated (an agent's admitted certificate, an operator's login:
:meth:`wire.server.WireConnection.authenticated`) or when it is gone.

Refusals are reported at most once per ``report_interval`` with a count per address, so a flood
costs one audit entry a minute, not one per connection.

Relies on ``asyncio.sslproto.SSLProtocol`` (as ``loop.start_tls`` does; CPython 3.11-3.13).
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .keepalive import set_tcp_keepalive
from .slots import HandshakeSlots

if TYPE_CHECKING:
    from .server import WireServer

log = logging.getLogger("wire.gate")

DEFAULT_MAX_UNAUTHENTICATED = 256
"""Unauthenticated connections one address may hold at once. Generous because many subscribers of
one ISP can share a public IPv4 address (CGNAT) and, after a broker restart, their agents are all in
the TLS handshake at the same time; an authenticated agent does not count."""

RefusalReport = Callable[[dict[str, int]], None]
"""Receives the refused connections since the last report: source address → count."""

MAX_REPORTED_ADDRESSES = 100
"""Addresses named in one report (the busiest); the rest are summed under ``"other"``."""


class Gate:
    """Counts unauthenticated connections per address; refuses over the cap; reports refusals."""

    def __init__(
        self,
        max_per_address: int | None,
        *,
        on_refused: RefusalReport | None = None,
        report_interval: float = 60.0,
    ) -> None:
        if max_per_address is not None and max_per_address < 1:
            raise ValueError("max_unauthenticated_per_address must be at least 1")
        self.max_per_address = max_per_address
        self.on_refused = on_refused
        self.report_interval = report_interval
        self.counts: dict[str, int] = {}
        self.refused: dict[str, int] = {}
        self._last_report: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    def admit(self, address: str) -> bool:
        """Count one more connection from ``address``; False (and counted as refused) over the cap."""
        if self.max_per_address is None:
            return True
        held = self.counts.get(address, 0)
        if held >= self.max_per_address:
            self.refused[address] = self.refused.get(address, 0) + 1
            self._schedule_report()
            return False
        self.counts[address] = held + 1
        return True

    def release(self, address: str) -> None:
        held = self.counts.get(address, 0) - 1
        if held > 0:
            self.counts[address] = held
        else:
            self.counts.pop(address, None)

    def close(self) -> None:
        """Report what is pending now (the listener stops)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._report()

    def _schedule_report(self) -> None:
        if self._timer is not None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = 0.0 if self._last_report is None else max(0.0, self._last_report + self.report_interval - now)
        self._timer = loop.call_later(due, self._report)

    def _report(self) -> None:
        self._timer = None
        refused, self.refused = self.refused, {}
        if not refused:
            return
        with contextlib.suppress(RuntimeError):
            self._last_report = asyncio.get_running_loop().time()
        busiest = sorted(refused.items(), key=lambda item: -item[1])
        report = dict(busiest[:MAX_REPORTED_ADDRESSES])
        if len(busiest) > MAX_REPORTED_ADDRESSES:
            report["other"] = sum(count for _, count in busiest[MAX_REPORTED_ADDRESSES:])
        log.warning("refused %d connections over the per-address cap", sum(refused.values()))
        if self.on_refused is not None:
            try:
                self.on_refused(report)
            except Exception:
                log.exception("reporting refused connections failed")


class _TlsProtocol(asyncio.sslproto.SSLProtocol):
    """asyncio's TLS protocol, telling the gate when the connection is gone (also when the TLS
    handshake failed, when the application never saw the connection), and giving its handshake slot
    back (:mod:`wire.slots`) as soon as the handshake ends."""

    slot: HandshakeSlots | None = None

    def _give_back(self) -> None:
        slot, self.slot = self.slot, None
        if slot is not None:
            slot.release()

    def _on_handshake_complete(self, handshake_exc: BaseException | None) -> None:
        self._give_back()
        super()._on_handshake_complete(handshake_exc)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._give_back()
        app: Any = self._app_protocol
        if getattr(self, "_app_state", None) is asyncio.sslproto.AppProtocolState.STATE_INIT:
            # The TLS handshake never completed (a refused or missing client certificate where one
            # is required, a protocol mismatch, a timeout, a peer that left): the listener counts it.
            server = getattr(app, "server", None)
            if server is not None:
                server.handshake_failed(None)
        try:
            super().connection_lost(exc)
        finally:
            release = getattr(app, "release_gate", None)
            if release is not None:
                release()


def feed(protocol: asyncio.BufferedProtocol, data: bytes) -> None:
    """Give ``data`` to a buffered protocol as if the transport had read it."""
    view = memoryview(data)
    while view:
        buffer = memoryview(protocol.get_buffer(len(view)))
        n = min(len(buffer), len(view))
        if n == 0:  # pragma: no cover - asyncio's TLS protocol always offers room
            raise RuntimeError("the TLS protocol offered no buffer")
        buffer[:n] = view[:n]
        protocol.buffer_updated(n)
        view = view[n:]


class Admission(asyncio.Protocol):
    """The plain-TCP protocol of a just-accepted connection: counts it, then hands it to TLS."""

    __slots__ = ("server", "ssl_context")

    def __init__(self, server: WireServer, ssl_context: ssl.SSLContext) -> None:
        self.server = server
        self.ssl_context = ssl_context

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        address = transport.get_extra_info("peername")
        self.admit(transport, str(address[0]) if address else "?")

    def admit(self, transport: asyncio.Transport, peer: str, data: bytes = b"") -> None:
        """Count ``peer`` (the connection's address, or the client's from a PROXY header:
        :mod:`wire.proxied`), then hand the connection to TLS when it has a handshake slot
        (``data``: bytes already read after a PROXY header). Refused: closed."""
        server = self.server
        if not server.gate.admit(peer):
            transport.abort()
            return
        if server.tcp_keepalive is not None:  # NAT refresh and dead-host detection, in the kernel
            idle, interval, count = server.tcp_keepalive
            set_tcp_keepalive(transport.get_extra_info("socket"), idle=idle, interval=interval, count=count)
        counted = server.gate.max_per_address is not None
        if server.slots.limit is None:
            start_tls(server, self.ssl_context, transport, peer, counted, data, slot=None)
            return
        first = _FirstBytes(server, self.ssl_context, transport, peer, counted)
        transport.set_protocol(first)
        if data:
            first.data_received(data)


def start_tls(
    server: WireServer,
    ssl_context: ssl.SSLContext,
    transport: asyncio.Transport,
    peer: str,
    counted: bool,
    data: bytes,
    *,
    slot: HandshakeSlots | None,
) -> None:
    """Wrap the connection in TLS (as ``create_server(ssl=...)`` would) and feed it ``data``."""
    timeout: Any = server.tls_handshake_timeout if slot is None else slot.slot_timeout  # a float works
    tls = _TlsProtocol(
        server.loop,
        server.new_connection(peer, counted=counted),
        ssl_context,
        None,  # type: ignore[arg-type]  # no waiter: nobody awaits the handshake
        server_side=True,
        ssl_handshake_timeout=timeout,
    )
    tls.slot = slot
    transport.set_protocol(tls)
    tls.connection_made(transport)
    if data:
        feed(tls, data)


MAX_FIRST_BYTES = 16 * 1024
"""Bytes kept from a connection waiting for its handshake slot: a ClientHello is a few hundred bytes
(a post-quantum one ~1.5 KiB), and a client sends nothing more before the server's answer."""


class _FirstBytes(asyncio.Protocol):
    """A connection before its TLS handshake: waits for its first bytes, then for a slot."""

    __slots__ = ("_timer", "buffer", "counted", "peer", "server", "ssl_context", "state", "transport")

    def __init__(
        self,
        server: WireServer,
        ssl_context: ssl.SSLContext,
        transport: asyncio.Transport,
        peer: str,
        counted: bool,
    ) -> None:
        self.server = server
        self.ssl_context = ssl_context
        self.transport = transport
        self.peer = peer
        self.counted = counted
        self.buffer = bytearray()
        self.state = "silent"  # → "waiting" (asked for a slot) → "tls" | "closed"
        # A client that never speaks is cut as a silent TLS handshake was before the slots.
        self._timer: asyncio.TimerHandle | None = server.loop.call_later(
            server.tls_handshake_timeout, self._drop
        )

    def data_received(self, data: bytes) -> None:
        if self.state in ("tls", "closed"):
            return
        self.buffer += data
        if len(self.buffer) > MAX_FIRST_BYTES:
            self._drop()
            return
        if self.state == "silent":
            self.state = "waiting"
            self._cancel_timer()
            self.server.slots.request(self._start, self._drop, self._alive)

    def eof_received(self) -> bool | None:
        return None  # closes the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state in ("silent", "waiting"):
            self._closed()

    def _alive(self) -> bool:
        return self.state == "waiting"

    def _start(self) -> None:
        if self.state != "waiting":  # left meanwhile: the slot goes on to the next
            self.server.slots.release()
            return
        self.state = "tls"
        data, self.buffer = bytes(self.buffer), bytearray()
        start_tls(
            self.server,
            self.ssl_context,
            self.transport,
            self.peer,
            self.counted,
            data,
            slot=self.server.slots,
        )

    def _drop(self) -> None:
        if self.state in ("tls", "closed"):
            return
        self._closed()
        self.transport.abort()

    def _closed(self) -> None:
        self._cancel_timer()
        self.state = "closed"
        self.buffer = bytearray()
        if self.counted:
            self.server.gate.release(self.peer)
        self.server.handshake_failed(None)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
