"""Whole support sessions through both session cores at once (tests/pair.py, one fake clock).

The agent's core and the broker's core each have their own tests; these check that the two agree:
what one sends the other understands (through the codec), both show the same granted scopes, and
neither lets anything through that the subscriber's own record does not allow (DESIGN §2,
第31条1項④, 別紙5).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.core import actions
from broker.core import Subscriber
from protocol.messages import (
    Chat,
    Credentials,
    Error,
    InputEvent,
    InventoryItem,
    InventoryView,
    Queue,
    RevealCredentials,
    ScopeRequest,
    ScreenRefresh,
    SessionEnd,
    SessionState,
    Watch,
)
from protocol.scopes import (
    ALL_SCOPES,
    GRANTED,
    INVENTORY_ITEMS,
    SCOPE_CONTROL,
    SCOPE_VIEW,
    TIMEOUT,
    WITHDRAWN,
)

from .pair import AgentBrokerPair, claimed, cores_agree

MOVE = {"kind": "move", "x": 10, "y": 20}


@pytest.fixture(autouse=True)
def _cores_agree() -> Iterator[None]:
    yield from cores_agree()


def granted(state: SessionState) -> frozenset[str]:
    return frozenset(scope for scope, status in state.scopes.items() if status == GRANTED)


def move(pair: AgentBrokerPair) -> InputEvent:
    return InputEvent(session_id=pair.session_id, **MOVE)  # type: ignore[arg-type]


# -- request, code, claim, consent -----------------------------------------------------------------


def test_request_code_claim_and_the_consent_question_reach_the_subscriber() -> None:
    pair, op = claimed(SCOPE_VIEW)
    [ask] = pair.of(actions.AskConsent)
    assert ask.request.scopes == (SCOPE_VIEW,)
    assert ask.request.operator == "Op"
    assert op.state().phase == "consent"
    assert op.state().scopes == {SCOPE_VIEW: "requested"}
    assert pair.of(actions.StartSharing) == []
    assert pair.frame() is None  # nothing is captured before the answer


@pytest.mark.parametrize("scope", ALL_SCOPES)
def test_each_scope_granted_is_granted_on_both_sides(scope: str) -> None:
    pair, op = claimed(scope)
    pair.answer(scope, control_confirmed=True)
    assert pair.agent_granted() == {scope} == pair.broker_granted()
    assert granted(op.state()) == {scope}
    [receipt] = pair.receipts()
    assert receipt.granted == (scope,)
    assert [e.details["granted"] for e in pair.audit("consent.receipt")] == [[scope]]


@pytest.mark.parametrize("scope", ALL_SCOPES)
def test_each_scope_refused_is_refused_on_both_sides(scope: str) -> None:
    pair, op = claimed(scope)
    pair.answer()
    assert pair.agent_granted() == frozenset() == pair.broker_granted()
    assert op.state().scopes == {scope: "denied"}
    assert op.state().phase == "active"


def test_control_without_the_typed_yes_is_not_granted_anywhere() -> None:
    pair, op = claimed(SCOPE_VIEW, SCOPE_CONTROL)
    pair.answer(SCOPE_VIEW, SCOPE_CONTROL, control_confirmed=False)
    assert pair.agent_granted() == {SCOPE_VIEW} == pair.broker_granted()
    assert op.state().scopes == {SCOPE_VIEW: "granted", SCOPE_CONTROL: "denied"}


# -- frames and input ----------------------------------------------------------------------------


def test_frames_flow_only_while_screen_view_is_granted_and_stop_at_once_on_withdraw() -> None:
    pair, op = claimed(SCOPE_VIEW)
    assert pair.frame() is None
    pair.answer(SCOPE_VIEW)
    assert len(pair.of(actions.StartSharing)) == 1
    first = pair.frame(keyframe=True)
    second = pair.frame()
    assert first is not None
    assert second is not None
    assert op.screens == [first, second]
    pair.withdraw(SCOPE_VIEW)
    assert pair.of(actions.StopSharing)
    assert pair.frame() is None  # the agent stops at once
    assert op.state().scopes[SCOPE_VIEW] == WITHDRAWN
    pair.expect_refusals = True
    pair.force_frame()  # a frame still on its way, or a hostile agent: the broker drops it
    assert op.screens == [first, second]
    assert pair.broker.sessions[pair.session_id].refused_updates == 1


def test_input_only_with_control_granted_by_the_typed_yes() -> None:
    pair, op = claimed(SCOPE_VIEW, SCOPE_CONTROL)
    pair.answer(SCOPE_VIEW)
    refused = op.send(move(pair))
    assert [m.code for m in refused if isinstance(m, Error)] == ["consent_required"]
    assert pair.of(actions.InjectInput) == []
    op.send(ScopeRequest(id="s2", session_id=pair.session_id, scopes=(SCOPE_CONTROL,)))
    pair.answer(SCOPE_CONTROL, control_confirmed=True)
    assert pair.agent_granted() == {SCOPE_VIEW, SCOPE_CONTROL} == pair.broker_granted()
    assert op.send(move(pair)) == []
    [injected] = pair.of(actions.InjectInput)
    assert (injected.event.kind, injected.event.x, injected.event.y) == ("move", 10, 20)
    pair.withdraw(SCOPE_CONTROL)
    assert pair.of(actions.DenyInput)
    op.send(move(pair))
    assert len(pair.of(actions.InjectInput)) == 1


# -- inventory (別紙5) ----------------------------------------------------------------------------


def test_inventory_only_the_items_the_subscriber_allowed() -> None:
    asked = tuple(f"inventory:{item}" for item in ("os", "cpu", "memory"))
    pair, op = claimed(*asked)
    pair.answer("inventory:os", "inventory:memory")
    [collect] = pair.of(actions.CollectInventory)
    assert collect.items == ("os", "memory")
    found = [InventoryItem(item=item, available=True, value=f"v-{item}") for item in INVENTORY_ITEMS]
    pair.collected(found)  # a collector that found more than it was asked: only the allowed go
    view = op.last(InventoryView)
    assert [item.item for item in view.items] == ["os", "memory"]
    [(_, stored)] = pair.broker.inventories.values()
    assert [item.item for item in stored.items] == ["os", "memory"]


# -- chat and the end ------------------------------------------------------------------------------


def test_chat_both_ways() -> None:
    pair, op = claimed(SCOPE_VIEW)
    pair.answer(SCOPE_VIEW)
    op.send(Chat(session_id=pair.session_id, text="こんにちは"))
    [shown] = pair.of(actions.ShowChat)
    assert (shown.sender, shown.text) == ("Op", "こんにちは")
    pair.chat("  はい  ")
    line = op.last(Chat)
    assert (line.sender, line.text) == ("subscriber", "はい")


@pytest.mark.parametrize("side", ["subscriber", "operator"])
def test_end_from_either_side_with_byte_counts_both_ways(side: str) -> None:
    pair, op = claimed(SCOPE_VIEW, SCOPE_CONTROL)
    pair.answer(SCOPE_VIEW, SCOPE_CONTROL, control_confirmed=True)
    frames = [pair.frame(keyframe=True), pair.frame(), pair.frame()]
    op.send(move(pair))
    if side == "subscriber":
        pair.end()
    else:
        op.send(SessionEnd(id="e1", session_id=pair.session_id, reason="done"))
    assert pair.finished == 0
    assert pair.session_id not in pair.broker.sessions
    assert op.state().phase == "ended"
    assert op.state().ended_by == side
    assert pair.of(actions.StopSharing)
    assert pair.of(actions.DenyInput)
    [summary] = pair.audit("session.end")
    screen_bytes = sum(len(f) for f in frames if f is not None)
    assert summary.details["bytes_to_operator"] == screen_bytes == sum(map(len, op.screens)) > 0
    assert summary.details["bytes_to_agent"] == pair.to_agent_bytes > 0
    assert summary.details["ended_by"] == side
    assert summary.details["scopes"] == sorted([SCOPE_VIEW, SCOPE_CONTROL])
    assert summary.details["inputs"] == 1


# -- timeouts --------------------------------------------------------------------------------------


def test_no_answer_is_deny_on_both_sides_at_the_agents_60_seconds() -> None:
    pair, op = claimed(SCOPE_VIEW, SCOPE_CONTROL)
    pair.advance(59)
    assert pair.of(actions.CloseQuestion) == []
    pair.advance(1)
    assert pair.of(actions.CloseQuestion)
    [receipt] = pair.receipts()
    assert receipt.decision == "timeout"
    assert receipt.granted == ()
    assert op.state().scopes == {SCOPE_VIEW: TIMEOUT, SCOPE_CONTROL: TIMEOUT}
    assert pair.agent_granted() == frozenset() == pair.broker_granted()
    assert pair.frame() is None


def test_a_silent_agent_is_a_deny_after_the_brokers_slack_and_the_agent_agrees() -> None:
    pair, op = claimed(SCOPE_VIEW)
    pair.freeze()  # the agent hangs with the question open: its own timeout cannot reach the broker
    pair.advance(60 + 15 - 0.5)
    assert pair.audit("consent.timeout") == []
    pair.advance(0.5)
    assert [e.details["scopes"] for e in pair.audit("consent.timeout")] == [[SCOPE_VIEW]]
    assert op.state().scopes == {SCOPE_VIEW: TIMEOUT}
    pair.thaw()  # its overdue timer: the same default, deny, signed
    [receipt] = pair.receipts()
    assert receipt.decision == "timeout"
    assert receipt.granted == ()
    assert pair.agent_granted() == frozenset() == pair.broker_granted()
    assert op.state().scopes == {SCOPE_VIEW: TIMEOUT}
    assert pair.of(actions.Ignored) == []
    assert pair.frame() is None


# -- away and back ---------------------------------------------------------------------------------


def test_agent_away_within_the_grace_and_back_resumes_the_session() -> None:
    pair, op = claimed(SCOPE_VIEW)
    pair.answer(SCOPE_VIEW)
    assert pair.frame(keyframe=True) is not None
    pair.drop()
    assert pair.of(actions.StopSharing)
    assert pair.frame() is None  # nothing flows until the broker confirms the session again
    pair.advance(20)
    pair.connect()
    assert pair.audit("session.agent_back")
    assert op.state().phase == "active"
    assert pair.agent_granted() == {SCOPE_VIEW} == pair.broker_granted()
    assert pair.frame() is not None
    assert len(op.screens) == 2


def test_agent_away_past_the_grace_ends_the_session_for_both() -> None:
    pair, op = claimed(SCOPE_VIEW)
    pair.answer(SCOPE_VIEW)
    pair.drop()
    pair.advance(31)
    assert op.state().phase == "ended"
    pair.expect_refusals = True
    pair.connect()  # too late: the broker no longer knows the session, the agent stops and says so
    assert pair.refusals_to_agent()[-1].code == "not_found"
    assert pair.finished == 6  # EXIT_SESSION_GONE


# -- more flows both cores must agree on -----------------------------------------------------------


def test_the_guards_grace_delays_the_grant_on_both_sides_and_a_state_meanwhile_is_no_contradiction() -> None:
    pair, op = claimed(SCOPE_VIEW, grace=1.0)
    pair.answer(SCOPE_VIEW)
    assert pair.receipts() == []  # held for the consent guard's grace
    assert pair.broker_granted() == frozenset()
    assert pair.frame() is None
    boss = pair.operator("boss", display_name="Boss", role="supervisor")
    boss.send(Watch(id="w1", session_id=pair.session_id))  # a state broadcast inside the grace
    pair.advance(1.0)
    assert pair.agent_granted() == {SCOPE_VIEW} == pair.broker_granted()
    assert pair.frame(keyframe=True) in op.screens


def test_the_subscriber_grants_on_their_own_and_both_sides_agree() -> None:
    pair, op = claimed(SCOPE_VIEW)
    pair.answer(SCOPE_VIEW)
    pair.grant(SCOPE_CONTROL)
    assert pair.agent_granted() == {SCOPE_VIEW, SCOPE_CONTROL} == pair.broker_granted()
    assert granted(op.state()) == {SCOPE_VIEW, SCOPE_CONTROL}
    op.send(move(pair))
    assert len(pair.of(actions.InjectInput)) == 1


def test_withdrawing_everything_then_asked_again() -> None:
    pair, op = claimed(SCOPE_VIEW, SCOPE_CONTROL)
    pair.answer(SCOPE_VIEW, SCOPE_CONTROL, control_confirmed=True)
    pair.withdraw(SCOPE_VIEW, SCOPE_CONTROL)
    assert op.state().scopes == {SCOPE_VIEW: WITHDRAWN, SCOPE_CONTROL: WITHDRAWN}
    assert pair.agent_granted() == frozenset() == pair.broker_granted()
    op.send(ScopeRequest(id="s2", session_id=pair.session_id, scopes=(SCOPE_VIEW,)))
    pair.answer(SCOPE_VIEW)
    assert pair.agent_granted() == {SCOPE_VIEW} == pair.broker_granted()
    assert len(pair.of(actions.StartSharing)) == 2  # one keyframe per grant
    assert pair.frame() is not None


def test_a_viewer_joining_a_running_stream_gets_a_keyframe_asked_of_the_agent() -> None:
    pair, op = claimed(SCOPE_VIEW)
    pair.answer(SCOPE_VIEW)
    assert pair.of(actions.RefreshSharing) == []  # the grant itself starts with a keyframe
    boss = pair.operator("boss", display_name="Boss", role="supervisor")
    boss.send(Watch(id="w1", session_id=pair.session_id))
    assert len(pair.of(actions.RefreshSharing)) == 1
    op.send(ScreenRefresh(session_id=pair.session_id, monitor=2))
    assert pair.of(actions.RefreshSharing)[-1].monitor == 2


def test_the_operator_away_and_back_within_the_grace() -> None:
    pair, op = claimed(SCOPE_VIEW)
    pair.answer(SCOPE_VIEW)
    op.detach()
    pair.advance(20)
    again = pair.operator()
    again.send(Watch(id="w2", session_id=pair.session_id))
    pair.advance(20)
    assert again.state().phase == "active"
    assert pair.frame(keyframe=True) in again.screens


def test_the_operator_away_past_the_grace_ends_the_session_on_the_agent_too() -> None:
    pair, op = claimed(SCOPE_VIEW)
    pair.answer(SCOPE_VIEW)
    op.detach()
    pair.advance(30)
    assert pair.finished == 0
    assert pair.of(actions.StopSharing)
    assert pair.audit("session.end")[-1].details["reason"] == "operator_lost"


def test_the_router_login_travels_only_with_its_item_and_is_revealed_on_request() -> None:
    pair, op = claimed("inventory:router", "inventory:os")
    pair.answer("inventory:router")
    [collect] = pair.of(actions.CollectInventory)
    assert (collect.items, collect.ask_router_login) == (("router",), True)
    pair.collected(
        [InventoryItem(item="router", available=True, value="RT-500")],
        router_account="admin",
        router_password="s3cret",
    )
    view = op.last(InventoryView)
    assert view.has_router_credentials
    assert "s3cret" not in repr(view)
    [answer] = op.send(RevealCredentials(id="rv", session_id=pair.session_id))
    assert isinstance(answer, Credentials)
    assert (answer.account, answer.password) == ("admin", "s3cret")
    assert pair.audit("inventory.reveal")


def test_ending_while_a_question_is_open_closes_it_and_denies() -> None:
    pair, op = claimed(SCOPE_VIEW)
    pair.end()
    assert pair.of(actions.CloseQuestion)
    assert op.state().phase == "ended"
    assert op.state().scopes == {SCOPE_VIEW: "denied"}
    assert pair.finished == 0


def test_chat_while_the_question_is_open() -> None:
    pair, op = claimed(SCOPE_VIEW)
    op.send(Chat(session_id=pair.session_id, text="画面を見せてください"))
    assert [x.text for x in pair.of(actions.ShowChat)] == ["画面を見せてください"]
    pair.chat("少々お待ちください")
    assert op.last(Chat).text == "少々お待ちください"


def test_the_subscriber_typing_before_anyone_claimed() -> None:
    pair = AgentBrokerPair()
    op = pair.operator()
    pair.request()
    out = pair.chat("もしもし")
    assert [x.text for x in out if isinstance(x, actions.Say)] == [
        "You can send messages once an operator has taken your request."
    ]
    assert pair.sent_by_agent(Chat) == []  # not sent only to be refused
    assert op.of(Chat) == []


def test_an_unclaimed_code_expires_and_the_agent_stops() -> None:
    pair = AgentBrokerPair()
    op = pair.operator()
    pair.request()
    pair.advance(599)
    assert pair.of(actions.Finish) == []
    pair.advance(1)
    assert pair.finished == 0
    assert pair.audit("session.end")[-1].details["reason"] == "code_expired"
    assert op.last(Queue).requests == ()


def test_the_subscriber_ends_before_anyone_claimed() -> None:
    pair = AgentBrokerPair()
    pair.request()
    pair.end()
    assert pair.finished == 0
    [summary] = pair.audit("session.end")
    assert summary.details["ended_by"] == "subscriber"
    assert summary.details["started_at"] is None


def test_a_suspended_contract_is_refused_and_the_agent_says_so() -> None:
    pair = AgentBrokerPair()
    pair.broker.subscribers["C-1"] = Subscriber(status="suspended")
    pair.connect()
    assert pair.finished == 5  # EXIT_REFUSED
    assert pair.refusals_to_agent()[-1].code == "subscriber_suspended"
    assert pair.audit("support.refused")


def test_an_item_withdrawn_while_the_collectors_ran_is_not_sent() -> None:
    pair, op = claimed("inventory:os", "inventory:cpu")
    pair.answer("inventory:os", "inventory:cpu")
    pair.withdraw("inventory:cpu")
    pair.collected(
        [
            InventoryItem(item="os", available=True, value="Linux"),
            InventoryItem(item="cpu", available=True, value="x"),
        ]
    )
    assert [item.item for item in op.last(InventoryView).items] == ["os"]
