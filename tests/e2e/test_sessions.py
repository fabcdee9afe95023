"""Support sessions end to end (issue: request → code → login with TOTP → claim → consent →
relay → refused input → control granted mid-session → input applied → subscriber ends →
receipts verify → summary in the audit log), with real broker and agent processes over mutual
TLS and the helpdesk client as the operator."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from agent.sharing import pattern_pixels
from helpdesk import HelpdeskClient, HelpdeskError
from helpdesk.canvas import Canvas
from protocol.messages import Chat, Error
from tests.helpers import (
    BrokerProcess,
    OperatorAccount,
    add_operator,
    enrolled_agent,
    login,
    start_support,
    wait_until,
)

pytestmark = pytest.mark.e2e
ALWAYS = ("--hours", "00:00-00:00")


def _client(broker: BrokerProcess) -> HelpdeskClient:
    return HelpdeskClient(broker.url, cafile=broker.data_dir / "ca.pem")


def _audit(broker: BrokerProcess) -> list[dict[str, Any]]:
    import sqlite3

    db = sqlite3.connect(broker.data_dir / "broker.sqlite3")
    try:
        rows = db.execute("SELECT action, subject, details FROM audit ORDER BY seq").fetchall()
    finally:
        db.close()
    return [{"action": a, "subject": s, **json.loads(d)} for a, s, d in rows]


async def test_full_session(broker: BrokerProcess, tmp_path: Path) -> None:
    serial = enrolled_agent(broker, tmp_path / "agent", "C-100")
    alice = add_operator(broker, "alice")
    support = start_support(tmp_path / "agent", "--test-pattern")
    try:
        code = support.support_code()
        async with _client(broker) as op:
            await login(op, alice)
            queue = await op.queue()
            assert [(e.contract_id, e.machine_name) for e in queue.requests] == [("C-100", "pc-C-100")]

            claimed = await op.claim(code=code, scopes=["screen:view", "input:control"])
            session = claimed.session_id
            prompt = support.wait_for("Control your mouse and keyboard")
            assert "Alice (helpdesk)" in prompt
            support.type("1")  # grant only the first scope: view
            await op.watch(session)
            state = await op.wait_state(session, lambda s: s.scopes.get("input:control") == "denied")
            assert state.scopes["screen:view"] == "granted"

            # The screen arrives and decodes to the pattern the agent drew (lossless path).
            canvas = Canvas()
            while canvas.keyframes == 0:
                canvas.apply(await _next_screen(op))
            assert canvas.pixels is not None
            expected = pattern_pixels(640, 400)[..., 2::-1]  # BGRA → RGB
            # The moving block is the only difference between frames; compare outside it.
            assert np.array_equal(canvas.pixels[40:], expected[40:])

            # Input without control: dropped, reported to the operator, audited.
            await op.send_input(session, "move", x=10, y=20)
            refusal = await op.next_event(Error)
            assert isinstance(refusal, Error)
            assert refusal.code == "consent_required"
            assert "input applied" not in support.output.text()

            # The subscriber grants control mid-session; now input reaches the agent.
            support.type("/grant control")
            support.wait_for('Type "yes"')  # control is confirmed once more (issue 11)
            support.type("yes")
            await op.wait_state(session, lambda s: s.scopes.get("input:control") == "granted")
            await op.send_input(session, "move", x=10, y=20)
            support.wait_for("input applied: move 10,20")

            # Chat both ways.
            await op.chat(session, "こんにちは、サポートのアリスです")
            support.wait_for("こんにちは、サポートのアリスです")
            support.type("画面が固まりました")
            echo = await op.next_event(Chat)  # the operator's own line comes back to every viewer
            assert isinstance(echo, Chat)
            assert echo.sender == "Alice (helpdesk)"
            chat = await op.next_event(Chat)
            assert isinstance(chat, Chat)
            assert chat.text == "画面が固まりました"
            assert chat.sender == "subscriber"

            # The subscriber ends the session.
            support.type("/end")
            ended = await op.wait_state(session, lambda s: s.phase == "ended")
            assert ended.ended_by == "subscriber"
        assert support.proc.wait(30) == 0
        assert "The support session has ended" in support.output.text()
    finally:
        support.stop()

    receipts = broker.cli("audit", "receipts", session)
    lines = receipts.stdout.strip().splitlines()
    assert len(lines) == 2, receipts.stdout
    assert all("signature OK" in line for line in lines), receipts.stdout
    assert "granted=[screen:view] denied=[input:control]" in lines[0]
    assert (
        "granted=[screen:view, input:control]" in lines[1]
        or "granted=[input:control, screen:view]" in lines[1]
    )
    assert serial in lines[0]

    audit = _audit(broker)
    actions = [e["action"] for e in audit]
    for action in ("support.request", "session.claim", "consent.receipt", "input.refused", "session.end"):
        assert action in actions, action
    summary = next(e for e in audit if e["action"] == "session.end")
    assert summary["ended_by"] == "subscriber"
    assert summary["operator"] == "alice"
    assert summary["inputs"] == 1
    assert summary["refused_inputs"] == 1
    assert summary["updates"] >= 1
    assert summary["bytes_to_operator"] > 0
    assert sorted(summary["scopes"]) == ["input:control", "screen:view"]
    assert "audit chain OK" in broker.cli("audit", "verify").stdout
    # Nothing of what was typed or shown is in the audit log (第33条): chat text is not logged.
    raw = (broker.data_dir / "broker.sqlite3").read_bytes()
    assert "画面が固まりました".encode() not in raw


async def _next_screen(op: HelpdeskClient) -> bytes:
    import asyncio

    return await asyncio.wait_for(op.screen.get(), 30)


async def test_consent_timeout_is_deny(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "broker", extra_args=(*ALWAYS, "--consent-timeout", "1.5")).start()
    try:
        enrolled_agent(broker, tmp_path / "agent", "C-200")
        bob = add_operator(broker, "bob")
        support = start_support(tmp_path / "agent", "--test-pattern")
        try:
            code = support.support_code()
            async with _client(broker) as op:
                await login(op, bob)
                session = (await op.claim(code=code, scopes=["screen:view"])).session_id
                await op.watch(session)
                state = await op.wait_state(session, lambda s: s.scopes.get("screen:view") == "timeout")
                assert state.phase == "active"
                assert op.screen.empty()  # nothing is shown without an answer
        finally:
            support.stop()
        receipts = broker.cli("audit", "receipts", session).stdout
        assert "timeout" in receipts
        assert "granted=[]" in receipts
        assert "signature OK" in receipts
    finally:
        broker.stop()


async def test_wrong_codes_lock_the_operator_out(broker: BrokerProcess, tmp_path: Path) -> None:
    enrolled_agent(broker, tmp_path / "agent", "C-300")
    carol = add_operator(broker, "carol")
    support = start_support(tmp_path / "agent", "--test-pattern")
    try:
        code = support.support_code()
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        async with _client(broker) as op:
            await login(op, carol)
            for _ in range(10):
                with pytest.raises(HelpdeskError) as failed:
                    await op.claim(code=wrong)
                assert failed.value.code == "code_invalid"
            with pytest.raises(HelpdeskError) as locked:
                await op.claim(code=code)  # even the right code, now
            assert locked.value.code in ("account_locked", "rate_limited")
            assert locked.value.retry_after is not None
            assert locked.value.retry_after > 0
    finally:
        support.stop()
    # Audited in order, by the broker's writer: the answers may come before the last entry is stored.
    wait_until(lambda: [e["action"] for e in _audit(broker)].count("claim.failed") >= 10, what="claim.failed")
    assert [e["action"] for e in _audit(broker)].count("claim.failed") == 10


async def test_operator_password_lockout(broker: BrokerProcess) -> None:
    dave = add_operator(broker, "dave")
    async with _client(broker) as op:
        for _ in range(5):
            with pytest.raises(HelpdeskError) as failed:
                await op.login("dave", "wrong password", dave.totp())
            assert failed.value.code == "login_failed"
        with pytest.raises(HelpdeskError) as locked:
            await op.login("dave", dave.password, dave.totp())
        assert locked.value.code == "account_locked"
    actions = [e["action"] for e in _audit(broker)]
    assert actions.count("operator.login_failed") >= 5
    assert "operator.locked" in actions
    assert dave.password not in json.dumps(_audit(broker))


def _closed_hours_now() -> str:
    """Hours that exclude the current Japan time, whenever the test runs."""
    now = datetime.now(ZoneInfo("Asia/Tokyo"))
    start = (now + timedelta(hours=2)).strftime("%H:00")
    end = (now + timedelta(hours=3)).strftime("%H:00")
    return f"{start}-{end}"


def test_out_of_hours_request_is_refused_with_the_opening_time(tmp_path: Path) -> None:
    hours = _closed_hours_now()
    broker = BrokerProcess(tmp_path / "broker", extra_args=("--hours", hours)).start()
    try:
        enrolled_agent(broker, tmp_path / "agent", "C-400")
        support = start_support(tmp_path / "agent", "--test-pattern", lang="ja")
        assert support.proc.wait(60) == 5
        out = support.output.text()
        assert "受付時間外です" in out
        assert hours.split("-")[0] in out  # the opening time, Japan time
        assert "サポートコード" not in out
        refusal = next(e for e in _audit(broker) if e["action"] == "support.refused")
        assert refusal["code"] == "service_closed"
    finally:
        broker.stop()


def test_suspended_subscriber_is_refused(broker: BrokerProcess, tmp_path: Path) -> None:
    enrolled_agent(broker, tmp_path / "agent", "C-500")
    broker.cli("subscriber", "suspend", "C-500", "--days", "30")
    support = start_support(tmp_path / "agent", "--test-pattern")
    assert support.proc.wait(60) == 5
    assert "suspended" in support.output.text()
    refusal = next(e for e in _audit(broker) if e["action"] == "support.refused")
    assert refusal["code"] == "subscriber_suspended"


def test_too_many_requests_in_an_hour_are_refused(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "broker", extra_args=(*ALWAYS, "--max-requests-per-hour", "2")).start()
    try:
        enrolled_agent(broker, tmp_path / "agent", "C-600")
        for _ in range(2):
            support = start_support(tmp_path / "agent", "--test-pattern")
            support.support_code()
            support.stop()
        third = start_support(tmp_path / "agent", "--test-pattern")
        assert third.proc.wait(60) == 5
        assert "Too many requests" in third.output.text()
    finally:
        broker.stop()


async def test_agent_end_command_and_supervisor_watch(broker: BrokerProcess, tmp_path: Path) -> None:
    from tests.helpers import run_agent

    enrolled_agent(broker, tmp_path / "agent", "C-700")
    erin: OperatorAccount = add_operator(broker, "erin")
    sam = add_operator(broker, "sam", role="supervisor")
    support = start_support(tmp_path / "agent", "--test-pattern")
    try:
        code = support.support_code()
        async with _client(broker) as op, _client(broker) as sup:
            await login(op, erin)
            await login(sup, sam)
            session = (await op.claim(code=code)).session_id
            support.wait_for("View your screen")
            support.type("a")
            await op.watch(session)
            await op.wait_state(session, lambda s: s.scopes.get("screen:view") == "granted")
            live = await sup.sessions()
            assert [s.session_id for s in live.sessions] == [session]
            await sup.watch(session)
            await sup.wait_state(session, lambda s: s.phase == "active")
            await _next_screen(sup)  # the supervisor sees the screen
            await sup.send_input(session, "move", x=1, y=1)  # but cannot type
            refused = await sup.next_event(Error, timeout=10)
            assert isinstance(refused, Error)
            assert refused.code == "not_allowed"
            ended = run_agent(tmp_path / "agent", "end")
            assert ended.returncode == 0
            state = await op.wait_state(session, lambda s: s.phase == "ended")
            assert state.ended_by == "subscriber"
        assert support.proc.wait(30) == 0
    finally:
        support.stop()
    assert any(e["action"] == "session.supervise" for e in _audit(broker))
