"""The lean listener on real TLS over 127.0.0.1: handshake, HTTP answers, timeouts, back-pressure,
shutdown. The broker's own tests cover the paths; these cover what the listener promises itself."""

from __future__ import annotations

import asyncio
import http
import ssl
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request, Response

from broker.config import BrokerConfig
from broker.pki import load_pki
from protocol import Link, Received
from protocol.messages import Chat
from tests.wire.rawws import CLOSE, PING, TEXT, RawWebSocket, close_payload, frame
from wire import AsyncConnection, LinkPump, WireConnection, WireServer
from wire.server import Handler


class Tls:
    def __init__(self, data_dir: Path) -> None:
        pki = load_pki(BrokerConfig(data_dir=data_dir), now=datetime.now(UTC), env={})
        self.server = pki.server_ssl_context()
        self.client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.client.load_verify_locations(cafile=str(pki.ca_path))


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    return Tls(tmp_path / "pki")


class Echo:
    """A callback handler that sends every message back."""

    def __init__(self, conn: WireConnection) -> None:
        self.conn = conn
        self.lost = False
        self.pings = 0

    def text_received(self, text: str) -> None:
        self.conn.send_text(text)

    def binary_received(self, data: bytes) -> None:
        self.conn.send_binary(data)

    def ping_received(self) -> None:
        self.pings += 1

    def resume_writing(self) -> None:
        pass

    def connection_lost(self) -> None:
        self.lost = True


def _http(conn: WireConnection, request: Request) -> Response | None:
    if request.path == "/hello":
        return conn.ws.reject(http.HTTPStatus.OK, "hello\n")
    return None


async def _server(tls: Tls, open_handler: object, **limits: float) -> WireServer:
    server = WireServer(_http, open_handler, **limits)  # type: ignore[arg-type]
    await server.listen("127.0.0.1", 0, ssl_context=tls.server)
    return server


async def _close_code(server: WireServer, tls: Tls, *, send: bytes | None = None) -> int:
    """Connect (and send ``send``); the close code the server ends the connection with."""
    async with connect(f"wss://127.0.0.1:{server.port}/x", ssl=tls.client) as ws:
        if send is not None:
            await ws.send(send)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


@pytest.fixture
async def echo(tls: Tls) -> AsyncIterator[WireServer]:
    server = await _server(tls, lambda conn, request: Echo(conn), open_timeout=0.5, close_timeout=0.5)
    yield server
    await server.close(1.0)


async def test_websocket_messages_go_both_ways(echo: WireServer, tls: Tls) -> None:
    async with connect(f"wss://127.0.0.1:{echo.port}/x", ssl=tls.client) as ws:
        await ws.send("こんにちは")
        assert await ws.recv() == "こんにちは"
        await ws.send(b"\x00\x01")
        assert await ws.recv() == b"\x00\x01"
    for _ in range(100):
        if not echo.connections:
            break
        await asyncio.sleep(0.01)
    assert not echo.connections


async def test_plain_http_is_answered_and_closed(echo: WireServer, tls: Tls) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", echo.port, ssl=tls.client, server_hostname="127.0.0.1"
    )
    writer.write(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\nhello\n")
    writer.close()


async def test_a_request_without_upgrade_is_refused(echo: WireServer, tls: Tls) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", echo.port, ssl=tls.client, server_hostname="127.0.0.1"
    )
    writer.write(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.split(b"\r\n", 1)[0] == b"HTTP/1.1 426 Upgrade Required"
    writer.close()


async def test_a_silent_client_is_cut_after_the_open_timeout(echo: WireServer, tls: Tls) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", echo.port, ssl=tls.client, server_hostname="127.0.0.1"
    )
    writer.write(b"GET /x HTTP/1.1\r\n")  # and never the rest
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_garbage_instead_of_http_closes_only_that_connection(echo: WireServer, tls: Tls) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", echo.port, ssl=tls.client, server_hostname="127.0.0.1"
    )
    writer.write(b"\x16\x03\x01 not http at all\r\n\r\n")
    assert await asyncio.wait_for(reader.read(), 5) == b""
    async with connect(f"wss://127.0.0.1:{echo.port}/x", ssl=tls.client) as ws:
        await ws.send("still here")
        assert await ws.recv() == "still here"


async def test_oversize_message_closes_with_1009(tls: Tls) -> None:
    server = await _server(tls, lambda conn, request: Echo(conn), max_size=1000)
    try:
        assert await _close_code(server, tls, send=b"x" * 1001) == 1009
    finally:
        await server.close(1.0)


async def test_a_peer_that_does_not_answer_our_close_is_cut(echo: WireServer, tls: Tls) -> None:
    # A raw WebSocket handshake, then silence: the close frame is never answered.
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", echo.port, ssl=tls.client, server_hostname="127.0.0.1"
    )
    writer.write(
        b"GET /x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    (conn,) = echo.connections
    started = time.monotonic()
    conn.close(1000, "bye")
    assert (await asyncio.wait_for(reader.read(), 5))[:2] == b"\x88\x05"  # our close frame, then EOF
    assert time.monotonic() - started >= 0.4  # held open for the close timeout, not closed at once
    writer.close()


async def test_shutdown_sends_going_away_then_refuses_new_upgrades(tls: Tls) -> None:
    server = await _server(tls, lambda conn, request: Echo(conn))
    async with connect(f"wss://127.0.0.1:{server.port}/x", ssl=tls.client) as ws:
        await server.close(2.0)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001
    assert not server.connections
    with pytest.raises(ConnectionRefusedError):
        async with connect(f"wss://127.0.0.1:{server.port}/x", ssl=tls.client, open_timeout=2):
            pass


async def test_a_failing_open_handler_closes_that_connection_with_1011(tls: Tls) -> None:
    def broken(conn: WireConnection, request: Request) -> Handler:
        raise RuntimeError("bug")

    server = await _server(tls, broken)
    try:
        assert await _close_code(server, tls) == 1011
    finally:
        await server.close(1.0)


async def test_async_connection_stops_reading_when_its_queue_is_full(tls: Tls) -> None:
    streams: list[AsyncConnection] = []

    def opened(conn: WireConnection, request: Request) -> Handler:
        streams.append(AsyncConnection(conn, max_queue=4))
        return streams[-1]

    server = await _server(tls, opened)
    try:
        async with connect(f"wss://127.0.0.1:{server.port}/x", ssl=tls.client, write_limit=1024) as ws:
            for i in range(4):
                await ws.send(f"m{i}")
            (stream,) = streams
            transport = stream.conn.transport
            for _ in range(100):
                if not transport.is_reading():
                    break
                await asyncio.sleep(0.01)
            assert not transport.is_reading()
            # Messages are kept in order, and reading resumes as the application takes them.
            for i in range(4):
                assert await stream.recv() == f"m{i}"
            assert transport.is_reading()
            await ws.send("after")
            assert await asyncio.wait_for(stream.recv(), 5) == "after"
            await stream.send("reply")
            assert await ws.recv() == "reply"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(stream.recv(), 5)
    finally:
        await server.close(1.0)


async def test_link_pump_closes_an_idle_link_and_delivers_messages(tls: Tls) -> None:
    from protocol.limits import Limits

    received: list[object] = []
    pumps: list[LinkPump] = []

    def opened(conn: WireConnection, request: Request) -> Handler:
        link = Link(
            is_client=False,
            role="broker",
            expect_role="agent",
            now=time.time(),
            limits=Limits(idle_timeout=0.5),
        )
        pumps.append(LinkPump(conn, link, received.append))
        return pumps[-1]

    server = await _server(tls, opened)
    try:
        async with connect(f"wss://127.0.0.1:{server.port}/agent", ssl=tls.client) as ws:
            await ws.send('{"type":"hello","versions":[1],"role":"agent"}')
            assert '"hello"' in str(await ws.recv())
            await ws.send('{"type":"chat","session_id":"s1234567","text":"やあ"}')
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)  # then silence: the idle timeout ends it
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, "idle_timeout")
        assert [e.message for e in received if isinstance(e, Received)] == [
            Chat(session_id="s1234567", text="やあ")
        ]
    finally:
        await server.close(1.0)


async def test_upgrades_during_shutdown_get_503(tls: Tls) -> None:
    server = await _server(tls, lambda conn, request: Echo(conn))
    server.serving = False  # as close() sets it before the listener stops
    try:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"wss://127.0.0.1:{server.port}/x", ssl=tls.client):
                pass
        assert refused.value.response.status_code == 503
    finally:
        await server.close(1.0)


class Recorder(Echo):
    """Records the text messages it receives (and echoes them)."""

    def __init__(self, conn: WireConnection) -> None:
        super().__init__(conn)
        self.texts: list[str] = []

    def text_received(self, text: str) -> None:
        self.texts.append(text)
        super().text_received(text)


async def test_messages_sent_with_the_close_in_one_read_are_delivered(tls: Tls) -> None:
    """A client's last messages and its close frame often arrive in one TLS record (a helpdesk
    ``end`` then closing): the messages came before the close and count (RFC 6455 §1.4). Dropped,
    an operator's session_end was lost and the subscriber's agent stayed in the session."""
    recorders: list[Recorder] = []

    def opened(conn: WireConnection, request: Request) -> Handler:
        recorders.append(Recorder(conn))
        return recorders[-1]

    server = await _server(tls, opened)
    try:
        ws = await RawWebSocket.open(server.port, "/x", tls.client)
        await ws.send(
            frame(TEXT, b"first") + frame(TEXT, "最後".encode()) + frame(CLOSE, close_payload(1000))
        )
        assert await ws.closed_with() == 1000
        (recorder,) = recorders
        assert recorder.texts == ["first", "最後"]
        # After invalid UTF-8 (we fail the connection with 1007) nothing in the same read counts.
        ws = await RawWebSocket.open(server.port, "/x", tls.client)
        await ws.send(frame(TEXT, b"\xff") + frame(TEXT, b"late") + frame(PING, b"late"))
        assert await ws.closed_with() == 1007
        assert recorders[1].texts == []
        ws.abort()
    finally:
        await server.close(1.0)
