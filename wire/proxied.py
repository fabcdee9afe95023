"""Before TLS, behind a load balancer: read the PROXY protocol v2 header of connections from the front
door, so that the per-address cap (:mod:`wire.gate`), the broker's limits and its audit see the
subscriber's address instead of the balancer's (docs/cluster.md §5, wiring step 7).

Opt-in (``WireServer.listen(proxy_from=…)``) and only for connections whose source is one of the
configured front-door addresses or networks: those **must** start with a version 2 header (the
specification forbids guessing whether a header is there); any other source is a direct client and
is handled exactly as without this module. A front-door connection whose header is missing, malformed
or late (``open_timeout``) is closed before any TLS work and logged with the error's code; a LOCAL
header (the balancer's own health check) keeps the balancer's address.

The header is parsed by the pure :func:`protocol.proxy.parse_proxy_header`; the bytes that came with
it (the start of the client's TLS handshake) are handed to the TLS protocol after it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import Iterable
from typing import TYPE_CHECKING

from protocol.errors import RemoteProtocolError
from protocol.proxy import parse_proxy_header

from . import gate

if TYPE_CHECKING:
    from .server import WireServer

log = logging.getLogger("wire.proxied")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted(addresses: Iterable[str]) -> tuple[Network, ...]:
    """Front-door addresses or networks (``10.0.0.5``, ``10.0.0.0/24``, ``::1``); raises
    ``ValueError`` for anything else."""
    return tuple(ipaddress.ip_network(a.strip(), strict=False) for a in addresses if a.strip())


def is_trusted(peer: str, trusted: tuple[Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in trusted)


class ProxyAdmission(asyncio.Protocol):
    """The plain-TCP protocol of a just-accepted connection on a listener with front doors."""

    def __init__(self, server: WireServer, ssl_context: ssl.SSLContext, trusted: tuple[Network, ...]) -> None:
        self.server = server
        self.ssl_context = ssl_context
        self.trusted = trusted
        self.peer = "?"
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        address = transport.get_extra_info("peername")
        self.peer = str(address[0]) if address else "?"
        if not is_trusted(self.peer, self.trusted):
            gate.Admission(self.server, self.ssl_context).connection_made(transport)  # a direct client
            return
        self.transport = transport
        self._timer = self.server.loop.call_later(self.server.open_timeout, self._timeout)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        self.buffer += data
        try:
            header = parse_proxy_header(self.buffer)
        except RemoteProtocolError as exc:
            log.warning("front door %s: PROXY header refused (%s)", self.peer, exc.code.value)
            self._close(transport)
            return
        if header is None:
            return
        self._cancel_timer()
        rest = bytes(self.buffer[header.length :])
        self.buffer = bytearray()
        self.transport = None
        client = header.source[0] if header.source is not None else self.peer
        gate.Admission(self.server, self.ssl_context).admit(transport, client, rest)

    def eof_received(self) -> bool | None:
        return None  # closes the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self.transport = None

    def _timeout(self) -> None:
        self._timer = None
        if self.transport is not None:
            log.warning("front door %s: no PROXY header within %g s", self.peer, self.server.open_timeout)
            self._close(self.transport)

    def _close(self, transport: asyncio.Transport) -> None:
        self._cancel_timer()
        self.transport = None
        transport.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
