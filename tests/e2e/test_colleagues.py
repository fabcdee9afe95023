"""Issue 13: invite a colleague, transfer a session — with real broker and agent processes over
mutual TLS, the subscriber answering in the agent's terminal (a pipe), operators as helpdesk
clients sending the raw ``invite``/``transfer`` messages.

What a user would check: the subscriber is asked for the colleague by name; after a yes the
colleague receives frames, after a no none and the first operator still does; after a transfer
the new operator owns the session, the old one is detached, and control must be asked for again;
``audit receipts`` verifies every receipt including those naming a person.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from helpdesk import HelpdeskClient
from protocol.messages import Error, Invitation, Invite, Transfer
from tests.helpers import (
    CONFIRM_PROMPT,
    BrokerProcess,
    add_operator,
    confirm_control,
    enrolled_agent,
    login,
    start_support,
)

pytestmark = pytest.mark.e2e


def _client(broker: BrokerProcess) -> HelpdeskClient:
    return HelpdeskClient(broker.url, cafile=broker.data_dir / "ca.pem")


async def _invitation(client: HelpdeskClient, status: str) -> Invitation:
    while True:
        message = await client.next_event(Invitation, timeout=30)
        assert isinstance(message, Invitation)
        if message.status == status:
            return message


async def _frames(client: HelpdeskClient, count: int = 1) -> None:
    for _ in range(count):
        await asyncio.wait_for(client.screen.get(), 30)


def _drain(client: HelpdeskClient) -> int:
    n = 0
    while not client.screen.empty():
        client.screen.get_nowait()
        n += 1
    return n


async def test_invite_yes_then_transfer(broker: BrokerProcess, tmp_path: Path) -> None:
    enrolled_agent(broker, tmp_path / "agent", "C-300")
    alice, bob = add_operator(broker, "alice"), add_operator(broker, "bob")
    support = start_support(tmp_path / "agent", "--test-pattern")
    try:
        code = support.support_code()
        async with _client(broker) as a, _client(broker) as b:
            await login(a, alice)
            await login(b, bob)
            session = (await a.claim(code=code, scopes=["screen:view", "input:control"])).session_id
            support.wait_for("Control your mouse and keyboard")
            support.type("a")
            confirm_control(support)
            await a.watch(session)
            await a.wait_state(session, lambda s: s.scopes.get("input:control") == "granted")
            await _frames(a)

            # Bob cannot watch before he is invited and allowed.
            await b.send(Invite(id="early", session_id=session, colleague="bob"))
            refused = await b.next_event(Error)
            assert isinstance(refused, Error)
            assert refused.code == "not_allowed"

            await a.send(Invite(id="i1", session_id=session, colleague="bob"))
            out = support.wait_for("(operator) would like to see your screen")
            assert "Bob (helpdesk) (operator) would like to see your screen. Allow?" in out
            assert (await _invitation(b, "asked")).by == "alice"
            assert _drain(b) == 0
            support.type("1")
            support.wait_for("You allowed Bob (helpdesk) to see your screen.")
            allowed = await _invitation(b, "allowed")
            assert allowed.session_id == session
            await b.watch(session)
            state = await b.wait_state(session, lambda s: len(s.viewers) == 2)
            assert [(v.name, v.read_only) for v in state.viewers] == [
                ("Alice (helpdesk)", False),
                ("Bob (helpdesk)", True),
            ]
            await _frames(b)
            support.wait_for("Bob (helpdesk) (operator, view only) can now see your screen.")
            # Read-only: bob's input is refused by the broker.
            await b.send_input(session, "move", x=5, y=5)
            error = await b.next_event(Error)
            assert isinstance(error, Error)
            assert error.code == "not_allowed"

            # Transfer to bob: asked first; after the yes bob owns the session without control.
            await a.send(Transfer(id="t1", session_id=session, colleague="bob"))
            support.wait_for("takes over from operator")
            support.type("1")
            support.wait_for("From now on Bob (helpdesk) (operator) is helping you.")
            await _invitation(a, "allowed")
            moved = await b.wait_state(session, lambda s: s.operator == "Bob (helpdesk)")
            assert moved.scopes["input:control"] == "withdrawn"
            assert [(v.name, v.read_only) for v in moved.viewers] == [("Bob (helpdesk)", False)]
            # The old operator is detached: its input is refused, no frames arrive any more.
            await a.send_input(session, "move", x=5, y=5)
            error = await a.next_event(Error)
            assert isinstance(error, Error)
            assert error.code == "not_allowed"
            # The new operator's input needs control again.
            await b.send_input(session, "move", x=5, y=5)
            error = await b.next_event(Error)
            assert isinstance(error, Error)
            assert error.code == "consent_required"
            await b.request_scopes(session, ["input:control"])
            support.wait_for('Operator "Bob (helpdesk)" asks for your permission')
            support.type("1")
            support.wait_for(CONFIRM_PROMPT, count=2)
            support.type("yes")
            await b.wait_state(session, lambda s: s.scopes.get("input:control") == "granted")
            await b.send_input(session, "move", x=7, y=9)
            support.wait_for("input applied: move 7,9")
            await b.end(session)
            await b.wait_state(session, lambda s: s.phase == "ended")
        support.wait_for("The support session has ended")
        assert support.proc.wait(30) == 0, support.output.text()
    finally:
        support.stop()
    receipts = broker.cli("audit", "receipts", session)
    assert receipts.returncode == 0, receipts.stdout + receipts.stderr
    assert "viewer_allowed" in receipts.stdout
    assert "viewer=bob" in receipts.stdout
    assert "transfer_allowed" in receipts.stdout


async def test_invite_no_keeps_the_colleague_out(broker: BrokerProcess, tmp_path: Path) -> None:
    enrolled_agent(broker, tmp_path / "agent", "C-301")
    alice, bob = add_operator(broker, "alice"), add_operator(broker, "bob")
    support = start_support(tmp_path / "agent", "--test-pattern")
    try:
        code = support.support_code()
        async with _client(broker) as a, _client(broker) as b:
            await login(a, alice)
            await login(b, bob)
            session = (await a.claim(code=code, scopes=["screen:view"])).session_id
            support.wait_for("View your screen")
            support.type("1")
            await a.watch(session)
            await a.wait_state(session, lambda s: s.scopes.get("screen:view") == "granted")
            await _frames(a)
            await a.send(Invite(id="i1", session_id=session, colleague="bob"))
            support.wait_for("would like to see your screen")
            support.type("")  # Enter: no
            support.wait_for("will not see your screen")
            assert (await _invitation(a, "refused")).colleague == "bob"
            await _invitation(b, "refused")
            await b.watch(session)
            error = await b.next_event(Error)
            assert isinstance(error, Error)
            assert error.code == "not_allowed"
            # The first operator still sees the screen; the colleague never got a frame.
            _drain(a)
            await _frames(a, 2)
            assert _drain(b) == 0
            # Unknown and offline colleagues, and oneself, are refused with their own codes.
            for colleague, code_ in (("nobody", "colleague_unknown"), ("alice", "self_invite")):
                await a.send(Invite(id=f"x-{colleague}", session_id=session, colleague=colleague))
                error = await a.next_event(Error)
                assert isinstance(error, Error)
                assert error.code == code_
            await a.end(session)
            await a.wait_state(session, lambda s: s.phase == "ended")
        support.wait_for("The support session has ended")
        assert support.proc.wait(30) == 0, support.output.text()
    finally:
        support.stop()
    assert "viewer_denied" in broker.cli("audit", "receipts", session).stdout


async def test_the_command_line_invites_and_transfers(broker: BrokerProcess, tmp_path: Path) -> None:
    """``helpdesk session SESSION``: ``/invite NAME`` and ``/transfer NAME`` print where each
    stands; after the hand-over the command says so and exits 0."""
    from tests.e2e.test_helpdesk_cli import Interactive, helpdesk, helpdesk_login

    state = tmp_path / "op" / "session.json"
    enrolled_agent(broker, tmp_path / "agent", "C-302")
    hana, bob = add_operator(broker, "hana"), add_operator(broker, "bob")
    login_result = helpdesk_login(
        broker, state, "hana", hana.totp(), f"{hana.password}\nhana-new-password-1\n"
    )
    assert login_result.returncode == 0, login_result.stderr
    support = start_support(tmp_path / "agent", "--test-pattern")
    interactive: Interactive | None = None
    try:
        code = support.support_code()
        claimed = helpdesk(state, "claim", code)
        assert claimed.returncode == 0, claimed.stderr
        session = claimed.stdout.strip()
        support.wait_for("View your screen")
        support.type("1")
        interactive = Interactive(state, session)
        interactive.wait_for("state: active")
        async with _client(broker) as b:
            await login(b, bob)
            interactive.type("/invite nobody")
            interactive.wait_for("error [colleague_unknown]")
            interactive.type("/invite bob")
            interactive.wait_for("invite bob: asked")
            support.wait_for("would like to see your screen")
            support.type("1")
            interactive.wait_for("invite bob: allowed")
            interactive.type("/transfer bob")
            interactive.wait_for("transfer bob: asked")
            support.wait_for("takes over from operator")
            support.type("1")
            interactive.wait_for("the session was handed over")
            assert interactive.proc.wait(30) == 0
            await b.watch(session)
            await b.wait_state(session, lambda s: s.operator == "Bob (helpdesk)")
            await b.end(session)
            await b.wait_state(session, lambda s: s.phase == "ended")
        assert support.proc.wait(30) == 0
    finally:
        if interactive is not None:
            interactive.stop()
        support.stop()
