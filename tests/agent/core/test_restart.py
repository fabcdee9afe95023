"""Restart at the operator's request and continuing afterwards (issue 16), in the core."""

from __future__ import annotations

from agent.core import actions, inputs
from agent.core.session import Resume
from protocol.messages import ConsentRequest, RestartNotice, RestartRequest, SessionEnd

from .driver import SESSION, AgentDriver


def test_a_granted_restart_saves_announces_withdraws_and_reboots_in_that_order() -> None:
    d = AgentDriver()
    q = d.ask("screen:view", "system:restart")
    d.do(inputs.Answered(question=q, chosen=frozenset({"screen:view", "system:restart"})))
    d.take_sent()
    out = d.receive(RestartRequest(id="x1", session_id=SESSION))
    kinds = [type(x) for x in out]
    assert kinds.index(actions.SaveResume) < kinds.index(actions.Send) < kinds.index(actions.Reboot)
    sent = d.take_sent()
    assert isinstance(sent[0], RestartNotice)
    assert d.receipts()[-1].decision == "withdrawn"
    assert d.receipts()[-1].granted == ()
    assert d.core.restarting
    d.receive(RestartRequest(id="x2", session_id=SESSION))  # everything was withdrawn: refused
    assert len(d.of(actions.Reboot)) == 1
    d.do(inputs.RebootFailed())
    assert not d.core.restarting


def test_a_confirmed_resume_withdraws_what_the_broker_still_shows() -> None:
    d = AgentDriver(resume=Resume(session_id=SESSION, operator="Alice", confirmed=True))
    assert d.connect().resume == SESSION
    d.state({"screen:view": "granted"})
    [receipt] = d.receipts()
    assert receipt.decision == "withdrawn"
    assert receipt.granted == ()
    assert d.of(actions.StartSharing) == []


def test_an_unconfirmed_resume_is_only_ended() -> None:
    d = AgentDriver(resume=Resume(session_id=SESSION, operator="Alice", confirmed=False))
    d.do(inputs.Connected())
    d.receive(ConsentRequest(id="r", session_id=SESSION, operator="Alice", scopes=("screen:view",)))
    assert d.of(actions.AskConsent) == []
    d.state({})
    assert isinstance(d.sent()[-1], SessionEnd)
