"""The session core with a fake clock: code expiry, consent timeout, grace periods, resume,
forged receipts, withdrawn scopes, inventory outside consent, throttled refusal audits.

The core runs in :class:`tests.broker.core.driver.CoreDriver` (the host without sockets, store or
sleeping): peers are recorders of what the broker would send; the CA, the keys and the signatures
are real.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from broker.core import AgentPeer, OperatorPeer, SessionCore, SessionRules, Subscriber
from broker.policy import CodeAttemptGuard, parse_hours
from certs import CertificateAuthority, build_csr, generate_private_key, serial_hex, sign
from protocol.messages import (
    Claim,
    ConsentDecision,
    ConsentRequest,
    Error,
    InputEvent,
    InventoryItem,
    InventoryReport,
    ScreenRefresh,
    SessionEnd,
    SessionState,
    SupportCodeIssued,
    SupportRequest,
    Watch,
)
from protocol.receipts import ConsentReceipt, receipt_bytes
from protocol.screen import Encoding, Rect, ScreenUpdate, encode_update

from .driver import CoreDriver, Recorder

T0 = 1_800_000_000.0


@dataclass
class World:
    store: Any
    """The driver (audit rows in memory), or a real storage its commands are written to
    (``make_stored_world`` in tests/broker/test_receipts_audit.py)."""
    manager: CoreDriver
    agent: AgentPeer
    agent_out: Recorder
    op: OperatorPeer
    op_out: Recorder
    key: object

    def request(self, now: float = T0) -> str:
        self.manager.support_request(self.agent, SupportRequest(id="r1"), now)
        issued = self.agent_out.last(SupportCodeIssued)
        assert isinstance(issued, SupportCodeIssued)
        return issued.session_id

    def claim(self, scopes: tuple[str, ...], now: float = T0 + 1) -> tuple[str, ConsentRequest]:
        session = self.request(now - 1)
        issued = self.agent_out.last(SupportCodeIssued)
        assert isinstance(issued, SupportCodeIssued)
        self.manager.operator_message(self.op, Claim(id="c", code=issued.code, scopes=scopes), now)
        request = self.agent_out.last(ConsentRequest)
        assert isinstance(request, ConsentRequest)
        return session, request

    def decide(
        self,
        session: str,
        granted: tuple[str, ...],
        asked: tuple[str, ...],
        now: float,
        *,
        key: object = None,
    ) -> None:
        receipt = ConsentReceipt(
            session_id=session,
            serial=self.agent.serial,
            operator="Op",
            decision="answered",
            asked=asked,
            granted=granted,
            denied=tuple(s for s in asked if s not in granted),
            time=now,
        )
        signature = sign(key or self.key, receipt_bytes(receipt))  # type: ignore[arg-type]
        self.manager.agent_message(
            self.agent,
            ConsentDecision(
                id="d",
                session_id=session,
                receipt=receipt_bytes(receipt).decode(),
                signature=base64.b64encode(signature).decode(),
            ),
            now,
        )

    def state(self) -> SessionState:
        state = self.op_out.last(SessionState)
        assert isinstance(state, SessionState)
        return state

    def actions(self) -> list[str]:
        return [e.action for e in self.store.audit_entries()]


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def make_world(tmp_path: Path | None = None) -> World:
    now = datetime.fromtimestamp(T0, UTC)
    ca = CertificateAuthority.create(common_name="Test CA", now=now)
    key = generate_private_key()
    cert = ca.sign_client_csr(build_csr(key, common_name="C-1"), expected_common_name="C-1", now=now)
    serial = serial_hex(cert)
    core = SessionCore(hours=parse_hours("00:00-00:00"), code_guard=CodeAttemptGuard(), rules=SessionRules())
    manager = CoreDriver(core, now=T0 - 10)
    manager.subscribers["C-1"] = Subscriber(status="active")
    manager.certificates[serial] = cert.public_bytes(serialization.Encoding.PEM).decode()
    agent_out, op_out = Recorder(), Recorder()
    agent = AgentPeer(peer=agent_out, serial=serial, contract_id="C-1", machine_name="pc")
    op = OperatorPeer(peer=op_out, address="127.0.0.1", name="op", display_name="Op", role="operator")
    manager.operator_attached(op)
    return World(manager, manager, agent, agent_out, op, op_out, key)


def _frame() -> bytes:
    rect = Rect(x=0, y=0, w=1, h=1, encoding=Encoding.PNG, payload=b"x")
    return encode_update(ScreenUpdate(seq=1, width=10, height=10, rects=(rect,), keyframe=True))


def test_an_unclaimed_code_expires_after_ten_minutes(world: World) -> None:
    session = world.request()
    world.manager.tick(T0 + 599)
    assert session in world.manager.sessions
    world.manager.tick(T0 + 600)
    assert session not in world.manager.sessions
    ended = world.agent_out.last(SessionState)
    assert isinstance(ended, SessionState)
    assert (ended.phase, ended.ended_by, ended.reason) == ("ended", "broker", "code_expired")


def test_a_silent_agent_means_deny(world: World) -> None:
    _, request = world.claim(("screen:view",))
    deadline = T0 + 1 + request.timeout + SessionRules().consent_slack
    world.manager.tick(deadline - 0.5)
    assert world.state().scopes == {"screen:view": "requested"}
    world.manager.tick(deadline)
    assert world.state().scopes == {"screen:view": "timeout"}
    assert world.state().phase == "active"
    assert "consent.timeout" in world.actions()
    world.manager.agent_binary(world.agent, _frame(), deadline + 1)
    assert world.op_out.screens == []


def test_a_lost_agent_ends_the_session_after_the_grace_period(world: World) -> None:
    session, _ = world.claim(("screen:view",))
    world.manager.agent_disconnected(world.agent, T0 + 10)
    world.manager.tick(T0 + 39)
    assert session in world.manager.sessions
    world.manager.tick(T0 + 40)
    assert world.state().reason == "agent_lost"


def test_an_agent_that_comes_back_resumes_and_is_asked_again(world: World) -> None:
    session, request = world.claim(("screen:view",))
    world.manager.agent_disconnected(world.agent, T0 + 10)
    back_out = Recorder()
    back = AgentPeer(peer=back_out, serial=world.agent.serial, contract_id="C-1")
    world.manager.support_request(back, SupportRequest(id="again", resume=session), T0 + 20)
    asked = back_out.last(ConsentRequest)
    assert isinstance(asked, ConsentRequest)
    assert asked.id == request.id  # the same question, so the answer still matches
    world.manager.tick(T0 + 100)
    assert session in world.manager.sessions


def test_only_the_same_certificate_may_resume(world: World) -> None:
    session, _ = world.claim(("screen:view",))
    world.manager.agent_disconnected(world.agent, T0 + 10)
    stranger_out = Recorder()
    stranger = AgentPeer(peer=stranger_out, serial="abc123", contract_id="C-2")
    world.manager.support_request(stranger, SupportRequest(id="x", resume=session), T0 + 11)
    error = stranger_out.last(Error)
    assert isinstance(error, Error)
    assert error.code == "not_found"


def test_a_lost_operator_ends_the_session_after_the_grace_period(world: World) -> None:
    world.claim(("screen:view",))
    world.manager.operator_detached(world.op, T0 + 5)
    world.manager.tick(T0 + 35)
    ended = world.agent_out.last(SessionState)
    assert isinstance(ended, SessionState)
    assert ended.reason == "operator_lost"


def test_a_forged_receipt_changes_nothing(world: World) -> None:
    session, request = world.claim(("screen:view",))
    world.decide(session, ("screen:view",), request.scopes, T0 + 2, key=generate_private_key())
    error = world.agent_out.last(Error)
    assert isinstance(error, Error)
    assert error.code == "invalid_field"
    assert world.manager.sessions[session].granted == frozenset()
    assert "consent.receipt" not in world.actions()


def test_withdrawn_view_stops_the_screen_at_once(world: World) -> None:
    session, request = world.claim(("screen:view",))
    world.decide(session, ("screen:view",), request.scopes, T0 + 2)
    world.manager.agent_binary(world.agent, _frame(), T0 + 3)
    assert len(world.op_out.screens) == 1
    world.decide(session, (), (), T0 + 4)
    assert world.state().scopes["screen:view"] == "withdrawn"
    world.manager.agent_binary(world.agent, _frame(), T0 + 5)
    assert len(world.op_out.screens) == 1
    error = world.agent_out.last(Error)
    assert isinstance(error, Error)
    assert error.code == "consent_required"


def test_inventory_outside_consent_is_refused_and_not_stored(world: World) -> None:
    session, request = world.claim(("inventory:os", "inventory:memory"))
    world.decide(session, ("inventory:os",), request.scopes, T0 + 2)
    report = InventoryReport(
        id="i",
        session_id=session,
        items=(
            InventoryItem(item="os", available=True, value="Linux"),
            InventoryItem(item="memory", available=True, value=1),
        ),
    )
    world.manager.agent_message(world.agent, report, T0 + 3)
    error = world.agent_out.last(Error)
    assert isinstance(error, Error)
    assert error.code == "consent_required"
    assert world.store.latest_inventory("C-1") is None
    assert "inventory.refused" in world.actions()


def test_refused_input_is_reported_each_time_but_audited_at_most_every_few_seconds(world: World) -> None:
    session, request = world.claim(("screen:view",))
    world.decide(session, ("screen:view",), request.scopes, T0 + 2)
    for i in range(20):
        world.manager.operator_message(
            world.op, InputEvent(session_id=session, kind="move", x=1, y=1), T0 + 3 + i * 0.1
        )
    refusals = [m for m in world.op_out.messages if isinstance(m, Error) and m.code == "consent_required"]
    assert len(refusals) == 20
    audited = [e for e in world.store.audit_entries() if e.action == "input.refused"]
    assert len(audited) == 1
    # The 19 held back are written by the core's timer, 5 s after the first entry, without
    # waiting for another refusal; the next one after that waits its own 5 s.
    world.manager.operator_message(world.op, InputEvent(session_id=session, kind="move", x=1, y=1), T0 + 9)
    audited = [e for e in world.store.audit_entries() if e.action == "input.refused"]
    assert [(e.at, e.details["count"]) for e in audited] == [(T0 + 3, 1), (T0 + 8, 19)]
    world.manager.tick(T0 + 14)
    audited = [e for e in world.store.audit_entries() if e.action == "input.refused"]
    assert [e.details["count"] for e in audited] == [1, 19, 1]
    assert world.manager.sessions[session].refused_inputs == 21 == sum(e.details["count"] for e in audited)
    assert not any(isinstance(m, InputEvent) for m in world.agent_out.messages)


def test_held_back_refusals_are_audited_when_the_session_ends(world: World) -> None:
    session, request = world.claim(("screen:view",))
    world.decide(session, ("screen:view",), request.scopes, T0 + 2)
    for i in range(3):
        world.manager.operator_message(
            world.op, InputEvent(session_id=session, kind="move", x=1, y=1), T0 + 3 + i
        )
    world.manager.operator_message(world.op, SessionEnd(id="e", session_id=session), T0 + 6)
    audited = [e for e in world.store.audit_entries() if e.action == "input.refused"]
    assert [e.details["count"] for e in audited] == [1, 2]
    end = [e for e in world.store.audit_entries() if e.action == "session.end"]
    assert end[0].details["refused_inputs"] == 3


def test_no_keyframe_request_when_the_agent_starts_sharing_by_itself(world: World) -> None:
    """docs/session-core.md, keyframes: on a grant of screen:view the agent starts with a keyframe,
    so the broker asks for none; a viewer who joins a running stream gets one asked for."""
    session, request = world.claim(("screen:view",))
    world.decide(session, ("screen:view",), request.scopes, T0 + 2)
    assert not any(isinstance(m, ScreenRefresh) for m in world.agent_out.messages)
    world.manager.agent_binary(world.agent, _frame(), T0 + 3)
    sup_out = Recorder()
    sup = OperatorPeer(peer=sup_out, address="::1", name="sam", display_name="Sam", role="supervisor")
    world.manager.operator_attached(sup)
    world.manager.operator_message(sup, Watch(id="w", session_id=session), T0 + 4)
    refresh = world.agent_out.last(ScreenRefresh)
    assert isinstance(refresh, ScreenRefresh)
    assert refresh.session_id == session
    assert [isinstance(m, ScreenRefresh) for m in world.agent_out.messages].count(True) == 1


def test_session_ids_never_look_like_command_line_options(world: World) -> None:
    # Operators type session ids into command lines (python -m helpdesk watch ID, broker audit receipts ID).
    ids = {world.manager.new_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert not any(session_id.startswith("-") for session_id in ids)


def test_asking_again_replaces_a_waiting_request(world: World) -> None:
    first = world.request(T0)
    second = world.request(T0 + 1)
    assert first != second
    assert list(world.manager.sessions) == [second]
    ended = next(m for m in world.agent_out.messages if isinstance(m, SessionState) and m.session_id == first)
    assert ended.reason == "replaced by a new request"
