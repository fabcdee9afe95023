"""Whole sessions whose broker process dies and whose agent resumes on another process of the cluster
(tests/pair_cluster.py, one fake clock): what was open then, and a contract cut meanwhile.

- A consent question the dead process had asked and the subscriber had not answered goes on after
  the adoption: the operator sees it ``requested`` again, the subscriber still sees the one question
  (not a second one), their answer counts on both sides, and the window is not extended.
- Nothing is asked again that was answered before the process died.
- A contract suspended (第18条) while the agent was away: the resume is refused and the session
  ends, on the process that held it and on one that adopts it.
"""

from __future__ import annotations

from agent.core import actions
from broker.core import Subscriber
from protocol.messages import Error, ScopeRequest, SessionState, Watch
from protocol.scopes import GRANTED, REQUESTED, SCOPE_CONTROL, SCOPE_VIEW, TIMEOUT
from tests.pair import CONTRACT, OperatorEndpoint
from tests.pair_cluster import ClusterPair, claimed_in_cluster

TIMEOUT_S = 60.0
SLACK = 15.0


def _asked_for_control() -> tuple[ClusterPair, OperatorEndpoint]:
    """Screen granted; then the operator asks for control and the subscriber has not answered."""
    pair, op = claimed_in_cluster(SCOPE_VIEW)
    pair.answer(SCOPE_VIEW)
    op.send(ScopeRequest(id="s1", session_id=pair.session_id, scopes=(SCOPE_CONTROL,)))
    assert op.state().scopes == {SCOPE_VIEW: GRANTED, SCOPE_CONTROL: REQUESTED}
    return pair, op


def _relinked(pair: ClusterPair) -> OperatorEndpoint:
    """The process dies, the agent resumes on another one, the operator's process re-links."""
    pair.move_broker()
    pair.connect()
    op = pair.operator()
    op.send(Watch(id="w", session_id=pair.session_id))
    assert [e.action for e in pair.audit()][-2:] == ["session.adopted", "session.agent_back"]
    return op


def test_an_open_question_goes_on_after_adoption_and_its_answer_counts() -> None:
    pair, _ = _asked_for_control()
    pair.advance(5)
    asked = len(pair.of(actions.AskConsent))
    op = _relinked(pair)

    assert op.state().scopes == {SCOPE_VIEW: GRANTED, SCOPE_CONTROL: REQUESTED}
    assert len(pair.of(actions.AskConsent)) == asked  # the same question, not a second window
    assert pair.of(actions.CloseQuestion) == []
    pair.answer(SCOPE_VIEW, SCOPE_CONTROL, control_confirmed=True)
    assert pair.agent_granted() == {SCOPE_VIEW, SCOPE_CONTROL} == pair.broker_granted()
    assert op.state().scopes == {SCOPE_VIEW: GRANTED, SCOPE_CONTROL: GRANTED}
    assert pair.receipts()[-1].asked == (SCOPE_CONTROL,)
    assert pair.refusals_to_agent() == []


def test_the_carried_question_keeps_its_first_deadline() -> None:
    pair, _ = _asked_for_control()
    [ask] = pair.audit("consent.ask")[-1:]
    deadline = ask.at + TIMEOUT_S + SLACK
    pair.advance(50)
    op = _relinked(pair)
    assert pair.broker.sessions[pair.session_id].pending is not None
    assert pair.broker.sessions[pair.session_id].pending.deadline == deadline  # type: ignore[union-attr]

    pair.advance(deadline - pair.now)  # nobody answers: the default is deny, by the first window
    assert op.state().scopes[SCOPE_CONTROL] == TIMEOUT
    assert pair.broker.sessions[pair.session_id].pending is None
    assert pair.agent_granted() == {SCOPE_VIEW} == pair.broker_granted()


def test_a_question_answered_before_the_process_died_is_not_asked_again() -> None:
    pair, _ = _asked_for_control()
    pair.answer(SCOPE_VIEW)  # control not ticked: denied, and the receipt is stored
    asked = len(pair.of(actions.AskConsent))
    op = _relinked(pair)
    assert op.state().scopes == {SCOPE_VIEW: GRANTED, SCOPE_CONTROL: "denied"}
    assert pair.broker.sessions[pair.session_id].pending is None
    assert len(pair.of(actions.AskConsent)) == asked


def test_a_contract_suspended_while_the_agent_was_away_ends_the_session_on_resume() -> None:
    pair, op = claimed_in_cluster(SCOPE_VIEW)
    pair.answer(SCOPE_VIEW)
    pair.expect_refusals = True
    pair.drop()  # the cut closed the agent's connection (subscriber suspend)
    pair.broker.subscribers[CONTRACT] = Subscriber(status="suspended")
    pair.connect()  # it reconnects with its backoff and is admitted; its resume is refused

    [refusal] = pair.refusals_to_agent()
    assert refusal.code == "subscriber_suspended"
    ended = op.last(SessionState)
    assert (ended.phase, ended.ended_by, ended.reason) == ("ended", "broker", "subscriber_suspended")
    assert pair.agent_granted() == frozenset()
    assert pair.finished is not None
    [end] = pair.audit("session.end")
    assert end.details["reason"] == "subscriber_suspended"


def test_a_contract_suspended_while_its_process_died_is_not_adopted_into_a_live_session() -> None:
    pair, _ = claimed_in_cluster(SCOPE_VIEW)
    pair.answer(SCOPE_VIEW)
    pair.expect_refusals = True
    pair.move_broker()
    pair.broker.subscribers[CONTRACT] = Subscriber(status="suspended")
    pair.connect()

    assert [e.code for e in pair.refusals_to_agent() if isinstance(e, Error)] == ["subscriber_suspended"]
    assert pair.session_id not in pair.broker.sessions
    assert [e.details["reason"] for e in pair.audit("session.end")] == ["subscriber_suspended"]
    assert pair.broker.rows[pair.session_id]["ended_at"] == pair.now
    assert pair.agent_granted() == frozenset()
    assert pair.finished is not None
