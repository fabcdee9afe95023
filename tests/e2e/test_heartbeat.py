"""Heartbeats end to end (issue 15, docs/heartbeat.md): a real broker (its own TLS listener, SQLite,
in this process) and a real agent process, with the intervals shortened.

- An agent whose heartbeat is WebSocket Ping frames stays on one connection across many idle
  timeouts: nothing else is said, yet the broker never drops it.
- A dead agent (process stopped with SIGSTOP: its kernel still answers TCP keepalive, so only the
  heartbeat can tell) is dropped by the idle timeout and marked offline, and comes back on SIGCONT.
- An agent of the previous version (JSON ``ping``) is still answered and kept.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from agent.connection import AgentClient
from protocol import Closing
from protocol.limits import Limits
from tests.helpers import AgentProcess, InProcessBroker, in_process_broker, start_agent
from wire import LinkPump

pytestmark = pytest.mark.e2e

BROKER_IDLE = 1.5
"""The broker's idle timeout here (660 s in production): a silent agent is dropped after this."""
AGENT_ARGS = ("--heartbeat-interval", "0.3", "--idle-timeout", "1.5")


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[InProcessBroker]:
    async with in_process_broker(
        tmp_path / "broker",
        limits=Limits(idle_timeout=BROKER_IDLE),
        presence_flush_interval=0.5,
        service_hours="00:00-00:00",
    ) as running:
        yield running


async def _until(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll without blocking the broker's loop; fail after ``timeout`` (a hang guard)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _online(broker: InProcessBroker, serial: str) -> bool:
    return any(a.serial == serial and a.online for a in await broker.store.presence.list_agents())


async def _offline(broker: InProcessBroker, serial: str) -> bool:
    return not await _online(broker, serial)


async def _connects(broker: InProcessBroker, serial: str) -> int:
    entries = await broker.store.audit.entries()
    return sum(1 for e in entries if e.action == "agent.connect" and e.details.get("serial") == serial)


async def _start(broker: InProcessBroker, tmp_path: Path, contract: str) -> tuple[str, AgentProcess]:
    identity = await broker.enroll_agent(contract, tmp_path / contract)
    serial = identity.serial
    agent = start_agent(tmp_path / contract, *AGENT_ARGS)
    await _until(lambda: serial in broker.broker.agents, "agent connected")
    await _until(lambda: _online(broker, serial), "agent online in the store")
    return serial, agent


async def test_idle_agent_stays_on_one_connection_across_heartbeats(
    broker: InProcessBroker, tmp_path: Path
) -> None:
    serial, agent = await _start(broker, tmp_path, "C-HB1")
    try:
        (conn,) = broker.broker.agents[serial]
        await asyncio.sleep(6 * BROKER_IDLE)  # six idle timeouts with nothing but Ping frames
        assert broker.broker.agents[serial] == {conn}  # the same connection throughout
        assert conn.pump.closed_by is None
        assert conn.pump.link.last_received > time.time() - BROKER_IDLE
        assert agent.output.text().count("Connected to the broker.") == 1
        assert await _connects(broker, serial) == 1
        assert await _online(broker, serial)
    finally:
        agent.stop()


async def test_stopped_agent_is_dropped_by_the_idle_timeout_and_marked_offline(
    broker: InProcessBroker, tmp_path: Path
) -> None:
    serial, agent = await _start(broker, tmp_path, "C-HB2")
    try:
        (conn,) = broker.broker.agents[serial]
        os.kill(agent.proc.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        await _until(lambda: serial not in broker.broker.agents, "stopped agent dropped")
        dropped = time.monotonic() - stopped
        assert conn.pump.closed_by == Closing(1001, "idle_timeout")  # the heartbeat rule, not TCP
        await _until(lambda: _offline(broker, serial), "agent offline in the store")
        # The bound (docs/heartbeat.md): idle timeout after its last heartbeat, then 1 s for our close
        # frame (fail_linger) instead of the 10 s close handshake a dead peer never finishes.
        print(f"stopped agent dropped after {dropped:.2f} s (bound {BROKER_IDLE} + 1 s)")
        os.kill(agent.proc.pid, signal.SIGCONT)
        await _until(lambda: serial in broker.broker.agents and _online(broker, serial), "agent back")
        assert await _connects(broker, serial) == 2
    finally:
        os.kill(agent.proc.pid, signal.SIGCONT)
        agent.stop()


async def test_previous_agent_with_json_ping_is_answered_and_kept(
    broker: InProcessBroker, tmp_path: Path
) -> None:
    identity = await broker.enroll_agent("C-HB3", tmp_path / "old")
    old = Limits(heartbeat_interval=0.3, idle_timeout=1.5)
    client = AgentClient(identity, limits=old, legacy_limits=old)
    client.ping_frames = False  # as agents before issue 15: a JSON ping every interval
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(stop))
    try:
        await _until(lambda: identity.serial in broker.broker.agents, "old agent connected")
        (conn,) = broker.broker.agents[identity.serial]
        await _until(lambda: client.runner is not None and client.runner.link.rtt is not None, "first pong")
        await asyncio.sleep(6 * BROKER_IDLE)
        assert broker.broker.agents[identity.serial] == {conn}
        assert client.runner is not None
        assert client.runner.link.rtt is not None
        assert await _connects(broker, identity.serial) == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_reconnect_resumes_the_tls_session_and_the_broker_still_knows_the_agent(
    broker: InProcessBroker, tmp_path: Path
) -> None:
    """TLS 1.3 session resumption (agent.tls_session): the second handshake is resumed, and the
    broker still reads the agent's certificate (kept in the session) and admits it by serial."""
    identity = await broker.enroll_agent("C-HB4", tmp_path / "resume")
    client = AgentClient(identity, limits=Limits(heartbeat_interval=0.3, idle_timeout=1.5))
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(stop))
    try:
        await _until(lambda: identity.serial in broker.broker.agents, "agent connected")
        (first,) = broker.broker.agents[identity.serial]
        assert client.tls_sessions.resumed == 0
        # The agent's own socket carries TCP keepalive too (its NAT refresh, docs/heartbeat.md).
        assert client.runner is not None
        ws = client.runner.ws
        assert isinstance(ws, ClientConnection)
        sock = ws.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60
        await _until(lambda: client.tls_sessions.session is not None, "session ticket kept")
        first.pump.close(1001, "")  # the broker drops it: the agent dials again
        await _until(
            lambda: broker.broker.agents.get(identity.serial, {first}) != {first}, "agent reconnected"
        )
        await _until(lambda: client.tls_sessions.resumed == 1, "resumed handshake")
        assert client.tls_sessions.offered >= 1
        assert await _connects(broker, identity.serial) == 2
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_new_agent_falls_back_to_json_ping_on_a_broker_that_ignores_ping_frames(
    broker: InProcessBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker of the previous version answered Ping frames (websockets does) but did not count
    them, and dropped the agent for idleness. The agent then heartbeats with JSON for good."""
    monkeypatch.setattr(LinkPump, "ping_received", lambda self: None)  # the broker before issue 15
    identity = await broker.enroll_agent("C-HB5", tmp_path / "fallback")
    short = Limits(heartbeat_interval=0.3, idle_timeout=1.5)
    client = AgentClient(identity, limits=short, legacy_limits=short)
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(stop))
    try:
        await _until(lambda: identity.serial in broker.broker.agents, "agent connected")
        (first,) = broker.broker.agents[identity.serial]
        await _until(lambda: not client.ping_frames, "fallback to JSON heartbeats")
        assert first.pump.closed_by == Closing(1001, "idle_timeout")
        await _until(
            lambda: broker.broker.agents.get(identity.serial, {first}) != {first}, "agent reconnected"
        )
        (second,) = broker.broker.agents[identity.serial]
        await asyncio.sleep(4 * BROKER_IDLE)
        assert broker.broker.agents[identity.serial] == {second}  # kept alive by JSON pings now
        assert await _connects(broker, identity.serial) == 2
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
