"""One TLS ticket key for every broker process of a data dir (``broker.ticketkeys``).

The user's path: a real agent (``AgentClient``, its own TLS session cache) connected to a real broker
on 127.0.0.1; the broker goes away and another broker process with the same data dir takes the port
(a restart, or a survivor behind the same front door). The agent resumes its TLS session there, and
is still admitted only by its certificate record: an expired record is refused on a resumed
handshake too, which TLS alone no longer checks.
"""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.connection import AgentClient
from agent.errors import ConnectionRefusedByBroker
from broker.ticketkeys import TICKET_SECRET_FILE, TicketKeyError, load_ticket_keys
from protocol.errors import ErrorCode
from tests.helpers import InProcessBroker, in_process_broker

HOURS = "00:00-00:00"


async def _until(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _restart(data_dir: Path, period: float, tmp_path: Path, contract: str) -> tuple[int, bool]:
    """Enroll and connect an agent, restart the broker on the same port; (resumed, readmitted)."""
    async with in_process_broker(data_dir, service_hours=HOURS, tls_ticket_period=period) as first:
        identity = await first.enroll_agent(contract, tmp_path / contract)
        port = first.broker.port
        client = AgentClient(identity)
        stop = asyncio.Event()
        task = asyncio.create_task(client.run(stop))
        await _until(lambda: identity.serial in first.broker.agents, "agent connected")
        await _until(lambda: client.tls_sessions.session is not None, "ticket kept")
        first_session = client.tls_sessions.session
    try:
        async with in_process_broker(
            data_dir, service_hours=HOURS, tls_ticket_period=period, port=port
        ) as second:
            await _until(lambda: identity.serial in second.broker.agents, "agent back", timeout=60)
            # the agent keeps the new connection's session once the broker's hello is in
            await _until(lambda: client.tls_sessions.session is not first_session, "new session kept")
            # what an operator sees on /metrics: the broker counted the same resumption
            registry = second.broker.metrics.registry
            assert registry.get_sample_value("broker_tls_resumed_total") == client.tls_sessions.resumed
            return client.tls_sessions.resumed, identity.serial in second.broker.agents
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_an_agent_resumes_its_tls_session_at_the_next_broker_process(tmp_path: Path) -> None:
    assert await _restart(tmp_path / "broker", 86_400.0, tmp_path, "C-TK1") == (1, True)
    secret = tmp_path / "broker" / TICKET_SECRET_FILE
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


async def test_with_per_process_keys_the_next_process_makes_a_full_handshake(tmp_path: Path) -> None:
    """The control (``tls_ticket_period = 0``, the behaviour before): admitted, not resumed."""
    assert await _restart(tmp_path / "broker", 0.0, tmp_path, "C-TK2") == (0, True)
    assert not (tmp_path / "broker" / TICKET_SECRET_FILE).exists()


async def test_an_expired_certificate_is_refused_on_a_resumed_handshake(tmp_path: Path) -> None:
    async with in_process_broker(tmp_path / "broker", service_hours=HOURS) as running:
        identity = await running.enroll_agent("C-TK3", tmp_path / "agent")
        client = AgentClient(identity)
        stop = asyncio.Event()
        task = asyncio.create_task(client.run(stop))
        try:
            await _until(lambda: identity.serial in running.broker.agents, "agent connected")
            await _until(lambda: client.tls_sessions.session is not None, "ticket kept")
            _expire(running, identity.serial)
            (conn,) = running.broker.agents[identity.serial]
            conn.pump.close(1001, "")  # the agent dials again, offering its ticket
            with pytest.raises(ConnectionRefusedByBroker) as refused:
                await asyncio.wait_for(task, 30)
            assert refused.value.code is ErrorCode.CERT_EXPIRED
            assert client.tls_sessions.offered == 1
            # the refused handshake was a resumed one (the first, full one is not counted): TLS did
            # not look at the certificate again, the record check did
            registry = running.broker.metrics.registry
            assert registry.get_sample_value("broker_tls_resumed_total") == 1
            deadline = time.monotonic() + 10  # the refusal's audit entry is written in the background
            while not await _refusal_audited(running):
                assert time.monotonic() < deadline, "no agent.refused cert_expired in the audit"
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            if not task.done():
                await asyncio.wait_for(task, 15)


async def _refusal_audited(running: InProcessBroker) -> bool:
    entries = await running.store.audit.entries()
    return any(e.action == "agent.refused" and e.details.get("code") == "cert_expired" for e in entries)


def _expire(running: InProcessBroker, serial: str) -> None:
    """The certificate's record says it ended a second ago (as the day after its not-after would)."""
    with sqlite3.connect(running.config.data_dir / "broker.sqlite3") as db:
        db.execute("UPDATE certificates SET not_after = ? WHERE serial = ?", (time.time() - 1, serial))


def test_every_process_of_a_data_dir_derives_the_same_keys_and_they_change_each_period(
    tmp_path: Path,
) -> None:
    one = load_ticket_keys(tmp_path, 3600.0)
    two = load_ticket_keys(tmp_path, 3600.0)
    assert one is not None
    assert two is not None
    assert one.keys(7200.0) == two.keys(7200.0 + 3599.0)
    assert one.keys(7200.0) != one.keys(7200.0 + 3600.0)
    assert one.until_next(7200.0 + 600.0) == 3000.0
    (tmp_path / "elsewhere").mkdir()
    other = load_ticket_keys(tmp_path / "elsewhere", 3600.0)
    assert other is not None
    assert other.keys(7200.0) != one.keys(7200.0)
    assert load_ticket_keys(tmp_path, 0) is None
    with pytest.raises(ValueError, match="7 days"):
        load_ticket_keys(tmp_path, 8 * 86_400.0)


def test_a_damaged_secret_file_stops_the_broker_with_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / TICKET_SECRET_FILE).write_bytes(b"not base64 at all!\n")
    with pytest.raises(TicketKeyError, match="malformed") as raised:
        load_ticket_keys(tmp_path, 3600.0)
    assert raised.value.code is ErrorCode.INTERNAL
