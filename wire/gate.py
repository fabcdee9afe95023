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
    handshake failed, when the application never saw the connection)."""

    def connection_lost(self, exc: BaseException | None) -> None:
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

    def admit(self, transport: asyncio.Transport, peer: str) -> asyncio.BufferedProtocol | None:
        """Count ``peer`` (the connection's address, or the client's from a PROXY header:
        :mod:`wire.proxied`) and hand the connection to TLS; ``None`` when refused (closed)."""
        server = self.server
        if not server.gate.admit(peer):
            transport.abort()
            return None
        if server.tcp_keepalive is not None:  # NAT refresh and dead-host detection, in the kernel
            idle, interval, count = server.tcp_keepalive
            set_tcp_keepalive(transport.get_extra_info("socket"), idle=idle, interval=interval, count=count)
        conn = server.new_connection(peer, counted=server.gate.max_per_address is not None)
        tls = _TlsProtocol(
            server.loop,
            conn,
            self.ssl_context,
            None,  # type: ignore[arg-type]  # no waiter: nobody awaits the handshake
            server_side=True,
            ssl_handshake_timeout=server.tls_handshake_timeout,  # type: ignore[arg-type]  # a float works
        )
        transport.set_protocol(tls)
        tls.connection_made(transport)
        return tls
