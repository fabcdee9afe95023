"""Both session cores against hostile operators, a lying broker, colleagues and a restart of the PC.

The broker's core refuses what an operator may not do; when such a message is forced past it
(``force_to_agent``, as a broken or compromised broker would), the agent's core refuses it again
from its own consent record (DESIGN §2: the agent is the authority on consent, 第31条1項④).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from agent.core import actions
from broker.core import Shutdown
from protocol.messages import (
    Claim,
    Error,
    InputEvent,
    Invitation,
    Invite,
    RestartRequest,
    ScopeRequest,
    ScreenRefresh,
    SessionState,
    Transfer,
    Viewer,
    Watch,
)
from protocol.scopes import GRANTED, SCOPE_CONTROL, SCOPE_RESTART, SCOPE_VIEW, WITHDRAWN, ScopeStatus

from .pair import AgentBrokerPair, OperatorEndpoint, claimed, cores_agree


@pytest.fixture(autouse=True)
def _cores_agree() -> Iterator[None]:
    yield from cores_agree()


def move(pair: AgentBrokerPair) -> InputEvent:
    return InputEvent(session_id=pair.session_id, kind="move", x=1, y=2)


def errors(answers: Sequence[object]) -> list[str]:
    return [m.code for m in answers if isinstance(m, Error)]


def lie(pair: AgentBrokerPair, **scopes: ScopeStatus) -> SessionState:
    """A ``session_state`` built by hand, as a lying broker would send it."""
    return SessionState(
        session_id=pair.session_id,
        phase="active",
        contract_id="C-1",
        operator="Op",
        scopes={scope.replace("_", ":", 1): status for scope, status in scopes.items()},
        viewers=(Viewer(name="Op", role="operator"),),
    )


# -- hostile operators ------------------------------------------------------------------------------


def test_input_without_control_is_refused_by_the_broker_and_forced_through_by_the_agent() -> None:
    pair, op = claimed(SCOPE_VIEW)
    pair.answer(SCOPE_VIEW)
    assert errors(op.send(move(pair))) == ["consent_required"]
    assert pair.of(actions.InjectInput) == []
    pair.expect_refusals = True
    out = pair.force_to_agent(move(pair))  # the broker's check skipped
    assert pair.of(actions.InjectInput) == []
    assert [x.what for x in out if isinstance(x, actions.Ignored)] == ["input without input:control"]
    assert [e.code for e in pair.sent_by_agent(Error)] == ["consent_required"]
    # the agent's report reaches the broker: audited and the operator told
    assert [e.details["reason"] for e in pair.audit("input.refused") if e.actor.startswith("agent:")] == [
        "no_control"
    ]
    assert op.last(Error).code == "consent_required"


def test_a_code_claims_once_and_a_second_operator_cannot_take_the_session() -> None:
    pair, op = claimed(SCOPE_VIEW)
    code = pair.code()
    other = pair.operator("mallory", display_name="Mallory")
    assert errors(other.send(Claim(id="c2", code=code, scopes=(SCOPE_VIEW, SCOPE_CONTROL)))) == [
        "code_invalid"
    ]
    assert errors(op.send(Claim(id="c3", code=code))) == ["code_invalid"]
    assert errors(other.send(Claim(id="c4", session_id=pair.session_id))) == ["not_allowed"]
    assert errors(other.send(Watch(id="w1", session_id=pair.session_id))) == ["not_allowed"]
    assert len(pair.of(actions.AskConsent)) == 1  # the subscriber was asked once, by the first operator
    assert pair.broker.sessions[pair.session_id].operator == "op"


def test_a_supervisor_watching_cannot_send_input_even_with_control_granted() -> None:
    pair, op = claimed(SCOPE_VIEW, SCOPE_CONTROL)
    pair.answer(SCOPE_VIEW, SCOPE_CONTROL, control_confirmed=True)
    boss = pair.operator("boss", display_name="Boss", role="supervisor")
    boss.send(Watch(id="w1", session_id=pair.session_id))
    assert [v.name for v in pair.agent.effects.viewers] == ["Op", "Boss"]  # the subscriber sees who
    assert errors(boss.send(move(pair))) == ["not_allowed"]
    assert errors(boss.send(ScreenRefresh(session_id=pair.session_id, monitor=2))) == ["not_allowed"]
    assert pair.of(actions.InjectInput) == []
    assert [e.details["kind"] for e in pair.audit("viewer.refused")] == ["input", "monitor_switch"]
    frame = pair.frame(keyframe=True)
    assert frame in boss.screens
    assert frame in op.screens


def test_a_viewers_input_forced_through_without_control_is_refused_by_the_agent() -> None:
    pair, _ = claimed(SCOPE_VIEW)
    pair.answer(SCOPE_VIEW)
    boss = pair.operator("boss", display_name="Boss", role="supervisor")
    boss.send(Watch(id="w1", session_id=pair.session_id))
    assert errors(boss.send(move(pair))) == ["not_allowed"]
    pair.expect_refusals = True
    pair.force_to_agent(move(pair))
    assert pair.of(actions.InjectInput) == []


# -- a lying broker ---------------------------------------------------------------------------------


def test_a_session_state_claiming_scopes_never_granted_changes_nothing_on_the_agent() -> None:
    pair, _ = claimed(SCOPE_VIEW, SCOPE_CONTROL)
    pair.answer()  # the subscriber refuses everything
    before = len(pair.actions)
    pair.expect_refusals = True
    out = pair.force_to_agent(lie(pair, screen_view=GRANTED, input_control=GRANTED, inventory_os=GRANTED))
    [ignored] = [x for x in out if isinstance(x, actions.Ignored)]
    assert set(ignored.scopes) == {SCOPE_VIEW, SCOPE_CONTROL, "inventory:os"}
    assert not [x for x in pair.actions[before:] if isinstance(x, actions.StartSharing | actions.AllowInput)]
    assert not [x for x in pair.actions[before:] if isinstance(x, actions.CollectInventory | actions.Send)]
    assert pair.agent_granted() == frozenset()
    assert pair.frame() is None
    pair.force_to_agent(move(pair))
    assert pair.of(actions.InjectInput) == []
    pair.force_to_agent(RestartRequest(id="x1", session_id=pair.session_id))
    assert pair.of(actions.Reboot) == []


def test_a_session_state_hiding_a_withdrawal_does_not_restart_sharing() -> None:
    pair, _ = claimed(SCOPE_VIEW)
    pair.answer(SCOPE_VIEW)
    pair.withdraw(SCOPE_VIEW)
    started = len(pair.of(actions.StartSharing))
    pair.expect_refusals = True
    pair.force_to_agent(lie(pair, screen_view=GRANTED))
    assert len(pair.of(actions.StartSharing)) == started
    assert pair.frame() is None


# -- colleagues (issue 13) --------------------------------------------------------------------------


def invited(allowed: bool | None) -> tuple[AgentBrokerPair, OperatorEndpoint, OperatorEndpoint]:
    pair, op = claimed(SCOPE_VIEW)
    pair.answer(SCOPE_VIEW)
    colleague = pair.operator("bob", display_name="Bob")
    op.send(Invite(id="i1", session_id=pair.session_id, colleague="bob"))
    [ask] = pair.of(actions.AskPerson)
    assert ask.request.viewer == "Bob"
    assert colleague.last(Invitation).status == "asked"
    if allowed is None:
        pair.advance(60)
    else:
        pair.answer_person(allowed)
    return pair, op, colleague


def test_an_invited_colleague_the_subscriber_allows_sees_the_screen_read_only() -> None:
    pair, op, colleague = invited(True)
    assert op.last(Invitation).status == colleague.last(Invitation).status == "allowed"
    [receipt] = [r for r in pair.receipts() if r.viewer is not None]
    assert receipt.viewer == "bob"  # the account: receipts name the person unambiguously
    colleague.send(Watch(id="w1", session_id=pair.session_id))
    assert [v.name for v in pair.agent.effects.viewers] == ["Op", "Bob"]
    frame = pair.frame()
    assert frame in colleague.screens
    assert errors(colleague.send(move(pair))) == ["not_allowed"]
    assert pair.agent_granted() == {SCOPE_VIEW} == pair.broker_granted()


@pytest.mark.parametrize("allowed", [False, None], ids=["refused", "timeout"])
def test_a_colleague_the_subscriber_did_not_allow_sees_nothing(allowed: bool | None) -> None:
    pair, op, colleague = invited(allowed)
    status = "refused" if allowed is False else "timeout"
    assert op.last(Invitation).status == colleague.last(Invitation).status == status
    assert errors(colleague.send(Watch(id="w1", session_id=pair.session_id))) == ["not_allowed"]
    pair.frame()
    assert colleague.screens == []
    assert op.screens  # the operator the subscriber allowed still sees
    assert pair.agent_granted() == {SCOPE_VIEW} == pair.broker_granted()


# -- restart of the PC (issue 16) -------------------------------------------------------------------


def test_restart_notice_keeps_the_session_and_nothing_granted_carries_over() -> None:
    pair, op = claimed(SCOPE_VIEW, SCOPE_CONTROL, SCOPE_RESTART)
    pair.answer(SCOPE_VIEW, SCOPE_CONTROL, SCOPE_RESTART, control_confirmed=True)
    op.send(RestartRequest(id="r1", session_id=pair.session_id))
    assert len(pair.of(actions.Reboot)) == 1
    assert pair.audit("session.restart")
    assert op.state().restart_until is not None
    assert pair.agent_granted() == frozenset() == pair.broker_granted()  # withdrawn before the reboot
    assert op.state().scopes[SCOPE_VIEW] == WITHDRAWN
    pair.advance(120)  # far past the normal 30 s grace: a reboot and the login take time
    pair.reboot(confirmed=True)
    assert pair.audit("session.agent_back")[-1].details["after_restart"] is True
    assert op.state().phase == "active"
    assert pair.agent_granted() == frozenset() == pair.broker_granted()
    assert pair.frame() is None
    op.send(ScopeRequest(id="s2", session_id=pair.session_id, scopes=(SCOPE_VIEW,)))
    pair.answer(SCOPE_VIEW)
    assert pair.agent_granted() == {SCOPE_VIEW} == pair.broker_granted()
    assert pair.frame() is not None


def test_restart_request_without_the_scope_is_refused_on_both_sides() -> None:
    pair, op = claimed(SCOPE_VIEW)
    pair.answer(SCOPE_VIEW)
    assert errors(op.send(RestartRequest(id="r1", session_id=pair.session_id))) == ["consent_required"]
    pair.expect_refusals = True
    pair.force_to_agent(RestartRequest(id="r2", session_id=pair.session_id))
    assert pair.of(actions.Reboot) == []
    assert [e.code for e in pair.sent_by_agent(Error)] == ["consent_required"]


def test_after_a_restart_the_subscriber_not_confirming_ends_the_session() -> None:
    pair, op = claimed(SCOPE_RESTART)
    pair.answer(SCOPE_RESTART)
    op.send(RestartRequest(id="r1", session_id=pair.session_id))
    pair.reboot(confirmed=False)
    assert op.state().phase == "ended"
    assert op.state().ended_by == "subscriber"
    assert pair.finished == 0


def test_a_transfer_hands_the_session_over_and_control_does_not_carry_over() -> None:
    pair, op = claimed(SCOPE_VIEW, SCOPE_CONTROL)
    pair.answer(SCOPE_VIEW, SCOPE_CONTROL, control_confirmed=True)
    colleague = pair.operator("bob", display_name="Bob")
    op.send(Transfer(id="t1", session_id=pair.session_id, colleague="bob"))
    pair.answer_person(True)
    assert colleague.last(Invitation).status == "allowed"
    assert pair.agent_granted() == {SCOPE_VIEW} == pair.broker_granted()
    colleague.send(Watch(id="w1", session_id=pair.session_id))
    assert colleague.state().operator == "Bob"
    assert errors(colleague.send(move(pair))) == ["consent_required"]
    assert errors(op.send(move(pair))) == ["not_allowed"]
    assert pair.of(actions.InjectInput) == []
    assert pair.frame() in colleague.screens


# -- the connection -----------------------------------------------------------------------------


def test_a_question_open_when_the_connection_dropped_is_asked_once_after_the_resume() -> None:
    pair, op = claimed(SCOPE_VIEW)
    pair.drop()
    pair.advance(5)
    pair.connect()
    assert len(pair.of(actions.AskConsent)) == 1  # the broker asks again; the subscriber sees one question
    pair.answer(SCOPE_VIEW)
    pair.advance(120)  # no second question left to time out
    assert pair.agent_granted() == {SCOPE_VIEW} == pair.broker_granted()
    assert [r.decision for r in pair.receipts()] == ["answered"]
    assert pair.frame() in op.screens


def test_a_scope_asked_while_the_agent_was_away_is_asked_when_it_is_back() -> None:
    pair, op = claimed(SCOPE_VIEW)
    pair.answer(SCOPE_VIEW)
    pair.drop()
    op.send(ScopeRequest(id="s2", session_id=pair.session_id, scopes=(SCOPE_CONTROL,)))
    assert errors(op.send(move(pair))) == ["consent_required"]
    pair.connect()
    assert [x.request.scopes for x in pair.of(actions.AskConsent)][-1] == (SCOPE_CONTROL,)
    pair.answer(SCOPE_CONTROL, control_confirmed=True)
    assert pair.agent_granted() == {SCOPE_VIEW, SCOPE_CONTROL} == pair.broker_granted()
    assert op.send(move(pair)) == []
    assert len(pair.of(actions.InjectInput)) == 1


def test_the_broker_shutting_down_ends_the_session_on_the_agent() -> None:
    pair, op = claimed(SCOPE_VIEW)
    pair.answer(SCOPE_VIEW)
    pair.broker.feed(Shutdown(), pair.now)
    pair.pump()
    assert op.state().phase == "ended"
    assert pair.finished == 0
    assert pair.of(actions.StopSharing)


def test_a_broker_that_forgot_the_session_stops_the_agent_at_once() -> None:
    pair, _ = claimed(SCOPE_VIEW)
    pair.answer(SCOPE_VIEW)
    pair.drop()
    pair.restart_broker()  # a broker restart: sessions live in its memory
    pair.expect_refusals = True
    pair.connect()
    assert pair.refusals_to_agent()[-1].code == "not_found"
    assert pair.finished == 6  # EXIT_SESSION_GONE
    assert pair.agent_granted() == frozenset()
    assert pair.frame() is None
