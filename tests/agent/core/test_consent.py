"""Consent in the agent's core, with a fake clock: ask, answer, no answer = no, control only
with the typed yes, withdraw at once, a new grant announced only after the guard's grace."""

from __future__ import annotations

from agent.core import actions, inputs
from protocol.messages import ConsentDecision

from .driver import SESSION, AgentDriver


def test_an_answer_grants_what_was_chosen_and_denies_the_rest() -> None:
    d = AgentDriver()
    q = d.ask("screen:view", "inventory:os")
    d.do(inputs.Answered(question=q, chosen=frozenset({"screen:view"})))
    [receipt] = d.receipts()
    assert receipt.decision == "answered"
    assert receipt.granted == ("screen:view",)
    assert receipt.denied == ("inventory:os",)
    assert receipt.session_id == SESSION
    assert d.core.record is not None
    assert d.core.record.granted == {"screen:view"}


def test_no_answer_in_time_is_no() -> None:
    d = AgentDriver()
    q = d.ask("screen:view", "input:control", timeout=30)
    assert d.core.next_timer() == d.now + 30
    assert d.advance(29.9) == []
    out = d.advance(0.2)
    assert actions.CloseQuestion(question=q) in out
    [receipt] = d.receipts()
    assert receipt.decision == "timeout"
    assert receipt.granted == ()
    assert receipt.denied == ("screen:view", "input:control")
    # A late answer to the closed question changes nothing.
    assert d.do(inputs.Answered(question=q, chosen=frozenset({"screen:view"}), control_confirmed=True)) == []
    assert d.core.record is not None
    assert d.core.record.granted == frozenset()


def test_control_needs_the_typed_yes() -> None:
    d = AgentDriver()
    q = d.ask("screen:view", "input:control")
    d.do(inputs.Answered(question=q, chosen=frozenset({"screen:view", "input:control"})))
    assert d.receipts()[-1].granted == ("screen:view",)
    assert not d.core.permits("input")
    q2 = d.ask("input:control")
    d.do(inputs.Answered(question=q2, chosen=frozenset({"input:control"}), control_confirmed=True))
    assert d.receipts()[-1].granted == ("screen:view", "input:control")
    assert d.core.permits("input")
    assert isinstance(d.of(actions.AllowInput)[0], actions.AllowInput)


def test_withdraw_stops_at_once_and_sends_a_receipt() -> None:
    d = AgentDriver()
    d.do(inputs.CaptureReady(monitor=1))
    q = d.ask("screen:view", "input:control")
    d.do(
        inputs.Answered(
            question=q, chosen=frozenset({"screen:view", "input:control"}), control_confirmed=True
        )
    )
    assert d.core.sharing == 1
    out = d.do(inputs.Withdrawn(scopes=frozenset({"screen:view", "input:control"})))
    kinds = [type(x) for x in out]
    assert kinds.index(actions.StopSharing) < kinds.index(actions.Send)  # stop before telling
    assert actions.DenyInput() in out
    assert d.receipts()[-1].decision == "withdrawn"
    assert d.receipts()[-1].denied == ("screen:view", "input:control")
    assert d.core.sharing is None


def test_a_new_grant_is_announced_after_the_grace_time() -> None:
    d = AgentDriver(grace=0.5)
    d.do(inputs.CaptureReady(monitor=1))
    q = d.ask("screen:view")
    d.do(inputs.Answered(question=q, chosen=frozenset({"screen:view"})))
    assert d.receipts() == []
    assert d.of(actions.StartSharing) == []
    d.advance(0.5)
    assert [r.granted for r in d.receipts()] == [("screen:view",)]
    assert d.of(actions.StartSharing) == [actions.StartSharing(monitor=1)]


def test_a_state_during_the_grace_is_no_contradiction_but_a_lie_still_is() -> None:
    d = AgentDriver(grace=0.5)
    q = d.ask("screen:view", "input:control")
    d.do(inputs.Answered(question=q, chosen=frozenset({"screen:view"})))
    d.state({"screen:view": "requested", "input:control": "requested"})  # the receipt is not sent yet
    assert d.of(actions.Ignored) == []
    d.state({"screen:view": "requested", "input:control": "granted"})
    assert [x.scopes for x in d.of(actions.Ignored)] == [("input:control",)]


def test_a_request_sent_again_after_a_reconnect_is_not_asked_twice() -> None:
    d = AgentDriver()
    q = d.ask("screen:view")
    [request] = [x.request for x in d.of(actions.AskConsent)]
    d.do(inputs.Disconnected())
    d.do(inputs.Connected())
    assert d.receive(request) == []  # the broker's resume asks again: the same question stays open
    d.do(inputs.Answered(question=q, chosen=frozenset({"screen:view"})))
    d.advance(120)
    assert [r.decision for r in d.receipts()] == ["answered"]


def test_the_end_waits_for_the_broker_then_finishes() -> None:
    d = AgentDriver()
    d.ask("screen:view")
    d.do(inputs.EndRequested())
    assert type(d.sent()[-1]).__name__ == "SessionEnd"
    assert d.of(actions.Finish) == []
    d.advance(5)
    assert d.of(actions.Finish) == [actions.Finish(exit_code=0)]


def test_the_ended_state_voids_open_questions_and_finishes() -> None:
    d = AgentDriver()
    q = d.ask("screen:view")
    out = d.state(phase="ended", ended_by="operator")
    assert actions.CloseQuestion(question=q) in out
    assert out[-1] == actions.Finish(exit_code=0)
    assert d.do(inputs.Answered(question=q, chosen=frozenset({"screen:view"}))) == []
    assert not any(isinstance(m, ConsentDecision) for m in d.sent())
