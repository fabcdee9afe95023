"""Heartbeats below the JSON layer over real TLS on 127.0.0.1 (issue 15, docs/heartbeat.md).

The broker's side (``LinkPump`` on the lean listener) is kept alive by WebSocket Ping frames alone
and drops a peer that goes silent; the agent's side (``LinkRunner`` with ``ping_frames``) sends
Ping frames and no JSON; accepted sockets carry TCP keepalive for the home router's NAT.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request

from protocol import Link, LinkState, Received
from protocol.limits import Limits
from protocol.messages import Chat
from tests.wire.test_server import Tls, _server
from wire import LinkPump, LinkRunner, WireConnection
from wire.server import Handler


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    return Tls(tmp_path / "pki")


SHORT = Limits(heartbeat_interval=0.2, idle_timeout=0.6)
HELLO = '{"type":"hello","versions":[1],"role":"agent"}'


class CountingPump(LinkPump):
    """The broker's pump, counting the text frames (JSON) it is fed."""

    texts = 0

    def text_received(self, text: str) -> None:
        CountingPump.texts += 1
        super().text_received(text)


def _broker_side(received: list[object], pumps: list[LinkPump]) -> object:
    def opened(conn: WireConnection, request: Request) -> Handler:
        link = Link(is_client=False, role="broker", expect_role="agent", now=time.time(), limits=SHORT)
        pumps.append(CountingPump(conn, link, received.append))
        return pumps[-1]

    return opened


async def test_ping_frames_alone_keep_the_broker_link_open_then_silence_ends_it(tls: Tls) -> None:
    received: list[object] = []
    pumps: list[LinkPump] = []
    server = await _server(tls, _broker_side(received, pumps))
    try:
        async with connect(f"wss://127.0.0.1:{server.port}/agent", ssl=tls.client, ping_interval=None) as ws:
            await ws.send(HELLO)
            assert '"hello"' in str(await ws.recv())
            for _ in range(10):  # 2 s: more than three idle timeouts, heartbeats only
                await ws.ping()
                await asyncio.sleep(0.2)
            assert pumps[0].link.state is LinkState.OPEN
            await ws.send('{"type":"chat","session_id":"s1234567","text":"まだいる"}')
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)  # now silent: dropped by the idle timeout
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, "idle_timeout")
        assert [e.message for e in received if isinstance(e, Received)] == [
            Chat(session_id="s1234567", text="まだいる")
        ]
    finally:
        await server.close(1.0)


async def test_agent_runner_heartbeats_with_ping_frames_and_no_json(tls: Tls) -> None:
    received: list[object] = []
    pumps: list[LinkPump] = []
    CountingPump.texts = 0
    server = await _server(tls, _broker_side(received, pumps))
    try:
        async with connect(f"wss://127.0.0.1:{server.port}/agent", ssl=tls.client, ping_interval=None) as ws:
            link = Link(is_client=True, role="agent", now=time.time(), limits=SHORT, ping_frames=True)
            runner = LinkRunner(ws, link, ping=ws.ping)

            async def on_event(event: object) -> None:
                pass

            task = asyncio.create_task(runner.run(on_event))
            await asyncio.sleep(2.0)  # ten heartbeat intervals
            assert not task.done()
            assert link.state is LinkState.OPEN
            assert pumps[0].link.state is LinkState.OPEN
            assert link.rtt is not None  # Pongs came back
            assert CountingPump.texts == 1  # the hello; no JSON ping
            await runner.close(1000, "done")
            await asyncio.wait_for(task, 5)
    finally:
        await server.close(1.0)


async def test_accepted_sockets_carry_tcp_keepalive(tls: Tls) -> None:
    pumps: list[LinkPump] = []
    server = await _server(tls, _broker_side([], pumps))
    try:
        async with connect(f"wss://127.0.0.1:{server.port}/agent", ssl=tls.client) as ws:
            await ws.send(HELLO)
            await ws.recv()
            (conn,) = server.connections
            sock = conn.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
    finally:
        await server.close(1.0)
