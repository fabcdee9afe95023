"""Issue 13: inviting a colleague into a session and transferring it (broker side).

The manager with a fake clock, real store, real CA and real signatures (tests/broker/test_sessions
World): the colleague is a second logged-in operator. The subscriber is asked for the person by
name; until a signed yes the colleague gets no frame and cannot watch; a no leaves the first
operator's view untouched; a transfer happens only after the yes, detaches the old operator and
drops control.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from broker.core import OperatorPeer
from certs import sign
from protocol.messages import (
    ConsentDecision,
    ConsentRequest,
    Error,
    InputEvent,
    Invitation,
    Invite,
    ScopeRequest,
    SessionState,
    Transfer,
    Viewer,
    Watch,
)
from protocol.receipts import ConsentReceipt, receipt_bytes
from tests.broker.core.driver import Recorder
from tests.broker.core.test_sessions import T0, World, _frame, make_world


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def _account(world: World, name: str) -> None:
    world.store.add_operator(
        name,
        display_name=f"{name.title()} (helpdesk)",
        role="operator",
        password_hash="x",
        totp_secret_blob=b"x",
        now=T0,
        actor="test",
        password_change_required=False,
    )


def _colleague(world: World, name: str = "bob") -> tuple[OperatorPeer, Recorder]:
    _account(world, name)
    out = Recorder()
    peer = OperatorPeer(
        peer=out, address="127.0.0.1", name=name, display_name=f"{name.title()} (helpdesk)", role="operator"
    )
    world.manager.operator_attached(peer)
    return peer, out


def _active(world: World, scopes: tuple[str, ...] = ("screen:view", "input:control")) -> str:
    session, request = world.claim(scopes)
    world.decide(session, scopes, request.scopes, T0 + 2)
    return session


def _answer(
    world: World, session: str, request: ConsentRequest, decision: str, granted: tuple[str, ...], now: float
) -> None:
    receipt = ConsentReceipt(
        session_id=session,
        serial=world.agent.serial,
        operator=request.operator,
        decision=decision,  # type: ignore[arg-type]
        asked=("screen:view",),
        granted=granted,
        denied=(),
        time=now,
        viewer=request.viewer_account,
    )
    data = receipt_bytes(receipt)
    signature = base64.b64encode(sign(world.key, data)).decode()  # type: ignore[arg-type]
    world.manager.agent_message(
        world.agent,
        ConsentDecision(id="p", session_id=session, receipt=data.decode(), signature=signature),
        now,
    )


def _invitations(out: Recorder) -> list[Invitation]:
    return [m for m in out.messages if isinstance(m, Invitation)]


def _errors(out: Recorder) -> list[str]:
    return [m.code for m in out.messages if isinstance(m, Error)]


def _person_request(world: World) -> ConsentRequest:
    request = world.agent_out.last(ConsentRequest)
    assert isinstance(request, ConsentRequest)
    assert request.viewer is not None
    return request


def test_invite_asks_the_subscriber_by_name_and_only_a_yes_lets_the_colleague_see(world: World) -> None:
    session = _active(world)
    bob, bob_out = _colleague(world)
    world.manager.operator_message(world.op, Invite(id="i1", session_id=session, colleague="bob"), T0 + 3)
    request = _person_request(world)
    assert (request.viewer, request.viewer_account, request.transfer) == ("Bob (helpdesk)", "bob", False)
    assert request.operator == "Op"
    assert request.scopes == ("screen:view",)
    assert [i.status for i in _invitations(world.op_out)] == ["asked"]
    assert _invitations(world.op_out)[0].id == "i1"
    assert [i.status for i in _invitations(bob_out)] == ["asked"]

    # Before the yes: bob cannot watch and gets no frame.
    world.manager.operator_message(bob, Watch(id="w", session_id=session), T0 + 4)
    assert _errors(bob_out) == ["not_allowed"]
    world.manager.agent_binary(world.agent, _frame(), T0 + 4)
    assert bob_out.screens == []
    assert len(world.op_out.screens) == 1

    _answer(world, session, request, "viewer_allowed", ("screen:view", "input:control"), T0 + 5)
    assert [i.status for i in _invitations(bob_out)] == ["asked", "allowed"]
    assert [i.status for i in _invitations(world.op_out)] == ["asked", "allowed"]
    world.manager.operator_message(bob, Watch(id="w2", session_id=session), T0 + 6)
    state = bob_out.last(SessionState)
    assert isinstance(state, SessionState)
    assert state.viewers == (
        Viewer(name="Op", role="operator", read_only=False),
        Viewer(name="Bob (helpdesk)", role="operator", read_only=True, account="bob"),
    )
    agent_state = world.agent_out.last(SessionState)
    assert isinstance(agent_state, SessionState)
    assert agent_state.viewers == state.viewers
    world.manager.agent_binary(world.agent, _frame(), T0 + 7)
    assert len(bob_out.screens) == 1
    assert len(world.op_out.screens) == 2
    # Read-only: an invited colleague's input is refused and never reaches the agent.
    inputs_before = len([m for m in world.agent_out.messages if isinstance(m, InputEvent)])
    world.manager.operator_message(bob, InputEvent(session_id=session, kind="move", x=1, y=1), T0 + 8)
    assert _errors(bob_out)[-1] == "not_allowed"
    assert len([m for m in world.agent_out.messages if isinstance(m, InputEvent)]) == inputs_before
    # Neither may a colleague invite someone else.
    _colleague(world, "carol")
    world.manager.operator_message(bob, Invite(id="i2", session_id=session, colleague="carol"), T0 + 9)
    assert _errors(bob_out)[-1] == "not_allowed"

    audit = [
        (e.action, e.details.get("status"), e.details.get("by"), e.details.get("colleague"))
        for e in world.store.audit_entries(subject=session)
        if e.action == "session.invite"
    ]
    assert audit == [("session.invite", "asked", "op", "bob"), ("session.invite", "allowed", "op", "bob")]
    receipts = [e for e in world.store.audit_entries(subject=session) if e.action == "consent.receipt"]
    assert receipts[-1].details["viewer"] == "bob"
    assert receipts[-1].details["decision"] == "viewer_allowed"


def test_a_no_keeps_the_colleague_out_and_the_first_operator_watching(world: World) -> None:
    session = _active(world)
    bob, bob_out = _colleague(world)
    world.manager.operator_message(world.op, Invite(id="i1", session_id=session, colleague="bob"), T0 + 3)
    _answer(world, session, _person_request(world), "viewer_denied", ("screen:view", "input:control"), T0 + 4)
    assert [i.status for i in _invitations(world.op_out)] == ["asked", "refused"]
    assert [i.status for i in _invitations(bob_out)] == ["asked", "refused"]
    state = world.state()
    assert state.scopes["screen:view"] == "granted"
    assert state.scopes["input:control"] == "granted"
    world.manager.operator_message(bob, Watch(id="w", session_id=session), T0 + 5)
    assert _errors(bob_out) == ["not_allowed"]
    world.manager.agent_binary(world.agent, _frame(), T0 + 6)
    assert bob_out.screens == []
    assert len(world.op_out.screens) == 1


def test_silence_is_no(world: World) -> None:
    session = _active(world)
    _, bob_out = _colleague(world)
    world.manager.operator_message(world.op, Invite(id="i1", session_id=session, colleague="bob"), T0 + 3)
    world.manager.tick(T0 + 3 + 75.1)
    assert [i.status for i in _invitations(bob_out)] == ["asked", "timeout"]
    assert world.manager.sessions[session].pending is None
    assert world.manager.sessions[session].granted == frozenset({"screen:view", "input:control"})


@pytest.mark.parametrize(
    ("colleague", "code"),
    [("op", "self_invite"), ("nobody", "colleague_unknown"), ("dave", "colleague_offline")],
)
def test_refusals(world: World, colleague: str, code: str) -> None:
    session = _active(world)
    _account(world, "op")
    _account(world, "dave")  # exists, not logged in
    world.manager.operator_message(world.op, Invite(id="i", session_id=session, colleague=colleague), T0 + 3)
    assert _errors(world.op_out)[-1] == code
    assert not any(isinstance(m, ConsentRequest) and m.viewer for m in world.agent_out.messages)


def test_a_supervisor_watching_may_not_invite(world: World) -> None:
    session = _active(world)
    _colleague(world)
    sup_out = Recorder()
    sup = OperatorPeer(peer=sup_out, address="::1", name="sam", display_name="Sam", role="supervisor")
    world.manager.operator_attached(sup)
    world.manager.operator_message(sup, Watch(id="w", session_id=session), T0 + 3)
    world.manager.operator_message(sup, Invite(id="i", session_id=session, colleague="bob"), T0 + 4)
    world.manager.operator_message(sup, Transfer(id="t", session_id=session, colleague="bob"), T0 + 4)
    assert _errors(sup_out) == ["not_allowed", "not_allowed"]


def test_transfer_after_yes_moves_the_session_and_drops_control(world: World) -> None:
    session = _active(world)
    bob, bob_out = _colleague(world)
    world.manager.operator_message(world.op, Transfer(id="t1", session_id=session, colleague="bob"), T0 + 3)
    request = _person_request(world)
    assert request.transfer is True
    # Nothing moves before the answer.
    assert world.manager.sessions[session].operator == "op"
    _answer(world, session, request, "transfer_allowed", ("screen:view",), T0 + 4)
    s = world.manager.sessions[session]
    assert s.operator == "bob"
    assert s.operator_display == "Bob (helpdesk)"
    assert world.op not in s.viewers
    assert s.granted == frozenset({"screen:view"})
    assert [i.status for i in _invitations(world.op_out)] == ["asked", "allowed"]
    # The old operator is detached: no frames, no input, no state any more.
    world.manager.operator_message(bob, Watch(id="w", session_id=session), T0 + 5)
    world.manager.agent_binary(world.agent, _frame(), T0 + 6)
    assert len(bob_out.screens) == 1
    frames_before = len(world.op_out.screens)
    assert frames_before == 0
    world.manager.operator_message(world.op, InputEvent(session_id=session, kind="move", x=1, y=1), T0 + 7)
    assert _errors(world.op_out)[-1] == "not_allowed"
    state = bob_out.last(SessionState)
    assert isinstance(state, SessionState)
    assert state.operator == "Bob (helpdesk)"
    assert state.scopes["input:control"] == "withdrawn"
    assert state.viewers == (Viewer(name="Bob (helpdesk)", role="operator", read_only=False),)
    # Control is not carried over: the new operator's input is refused until asked again.
    world.manager.operator_message(bob, InputEvent(session_id=session, kind="move", x=1, y=1), T0 + 8)
    assert _errors(bob_out)[-1] == "consent_required"
    world.manager.operator_message(
        bob, ScopeRequest(id="s", session_id=session, scopes=("input:control",)), T0 + 9
    )
    asked = world.agent_out.last(ConsentRequest)
    assert isinstance(asked, ConsentRequest)
    assert asked.operator == "Bob (helpdesk)"
    assert asked.viewer is None
    audit = [
        (e.details.get("status"), e.details.get("by"), e.details.get("colleague"))
        for e in world.store.audit_entries(subject=session)
        if e.action == "session.transfer"
    ]
    assert audit == [("asked", "op", "bob"), ("allowed", "op", "bob")]


def test_transfer_refused_changes_nothing(world: World) -> None:
    session = _active(world)
    bob, bob_out = _colleague(world)
    world.manager.operator_message(world.op, Transfer(id="t1", session_id=session, colleague="bob"), T0 + 3)
    _answer(
        world, session, _person_request(world), "transfer_denied", ("screen:view", "input:control"), T0 + 4
    )
    s = world.manager.sessions[session]
    assert s.operator == "op"
    assert world.op in s.viewers
    assert s.granted == frozenset({"screen:view", "input:control"})
    world.manager.operator_message(bob, Watch(id="w", session_id=session), T0 + 5)
    assert _errors(bob_out) == ["not_allowed"]


def test_a_receipt_about_someone_not_asked_changes_nothing(world: World) -> None:
    session = _active(world)
    _colleague(world)
    forged = ConsentRequest(
        id="x", session_id=session, operator="Op", scopes=("screen:view",), viewer="B", viewer_account="bob"
    )
    _answer(world, session, forged, "viewer_allowed", ("screen:view", "input:control"), T0 + 3)
    assert _errors(world.agent_out)[-1] == "invalid_state"
    assert world.manager.sessions[session].allowed_viewers == set()


def test_frames_are_filtered_per_viewer_even_if_someone_is_attached(world: World) -> None:
    """Second line inside the broker: whoever ends up in the session's viewers without being its
    operator, a supervisor or a colleague the subscriber allowed gets no frame."""
    session = _active(world)
    bob, bob_out = _colleague(world)
    world.manager.sessions[session].viewers.add(bob)  # as if a bug attached him
    world.manager.agent_binary(world.agent, _frame(), T0 + 3)
    assert bob_out.screens == []
    assert len(world.op_out.screens) == 1
