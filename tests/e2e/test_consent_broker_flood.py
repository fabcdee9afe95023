"""Issue 12 item 6: one agent floods the broker with support requests. Refusals are audited in
aggregate (第18条⑤), not one row each, and the broker still serves another subscriber and operator."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from helpdesk import HelpdeskClient
from protocol.limits import SUPPORTED_VERSIONS
from tests.helpers import BrokerProcess, add_operator, enrolled_agent, login, start_support
from tests.wire.serving import client_context

pytestmark = pytest.mark.e2e

FLOOD = 10_000


async def _flood(broker: BrokerProcess, agent_dir: Path) -> dict[str, int]:
    """A hostile agent with a genuine certificate: 10,000 support requests on one connection."""
    ctx = client_context(broker, cert=agent_dir / "agent.pem", key=agent_dir / "agent-key.pem")
    answers: dict[str, int] = {}
    async with connect(
        broker.url + "/agent", ssl=ctx, ping_interval=None, compression=None, open_timeout=15
    ) as ws:
        await ws.send(json.dumps({"type": "hello", "versions": list(SUPPORTED_VERSIONS), "role": "agent"}))
        await ws.send(json.dumps({"type": "agent_status", "machine_name": "flood"}))

        async def read() -> None:
            while sum(answers.values()) < FLOOD:
                message = json.loads(await ws.recv())
                if message.get("id", "").startswith("r"):
                    key = message["type"] if message["type"] != "error" else message["code"]
                    answers[key] = answers.get(key, 0) + 1

        reader = asyncio.create_task(read())
        for i in range(FLOOD):
            await ws.send(json.dumps({"type": "support_request", "id": f"r{i}"}))
        await asyncio.wait_for(reader, 120)
    return answers


async def test_support_request_flood_is_audited_in_aggregate(broker: BrokerProcess, tmp_path: Path) -> None:
    enrolled_agent(broker, tmp_path / "hostile", "C-666")
    started = time.monotonic()
    answers = await _flood(broker, tmp_path / "hostile")
    flood_seconds = time.monotonic() - started
    assert answers.get("support_code", 0) == 5  # 第18条⑤: 5 an hour
    assert answers.get("rate_limited", 0) == FLOOD - 5

    db = sqlite3.connect(broker.data_dir / "broker.sqlite3")
    try:
        rows = db.execute(
            "SELECT details FROM audit WHERE action = 'support.refused' AND subject = 'C-666'"
        ).fetchall()
    finally:
        db.close()
    assert 1 <= len(rows) <= 1 + int(flood_seconds / 60) + 1, (len(rows), flood_seconds)
    counts = [json.loads(r[0])["count"] for r in rows]
    assert counts[0] == 1  # the first refusal is written at once

    # Another subscriber and operator are served as usual afterwards.
    enrolled_agent(broker, tmp_path / "agent", "C-100")
    alice = add_operator(broker, "alice")
    support = start_support(tmp_path / "agent", "--test-pattern")
    try:
        code = support.support_code()
        async with HelpdeskClient(broker.url, cafile=broker.data_dir / "ca.pem") as op:
            await login(op, alice)
            session = (await op.claim(code=code)).session_id
            support.wait_for("View your screen")
            support.type("a")
            await op.watch(session)
            state = await op.wait_state(session, lambda s: s.scopes.get("screen:view") == "granted")
            assert state.phase == "active"
    finally:
        support.stop()
    assert "audit chain OK" in broker.cli("audit", "verify").stdout
