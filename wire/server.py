"""A lean TLS WebSocket listener: one asyncio ``Protocol`` per connection, no task per connection.

Why not ``websockets.asyncio.server``: every idle agent is a long-lived connection, and the broker's
memory per idle agent is the product's main capacity figure (issue 7, docs/PERFORMANCE.md). The
stock server gives each connection a handler task, a receive assembler, futures and the kept
handshake; with thousands of agents that is ~20 KiB each above the TLS floor. Here a connection is
asyncio's TLS transport plus websockets' sans-I/O :class:`~websockets.server.ServerProtocol` (the
RFC 6455 framing, handshake checks, close handshake and UTF-8 validation stay the library's) plus
one small object; the application reacts in callbacks (:class:`Handler`). Code that wants to
``await`` messages wraps a connection in :class:`wire.stream.AsyncConnection`.

Timeouts kept from the stock server: ``open_timeout`` (opening handshake), ``close_timeout``.
Done here (issue 12, docs/hardening.md): fragments reassembled, invalid UTF-8 fails with 1007,
frames small until the peer is authenticated (:meth:`WireConnection.allow_size`), no reading while
the transport is not writable. Before TLS: :mod:`wire.gate`, :mod:`wire.slots`, :mod:`wire.listener`.
"""

from __future__ import annotations

import asyncio
import http
import logging
import ssl
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import CLOSED, CLOSING, CONNECTING, OPEN
from websockets.protocol import Protocol as WsProtocol
from websockets.server import ServerProtocol

from . import gate, keepalive, listener, proxied, slots, tls

log = logging.getLogger("wire.server")

CLOSE_GOING_AWAY = 1001

DEFAULT_MAX_FRAME = 64 * 1024
"""Largest WebSocket message (bytes) a connection may send until the application raises it with
:meth:`WireConnection.allow_size` (the broker does for an admitted agent's screen updates): the
protocol's largest control message (``protocol.Limits.max_text_bytes``). Larger ones are refused
from the frame header, before any payload is buffered, with close 1009."""

# WireConnection._flags: small ints, so no allocation per connection.
_PAUSED_WRITE = 1  # reading paused because the transport is not writable
_PAUSED_APP = 2  # reading paused by the application (AsyncConnection's queue)
_COUNTED = 4  # counted among its address's unauthenticated connections (wire.gate)
_FRAG_TEXT = 8  # the fragmented message being reassembled is text


class Handler(Protocol):
    """What the application attaches to an accepted WebSocket connection."""

    def text_received(self, text: str) -> None: ...

    def binary_received(self, data: bytes) -> None: ...

    def ping_received(self) -> None:
        """A Ping or Pong frame arrived (a Ping is already answered by the WebSocket layer): the
        peer is alive. The agent's heartbeat (docs/heartbeat.md); nothing to decode."""

    def resume_writing(self) -> None:
        """The transport took our backlog: queued frames may be written again."""

    def connection_lost(self) -> None:
        """Called once, when the connection is gone (closed by either side or cut)."""


ProcessRequest = Callable[["WireConnection", Request], Response | None]
"""Answer plain HTTP (or refuse) with a ``Response``; ``None`` lets the WebSocket handshake go on."""
OpenHandler = Callable[["WireConnection", Request], Handler]
"""Attach a handler to a connection whose handshake was accepted; frames it sends follow the 101."""


class WireConnection(asyncio.Protocol):
    """One client connection. Public: ``transport``, ``ws`` (the sans-I/O protocol), ``peer``,
    ``writable``; :meth:`send_text`, :meth:`send_binary`, :meth:`close`, :meth:`abort`."""

    __slots__ = ("_flags", "_frag", "_timer", "handler", "peer", "server", "transport", "writable", "ws")

    def __init__(self, server: WireServer, peer: str = "?", *, counted: bool = False) -> None:
        self.server = server
        self.ws = ServerProtocol(max_size=server.max_size, logger=server.ws_logger)
        self.handler: Handler | None = None
        self.peer = peer
        self.writable = True
        self._timer: asyncio.TimerHandle | None = None
        self._flags = _COUNTED if counted else 0
        self._frag: bytearray | None = None  # the fragments of a message, only while one arrives

    # -- application API --------------------------------------------------------------------------

    @property
    def open(self) -> bool:
        return self.ws.state is OPEN

    def send_text(self, text: str) -> bool:
        """Write one text frame now (the transport buffers); False once the connection is closing."""
        if self.ws.state is not OPEN:
            return False
        self.ws.send_text(text.encode("utf-8"))
        self._send_data()
        return True

    def send_binary(self, data: bytes) -> bool:
        if self.ws.state is not OPEN:
            return False
        self.ws.send_binary(data)
        self._send_data()
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (RFC 6455 §7.1.2); the peer has ``close_timeout`` to answer."""
        if self.ws.state is OPEN:
            self.ws.send_close(code, reason)
            self._send_data()
            self._expect_close()
        elif self.ws.state is CONNECTING:
            self.abort()

    def abort(self) -> None:
        self.transport.abort()

    def cut_after(self, delay: float) -> None:
        """Abort the connection in ``delay`` seconds unless it ends before: for a peer presumed dead
        (silent past its idle timeout), whose answer to our close frame would never come, so the
        usual ``close_timeout`` would only keep it listed as connected (docs/heartbeat.md)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.server.loop.call_later(delay, self.transport.abort)

    def allow_size(self, max_size: int) -> None:
        """Accept messages up to ``max_size`` bytes from now on (e.g. an admitted agent's screen
        updates). Takes effect from the next frame when called from the server's ``open_handler``
        (the frame parser restarts after the handshake); later calls reach frames whose header has
        not begun to be read."""
        self.ws.max_message_size = max_size

    def authenticated(self) -> None:
        """The peer proved who it is (client certificate admitted, operator logged in): it no longer
        counts against its address's cap of unauthenticated connections (:mod:`wire.gate`)."""
        self.release_gate()

    def release_gate(self) -> None:
        if self._flags & _COUNTED:
            self._flags &= ~_COUNTED
            self.server.gate.release(self.peer)

    def pause_reading(self) -> None:
        """The application's back-pressure (its queue is full): stop reading until :meth:`resume_reading`."""
        self._pause(_PAUSED_APP)

    def resume_reading(self) -> None:
        self._resume(_PAUSED_APP)

    # -- asyncio callbacks ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.peer == "?":
            address = transport.get_extra_info("peername")
            self.peer = str(address[0]) if address else "?"
        self.server.connections.add(self)
        self._timer = self.server.loop.call_later(self.server.open_timeout, self._handshake_timeout)

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        closing = ws.state is CLOSING or ws.state is CLOSED
        ws.receive_data(data)
        events = ws.events_received()
        self._send_data()
        close_sent = ws.close_sent
        for event in events:
            if isinstance(event, Frame):
                # The parser stops at the peer's close frame (or a framing error), so every frame
                # here came before it: deliver it, even though the state is CLOSING by now (a
                # client's last message and its close often share one read; dropping them lost
                # an operator's session_end). Discard the rest only when we had closed before
                # this read, or we failed or closed the connection while handling it (1007, the
                # application): RFC 6455 §1.4.
                if closing or ws.close_sent is not close_sent:
                    break
                self._frame(event)
            elif isinstance(event, Request):
                self._handshake(event)
        self._send_data()
        if ws.close_expected():
            self._expect_close()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self.ws.events_received()
        self._send_data()
        return None  # close the transport: TLS cannot be half-closed

    def connection_lost(self, exc: Exception | None) -> None:
        self.ws.receive_eof()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.server.connections.discard(self)
        self.release_gate()
        self._frag = None
        handler, self.handler = self.handler, None
        if handler is not None:
            try:
                handler.connection_lost()
            except Exception:  # the application's clean-up failed; the listener goes on
                log.exception("connection clean-up failed")

    def pause_writing(self) -> None:
        # Stop reading too: a peer that sends (PINGs, requests) but never reads would otherwise make
        # us queue our answers without bound. What one peer can make us hold is then the transport's
        # high-water mark plus one read's worth of answers (docs/hardening.md).
        self.writable = False
        self._pause(_PAUSED_WRITE)

    def resume_writing(self) -> None:
        self.writable = True
        self._resume(_PAUSED_WRITE)
        if self.handler is not None:
            self.handler.resume_writing()

    # -- internals --------------------------------------------------------------------------------

    def _pause(self, why: int) -> None:
        if not self._flags & (_PAUSED_WRITE | _PAUSED_APP) and not self.transport.is_closing():
            self.transport.pause_reading()
        self._flags |= why

    def _resume(self, why: int) -> None:
        if not self._flags & why:
            return
        self._flags &= ~why
        if not self._flags & (_PAUSED_WRITE | _PAUSED_APP) and not self.transport.is_closing():
            self.transport.resume_reading()

    def _frame(self, frame: Frame) -> None:
        """One data frame: whole messages to the handler, fragments reassembled (RFC 6455 §5.4).
        websockets' parser has checked the order of fragments and the total size."""
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if not frame.fin:
                self._frag = bytearray(frame.data)
                if opcode is Opcode.TEXT:
                    self._flags |= _FRAG_TEXT
                return
            self._deliver(opcode is Opcode.TEXT, frame.data)
        elif opcode is Opcode.PING or opcode is Opcode.PONG:
            if self.handler is not None:
                self.handler.ping_received()
        elif opcode is Opcode.CONT and self._frag is not None:
            self._frag += frame.data
            if frame.fin:
                data, self._frag = self._frag, None
                text = bool(self._flags & _FRAG_TEXT)
                self._flags &= ~_FRAG_TEXT
                self._deliver(text, data)

    def _deliver(self, text: bool, data: bytes | bytearray | memoryview) -> None:
        handler = self.handler
        if handler is None:
            return
        if text:
            try:
                decoded = str(data, "utf-8")
            except UnicodeDecodeError as exc:  # RFC 6455 §8.1: fail the connection with 1007
                self.ws.fail(CloseCode.INVALID_DATA, f"invalid UTF-8 at position {exc.start}")
                self._send_data()
                self._expect_close()
                return
            handler.text_received(decoded)
        else:
            handler.binary_received(bytes(data))

    def _handshake(self, request: Request) -> None:
        server = self.server
        ws = self.ws
        try:
            response = server.process_request(self, request)
        except Exception:
            log.exception("process_request failed")
            response = ws.reject(http.HTTPStatus.INTERNAL_SERVER_ERROR, "internal error\n")
        if response is None:
            response = ws.accept(request)
            if response.status_code == http.HTTPStatus.SWITCHING_PROTOCOLS and not server.serving:
                response = ws.reject(http.HTTPStatus.SERVICE_UNAVAILABLE, "Server is shutting down.\n")
            if response.status_code != http.HTTPStatus.SWITCHING_PROTOCOLS:
                server.handshake_failed(request.path)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for name, value in server.response_headers.items():
            if name not in response.headers:
                response.headers[name] = value
        ws.send_response(response)
        if ws.state is not OPEN:
            self._send_data()
            return
        # The parser still holds the request in its frame; restart it at the frame layer so the
        # request and its headers are freed (the reader keeps any bytes already received).
        ws.parser = WsProtocol.parse(ws)
        next(ws.parser)
        try:
            self.handler = server.open_handler(self, request)
        except Exception:
            log.exception("opening a connection failed")
            ws.send_close(1011, "internal_error")
            self._expect_close()
        tls.forget_peercert(self.transport)  # the handler has read what it needs
        self._send_data()

    def _send_data(self) -> None:
        ws = self.ws
        for data in ws.data_to_send():
            if data:
                self.transport.write(data)
            elif ws.close_sent is not None and ws.close_rcvd is None and self.server.serving:
                # We failed the connection (1002, 1007, 1009) while the peer may still be sending:
                # closing now would answer its next bytes with a TCP reset, which can destroy our
                # close frame in its receive buffer before it is read. Read and discard for a
                # moment first, as HTTP servers' lingering close does.
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = self.server.loop.call_later(self.server.fail_linger, self._linger_done)
            elif self.server.serving or self.transport.get_write_buffer_size():
                # End of stream: TLS cannot half-close, so close (after the buffer is flushed).
                self.transport.close()
            else:
                # Shutting down and the WebSocket closing handshake is complete: the TLS close_notify
                # exchange would only make thousands of peers wait on each other (reconnect storm).
                self.transport.abort()

    def _linger_done(self) -> None:
        self._timer = None
        self.transport.close()

    def _expect_close(self) -> None:
        if self._timer is None and not self.transport.is_closing():
            self._timer = self.server.loop.call_later(self.server.close_timeout, self.transport.abort)

    def _handshake_timeout(self) -> None:
        self._timer = None
        if self.ws.state is CONNECTING:
            self.transport.abort()


class WireServer:
    """The listener and its live connections.

    max_size:
        Largest WebSocket message (bytes) a connection accepts until the application raises it
        (:meth:`WireConnection.allow_size`); larger ones close the connection with 1009 as soon as
        the frame header is read. Default :data:`DEFAULT_MAX_FRAME` (64 KiB).
    max_unauthenticated_per_address:
        Connections from one source address that may be open and not yet authenticated at once
        (TLS handshake, HTTP, enrollment, an operator before login); one more is closed before
        the TLS handshake (:mod:`wire.gate`). ``None``: no cap.
    on_refused:
        Called at most once per ``refusal_report_interval`` s with the connections the cap refused
        since (address → count): a flood costs one audit entry a minute.
    on_handshake_failed:
        Called with ``None`` when a TLS handshake did not complete (also a TCP connection that never
        started one, such as a plain TCP health check), and with the request path when a WebSocket
        upgrade was answered with anything but 101. Never with plain HTTP answers.
    fail_linger:
        Seconds a connection we failed (1002, 1007, 1009) is still read and discarded before it is
        closed, so the peer reads our close frame, not a TCP reset (1 s).
    response_headers:
        Headers added to every HTTP response (answers, refusals, the 101), e.g. HSTS.
    tls_handshake_timeout:
        Seconds for a TLS handshake without slots, and for a silent client to send its first bytes.
    handshake_slots:
        TLS handshakes under way at once, the wait for a slot and a slot's timeout (:mod:`wire.slots`;
        default 256, 10 s, 10 s). ``HandshakeSlots(limit=None)``: every handshake starts at once.
    open_timeout:
        Seconds from the end of the TLS handshake to a complete HTTP request (10 s, as websockets).
    close_timeout:
        Seconds the peer has to answer our close frame before it is cut (websockets' default, 10 s).
    tcp_keepalive:
        ``(idle, interval, count)`` of TCP keepalive on every accepted socket (:mod:`wire.keepalive`,
        default 60 s, 10 s, 3): home routers keep the connection's NAT state, and a vanished host's
        connection is dropped by the kernel after idle + interval × count = 90 s. ``None``: off.
    fd_reserve:
        Descriptors kept free besides client connections (:mod:`wire.listener`, 128; ``None``: none).
    """

    def __init__(
        self,
        process_request: ProcessRequest,
        open_handler: OpenHandler,
        *,
        max_size: int = DEFAULT_MAX_FRAME,
        tls_handshake_timeout: float = 60.0,
        handshake_slots: slots.HandshakeSlots | None = None,
        open_timeout: float = 10.0,
        close_timeout: float = 10.0,
        max_unauthenticated_per_address: int | None = gate.DEFAULT_MAX_UNAUTHENTICATED,
        on_refused: gate.RefusalReport | None = None,
        refusal_report_interval: float = 60.0,
        response_headers: Mapping[str, str] | None = None,
        on_handshake_failed: Callable[[str | None], None] | None = None,
        fail_linger: float = 1.0,
        ws_logger: logging.Logger | None = None,
        tcp_keepalive: tuple[int, int, int] | None = (
            keepalive.KEEPALIVE_IDLE,
            keepalive.KEEPALIVE_INTERVAL,
            keepalive.KEEPALIVE_COUNT,
        ),
        fd_reserve: int | None = listener.DEFAULT_FD_RESERVE,
        on_full: Callable[[], None] | None = None,
    ) -> None:
        self.fd_reserve = fd_reserve
        self.on_full = on_full
        self.tcp_keepalive = tcp_keepalive
        self.response_headers: Mapping[str, str] = dict(response_headers or {})
        self.fail_linger = fail_linger
        self.on_handshake_failed = on_handshake_failed
        self.process_request = process_request
        self.open_handler = open_handler
        self.max_size = max_size
        self.gate = gate.Gate(
            max_unauthenticated_per_address, on_refused=on_refused, report_interval=refusal_report_interval
        )
        self.tls_handshake_timeout = tls_handshake_timeout
        self.slots = handshake_slots or slots.HandshakeSlots()
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.ws_logger = ws_logger or logging.getLogger("websockets.server")
        self.connections: set[WireConnection] = set()
        self.serving = False
        self.port = 0  # the listening port, after listen() (the real one when 0 was asked for)
        self._listener: listener.Listener | None = None
        self.loop = asyncio.get_running_loop()

    def handshake_failed(self, path: str | None) -> None:
        """Tell ``on_handshake_failed``: TLS did not complete (``None``), or a WebSocket upgrade on
        ``path`` was answered with anything but 101 (a bad upgrade request, shutting down)."""
        if self.on_handshake_failed is not None:
            try:
                self.on_handshake_failed(path)
            except Exception:
                log.exception("reporting a failed handshake failed")

    def new_connection(self, peer: str, *, counted: bool = False) -> WireConnection:
        """The protocol of one accepted connection (``counted``: the gate counted it for ``peer``)."""
        return WireConnection(self, peer, counted=counted)

    async def listen(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext,
        backlog: int = 100,
        reuse_port: bool = False,
        proxy_from: Iterable[str] = (),
    ) -> None:
        """Listen on ``host:port``. ``reuse_port``: ``SO_REUSEPORT``, so that several processes of one
        node share the port and the kernel spreads new connections (docs/cluster.md §5).
        ``proxy_from``: addresses or networks of front doors (HAProxy ``send-proxy-v2``) whose
        connections start with a PROXY v2 header naming the client (:mod:`wire.proxied`)."""
        self.serving = True
        trusted = proxied.parse_trusted(proxy_from)
        # Our own accept loop (wire.listener: a file-descriptor ceiling, never EMFILE); plain TCP
        # first: the gate counts the source address, then wraps in TLS itself (wire.gate).
        self._listener = listener.Listener(
            self.loop,
            listener.bind(host, port, backlog=backlog, reuse_port=reuse_port),
            (lambda: proxied.ProxyAdmission(self, ssl_context, trusted))
            if trusted
            else (lambda: gate.Admission(self, ssl_context)),
            fd_reserve=self.fd_reserve,
            on_full=self.on_full,
        )
        self._listener.start()
        self.port = self._listener.port

    async def close(self, grace: float, *, code: int = CLOSE_GOING_AWAY, reason: str = "") -> None:
        """Stop listening, send every peer a close frame, wait up to ``grace`` seconds for the closing
        handshakes, then cut what is left (peers reconnect anyway)."""
        self.serving = False
        self.gate.close()
        if self._listener is not None:
            self._listener.close()
        for conn in list(self.connections):
            if conn.open:
                conn.close(code, reason)
            else:
                conn.abort()
        deadline = self.loop.time() + grace
        while self.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        while self.connections and self.loop.time() < deadline + 1.0:  # aborts complete next iteration
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)  # connections whose transport was being made when the listener closed
