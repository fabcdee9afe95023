"""The session host on real asynchronous storage (SQLite file), without sockets: observers see every
command in order; the one timer ends an expired code without any polling loop; the ordered writer
keeps the audit chain in the order of the events; a flood of requests from one agent gets 5 codes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broker.core import AgentPeer, Audit, Command, SendToAgent, SessionCore, SessionRules
from broker.datakeys import DataKeyring
from broker.policy import CodeAttemptGuard, parse_hours
from broker.session_host import SessionHost
from broker.storage import Storage, open_storage
from protocol.messages import Error, SessionState, SupportCodeIssued, SupportRequest
from tests.broker.core.driver import Recorder


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    storage = await open_storage(tmp_path / "broker.sqlite3")
    await storage.subscribers.add("C-1", now=time.time(), actor="test")
    yield storage
    await storage.close()


def _host(storage: Storage, tmp_path: Path, **rules: float) -> SessionHost:
    core = SessionCore(
        hours=parse_hours("00:00-00:00"),
        code_guard=CodeAttemptGuard(),
        rules=SessionRules(**rules),  # type: ignore[arg-type]
    )
    host = SessionHost(core, storage, keyring=DataKeyring.open(tmp_path / "keys"), clock=time.time)
    host.start()
    return host


async def _until(check: object, what: str) -> None:
    for _ in range(500):  # an event to wait for, not a duration to assert
        if callable(check) and check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def test_observers_see_every_command_and_the_timer_expires_the_code(
    storage: Storage, tmp_path: Path
) -> None:
    host = _host(storage, tmp_path, code_ttl=0.2)
    seen: list[Command] = []
    host.observers.append(seen.append)
    out = Recorder()
    agent = AgentPeer(peer=out, serial="ab", contract_id="C-1", machine_name="pc")
    host.support_request(agent, SupportRequest(id="r1"))
    await _until(lambda: any(isinstance(m, SupportCodeIssued) for m in out.messages), "a code")
    await _until(
        lambda: any(isinstance(m, SessionState) and m.phase == "ended" for m in out.messages), "expiry"
    )
    ended = out.last(SessionState)
    assert isinstance(ended, SessionState)
    assert ended.reason == "code_expired"
    sent = [c.message for c in seen if isinstance(c, SendToAgent)]
    assert sent == out.messages  # every message the agent got went past the observers, in order
    assert [c.action for c in seen if isinstance(c, Audit)] == ["support.request"]
    await host.close()
    actions = [e.action for e in await storage.audit.entries()]
    assert actions[-2:] == ["support.request", "session.end"]


async def test_a_flood_of_requests_gets_five_codes(storage: Storage, tmp_path: Path) -> None:
    host = _host(storage, tmp_path)
    out = Recorder()
    agent = AgentPeer(peer=out, serial="ab", contract_id="C-1", machine_name="pc")
    for i in range(40):
        host.support_request(agent, SupportRequest(id=f"r{i}"))
    await _until(lambda: len(out.messages) >= 40 + 4, "40 answers")  # + 4 'replaced' states
    codes = [m for m in out.messages if isinstance(m, SupportCodeIssued)]
    refused = [m for m in out.messages if isinstance(m, Error) and m.code == "rate_limited"]
    assert (len(codes), len(refused)) == (5, 35)
    await host.close()
    assert await storage.audit.count(action="support.request", subject="C-1", since=0) == 5
