"""Handshake slots (``wire.slots``) on the real listener over real TLS on 127.0.0.1: a storm of
clients is served a batch at a time and every one gets through; a silent client holds no slot; a
peer that stalls in its handshake loses its slot after the slot timeout; a connection that waited
too long is closed without TLS work; a full queue closes the newcomer at once."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.wire.test_server import Echo, Tls, _http
from wire import WireServer
from wire.gate import MAX_FIRST_BYTES
from wire.slots import HandshakeSlots


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    return Tls(tmp_path / "pki")


async def _listen(tls: Tls, slots: HandshakeSlots, **options: Any) -> WireServer:
    server = WireServer(
        _http,
        lambda conn, request: Echo(conn),
        handshake_slots=slots,
        max_unauthenticated_per_address=None,
        **options,
    )
    await server.listen("127.0.0.1", 0, ssl_context=tls.server)
    return server


@pytest.fixture
async def servers() -> AsyncIterator[list[WireServer]]:
    started: list[WireServer] = []
    yield started
    for server in started:
        await server.close(1.0)


async def _hello(server: WireServer, tls: Tls, timeout: float = 20.0) -> bytes:
    """A whole TLS handshake and ``GET /hello``, as a client with its own timeout."""

    async def run() -> bytes:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.port, ssl=tls.client, server_hostname="127.0.0.1"
        )
        writer.write(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            return await reader.read()
        finally:
            writer.close()

    return await asyncio.wait_for(run(), timeout)


def _client_hello_start(tls: Tls) -> bytes:
    """The first bytes a TLS client sends (its ClientHello), to stall after them."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_obj = tls.client.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        tls_obj.do_handshake()
    return outgoing.read()


def _staller(server: WireServer, tls: Tls, *, whole_hello: bool = False) -> socket.socket:
    """A peer that starts a handshake and then says nothing more: it holds a slot."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    hello = _client_hello_start(tls)
    sock.sendall(hello if whole_hello else hello[:5])
    return sock


async def _until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_a_storm_is_served_a_batch_at_a_time_and_everyone_gets_through(
    tls: Tls, servers: list[WireServer]
) -> None:
    slots = HandshakeSlots(limit=4, max_wait=30.0)
    server = await _listen(tls, slots)
    servers.append(server)
    answers = await asyncio.gather(*(_hello(server, tls) for _ in range(120)))
    assert all(a.endswith(b"hello\n") for a in answers)
    assert slots.stats.started == 120
    assert slots.stats.peak == 4  # never more than the limit under way
    assert slots.stats.waited > 0  # the others waited their turn …
    assert slots.stats.expired == 0  # … and none was turned away
    assert slots.stats.overflowed == 0
    await _until(lambda: slots.in_progress == 0, "every slot back")


async def test_a_silent_client_holds_no_slot(tls: Tls, servers: list[WireServer]) -> None:
    slots = HandshakeSlots(limit=1)
    server = await _listen(tls, slots)
    servers.append(server)
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        await asyncio.sleep(0.2)
        assert (await _hello(server, tls, timeout=5)).endswith(b"hello\n")
        assert slots.stats.waited == 0
    finally:
        silent.close()


async def test_a_stalled_handshake_loses_its_slot_and_the_next_client_is_served(
    tls: Tls, servers: list[WireServer]
) -> None:
    slots = HandshakeSlots(limit=1, slot_timeout=0.5, max_wait=10.0)
    server = await _listen(tls, slots)
    servers.append(server)
    stalled = _staller(server, tls)
    try:
        await _until(lambda: slots.in_progress == 1, "the staller holding the slot")
        assert (await _hello(server, tls, timeout=10)).endswith(b"hello\n")
        assert slots.stats.waited == 1
        assert 0.3 < slots.stats.longest_wait < 5.0  # it waited for the staller's slot timeout
        stalled.settimeout(5)
        assert await asyncio.to_thread(stalled.recv, 100) == b""  # the staller was cut
    finally:
        stalled.close()


async def test_a_connection_that_waited_too_long_is_closed_without_tls_work(
    tls: Tls, servers: list[WireServer]
) -> None:
    failed: list[str | None] = []
    slots = HandshakeSlots(limit=1, slot_timeout=2.0, max_wait=0.3)
    server = await _listen(tls, slots, on_handshake_failed=failed.append)
    servers.append(server)
    stalled = _staller(server, tls, whole_hello=True)
    late = _staller(server, tls, whole_hello=True)  # a ClientHello that waits behind it
    try:
        await _until(lambda: slots.waiting == 1, "the second connection waiting")
        late.settimeout(10)
        # Its turn comes when the staller's slot times out (2 s): by then it waited > 0.3 s, so it is
        # closed with no ServerHello ever sent.
        assert await asyncio.to_thread(late.recv, 100) == b""
        assert slots.stats.expired == 1
        assert slots.stats.started == 1  # only the staller ever started a handshake
        await _until(lambda: len(failed) == 2, "both counted as failed handshakes")
        assert failed == [None, None]
    finally:
        stalled.close()
        late.close()


async def test_a_full_queue_closes_the_newcomer_at_once(tls: Tls, servers: list[WireServer]) -> None:
    slots = HandshakeSlots(limit=1, slot_timeout=5.0, max_waiting=1)
    server = await _listen(tls, slots)
    servers.append(server)
    held = [_staller(server, tls, whole_hello=True), _staller(server, tls, whole_hello=True)]
    try:
        await _until(lambda: slots.waiting == 1, "one waiting")
        third = _staller(server, tls, whole_hello=True)
        held.append(third)
        third.settimeout(5)
        assert (
            await asyncio.to_thread(third.recv, 100) == b""
        )  # closed at once, long before the 5 s slot timeout
        assert slots.stats.overflowed == 1
        assert slots.waiting == 1
    finally:
        for sock in held:
            sock.close()


async def test_a_waiting_client_that_leaves_frees_its_place(tls: Tls, servers: list[WireServer]) -> None:
    slots = HandshakeSlots(limit=1, slot_timeout=0.5, max_wait=10.0)
    server = await _listen(tls, slots)
    servers.append(server)
    stalled = _staller(server, tls, whole_hello=True)
    leaver = _staller(server, tls, whole_hello=True)
    try:
        await _until(lambda: slots.waiting == 1, "the leaver waiting")
        leaver.close()
        assert (await _hello(server, tls, timeout=10)).endswith(b"hello\n")
        assert slots.stats.started == 2  # the staller, then the client; never the one that left
    finally:
        stalled.close()


async def test_a_waiting_connection_that_sends_more_than_a_client_hello_is_closed(
    tls: Tls, servers: list[WireServer]
) -> None:
    slots = HandshakeSlots(limit=1, slot_timeout=10.0, max_wait=20.0)
    server = await _listen(tls, slots)
    servers.append(server)
    stalled = _staller(server, tls, whole_hello=True)  # holds the only slot
    flooder = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        flooder.sendall(_client_hello_start(tls))
        await _until(lambda: slots.waiting == 1, "the flooder waiting")
        # A real client sends nothing more before the server's answer; this one keeps sending while it
        # waits: past MAX_FIRST_BYTES it is closed, long before the slot's 10 s timeout frees a slot.
        with contextlib.suppress(OSError):
            flooder.sendall(b"\x00" * (MAX_FIRST_BYTES + 1))
        flooder.settimeout(2)
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.to_thread(flooder.recv, 100) == b""
        assert slots.stats.started == 1  # only the staller ever started a handshake
    finally:
        stalled.close()
        flooder.close()


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        HandshakeSlots(limit=0)
    with pytest.raises(ValueError, match="positive"):
        HandshakeSlots(max_wait=0)
