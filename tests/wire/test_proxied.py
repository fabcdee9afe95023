"""The listener behind a front door (``listen(proxy_from=…)``): a PROXY v2 header from the front door's
address names the client, whom the per-address cap then counts; the header may share a read with the
TLS ClientHello or arrive a byte at a time; other sources are direct clients; a front-door connection
without a valid header, or too slow with it, is closed before TLS."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from websockets.http11 import Request, Response

from protocol.proxy import encode_proxy_header
from tests.wire.test_server import Echo, Tls, _http
from wire import WireConnection, WireServer

FRONT_DOOR = "127.0.0.5"


class Recorder:
    def __init__(self) -> None:
        self.peers: list[str] = []
        self.refused: list[dict[str, int]] = []

    def http(self, conn: WireConnection, request: Request) -> Response | None:
        self.peers.append(conn.peer)
        return _http(conn, request)


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    return Tls(tmp_path / "pki")


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def server(tls: Tls, recorder: Recorder) -> AsyncIterator[WireServer]:
    wire = WireServer(
        recorder.http,
        lambda conn, request: Echo(conn),
        open_timeout=1.0,
        max_unauthenticated_per_address=1,
        on_refused=recorder.refused.append,
        refusal_report_interval=0.0,
    )
    await wire.listen("127.0.0.1", 0, ssl_context=tls.server, proxy_from=[f"{FRONT_DOOR}/32"])
    yield wire
    await wire.close(1.0)


def _connect(port: int, source: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _get_hello(sock: socket.socket, ctx: ssl.SSLContext, header: bytes, *, trickle: bool = False) -> bytes:
    """TLS over ``sock`` with ``header`` first: in the same write as the ClientHello, or (``trickle``)
    one byte per write before it. Returns the HTTP answer to ``GET /hello``."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_obj = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        tls_obj.do_handshake()
    if trickle:
        for byte in header:
            sock.sendall(bytes([byte]))
            time.sleep(0.005)
        header = b""
    sock.sendall(header + outgoing.read())
    while True:
        try:
            tls_obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            if out := outgoing.read():
                sock.sendall(out)
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed during the TLS handshake") from None
            incoming.write(data)
    if out := outgoing.read():
        sock.sendall(out)
    tls_obj.write(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    sock.sendall(outgoing.read())
    answer = b""
    while b"hello\n" not in answer:
        data = sock.recv(65536)
        if not data:
            break
        incoming.write(data)
        try:
            answer += tls_obj.read(65536)
        except ssl.SSLWantReadError:
            continue
    return answer


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


async def test_the_header_names_the_client_in_one_read_with_the_client_hello(
    server: WireServer,
    tls: Tls,
    recorder: Recorder,
    sockets: list[socket.socket],
) -> None:
    sock = _connect(server.port, FRONT_DOOR)
    sockets.append(sock)
    header = encode_proxy_header(("203.0.113.7", 40000), ("192.0.2.1", 443))
    answer = await asyncio.to_thread(_get_hello, sock, tls.client, header)
    assert answer.startswith(b"HTTP/1.1 200")
    assert recorder.peers == ["203.0.113.7"]


async def test_a_header_a_byte_at_a_time_and_ipv6_clients(
    server: WireServer,
    tls: Tls,
    recorder: Recorder,
    sockets: list[socket.socket],
) -> None:
    sock = _connect(server.port, FRONT_DOOR)
    sockets.append(sock)
    header = encode_proxy_header(("2001:db8::7", 5555), ("2001:db8::1", 443))
    answer = await asyncio.to_thread(_get_hello, sock, tls.client, header, trickle=True)
    assert answer.startswith(b"HTTP/1.1 200")
    assert recorder.peers == ["2001:db8::7"]


async def test_local_health_checks_keep_the_front_door_s_address(
    server: WireServer,
    tls: Tls,
    recorder: Recorder,
    sockets: list[socket.socket],
) -> None:
    sock = _connect(server.port, FRONT_DOOR)
    sockets.append(sock)
    await asyncio.to_thread(_get_hello, sock, tls.client, encode_proxy_header(None))
    assert recorder.peers == [FRONT_DOOR]


async def test_the_cap_counts_the_real_clients_behind_one_front_door(
    server: WireServer,
    tls: Tls,
    recorder: Recorder,
    sockets: list[socket.socket],
) -> None:
    """Cap of 1 unauthenticated connection per address: two clients behind the front door hold one
    each; a second connection of the first client is refused and reported under its own address."""
    for client in ("198.51.100.1", "198.51.100.2", "198.51.100.1"):
        sock = _connect(server.port, FRONT_DOOR)
        sockets.append(sock)
        sock.sendall(encode_proxy_header((client, 1000), ("192.0.2.1", 443)))
    third = sockets[-1]
    assert await asyncio.to_thread(third.recv, 1) == b""  # closed, no TLS
    await _wait(lambda: recorder.refused, "the refusal report")
    assert recorder.refused == [{"198.51.100.1": 1}]
    assert server.gate.counts == {"198.51.100.1": 1, "198.51.100.2": 1}


async def test_a_front_door_connection_without_a_valid_header_is_closed_before_tls(
    server: WireServer,
    tls: Tls,
    recorder: Recorder,
    sockets: list[socket.socket],
) -> None:
    sock = _connect(server.port, FRONT_DOOR)
    sockets.append(sock)
    with pytest.raises(ConnectionError):
        await asyncio.to_thread(_get_hello, sock, tls.client, b"")  # a bare ClientHello: no header
    slow = _connect(server.port, FRONT_DOOR)
    sockets.append(slow)
    slow.sendall(encode_proxy_header(("198.51.100.9", 1))[:10])  # and then nothing (open_timeout 1 s)
    assert await asyncio.to_thread(slow.recv, 1) == b""
    assert recorder.peers == []


async def test_other_sources_are_direct_clients(
    server: WireServer,
    tls: Tls,
    recorder: Recorder,
    sockets: list[socket.socket],
) -> None:
    sock = _connect(server.port, "127.0.0.1")
    sockets.append(sock)
    answer = await asyncio.to_thread(_get_hello, sock, tls.client, b"")
    assert answer.startswith(b"HTTP/1.1 200")
    # A header from a source that is not a front door is not believed: it is no TLS, so it fails.
    spoof = _connect(server.port, "127.0.0.6")
    sockets.append(spoof)
    with pytest.raises((ConnectionError, ssl.SSLError)):
        await asyncio.to_thread(_get_hello, spoof, tls.client, encode_proxy_header(("203.0.113.66", 1)))
    assert recorder.peers == ["127.0.0.1"]


async def test_reuse_port_lets_two_listeners_share_a_port(tls: Tls) -> None:
    first = WireServer(_http, lambda conn, request: Echo(conn))
    await first.listen("127.0.0.1", 0, ssl_context=tls.server, reuse_port=True)
    second = WireServer(_http, lambda conn, request: Echo(conn))
    third = WireServer(_http, lambda conn, request: Echo(conn))
    try:
        await second.listen("127.0.0.1", first.port, ssl_context=tls.server, reuse_port=True)
        assert second.port == first.port
        with pytest.raises(OSError, match="in use"):
            await third.listen("127.0.0.1", first.port, ssl_context=tls.server)
    finally:
        await first.close(0.5)
        await second.close(0.5)


async def _wait(predicate: object, what: str, timeout: float = 5.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
