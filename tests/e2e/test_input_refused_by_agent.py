"""Remote input the subscriber's agent refused (a consent question open: ``question_open``) is
audited by the broker, throttled with a count, and the operator is told with the stable code
``input_paused`` (the console's 「お客さまに確認画面を表示中のため、入力は届いていません。」).
Before, the broker only logged the agent's report and the operator never knew.

Real broker and agent processes over mutual TLS; the helpdesk client is the operator and reads
every ``error`` the broker sends it."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from helpdesk import HelpdeskClient
from protocol.messages import Error
from tests.helpers import (
    BrokerProcess,
    add_operator,
    confirm_control,
    enrolled_agent,
    login,
    start_support,
)

pytestmark = pytest.mark.e2e


def _audit(broker: BrokerProcess, action: str) -> list[dict[str, Any]]:
    db = sqlite3.connect(broker.data_dir / "broker.sqlite3")
    try:
        rows = db.execute(
            "SELECT actor, subject, details FROM audit WHERE action = ? ORDER BY seq", (action,)
        ).fetchall()
    finally:
        db.close()
    return [{"actor": a, "subject": s, **json.loads(d)} for a, s, d in rows]


async def test_input_paused_by_a_question_is_audited_and_shown_to_the_operator(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    serial = enrolled_agent(broker, tmp_path / "agent", "C-PAUSE")
    alice = add_operator(broker, "alice")
    support = start_support(tmp_path / "agent", "--test-pattern")
    try:
        code = support.support_code()
        async with HelpdeskClient(broker.url, cafile=broker.data_dir / "ca.pem") as op:
            await login(op, alice)
            session = (await op.claim(code=code, scopes=["screen:view", "input:control"])).session_id
            support.wait_for("Control your mouse and keyboard")
            support.type("a")
            confirm_control(support)
            await op.watch(session)
            await op.wait_state(session, lambda s: s.scopes.get("input:control") == "granted")
            await op.send_input(session, "move", x=10, y=20)
            support.wait_for("input applied: move 10,20")

            # A question opens on the subscriber's PC; the operator keeps moving the mouse.
            await op.request_scopes(session, ["inventory:os"])
            support.wait_for("Operating system type and version")
            sent = 0
            for i in range(12):
                await op.send_input(session, "move", x=30 + i, y=40)
                sent += 1
            notice = await op.next_event(Error, timeout=20)
            assert isinstance(notice, Error)
            assert notice.code == "input_paused", notice
            assert "input applied: move 30,40" not in support.output.text()

            # Audited by the broker, from the agent's report: who, why, how many (never where).
            deadline = time.monotonic() + 20
            while not _audit(broker, "input.refused") and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            entries = _audit(broker, "input.refused")
            assert entries, "the agent's refusal was not audited"
            first = entries[0]
            assert first["actor"] == f"agent:{serial}"
            assert first["subject"] == session
            assert first["code"] == "input_paused"
            assert first["reason"] == "question_open"
            assert 1 <= int(first["count"]) <= sent
            assert "x" not in first
            assert "y" not in first

            # More refused input within the throttle interval: no new row per event.
            for i in range(20):
                await op.send_input(session, "move", x=60 + i, y=40)
            await asyncio.sleep(1.5)  # the agent reports once a second, with the count
            await op.send_input(session, "move", x=99, y=40)
            await asyncio.sleep(0.5)
            assert len(_audit(broker, "input.refused")) == 1
            support.type("")  # the subscriber answers: no to the inventory item
            await op.end(session)
        assert support.proc.wait(30) == 0
    finally:
        support.stop()
    summary = [e for e in _audit(broker, "session.end") if e["subject"] == session]
    assert summary
    assert int(summary[0]["refused_inputs"]) >= 1
