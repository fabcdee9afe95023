"""Colleagues in the core: a question per person, and sharing stops if the broker shows someone
the subscriber did not allow."""

from __future__ import annotations

from agent.core import actions, inputs
from protocol.messages import ConsentRequest, Viewer

from .driver import SESSION, AgentDriver

BOB = Viewer(name="Bob", role="operator", read_only=True, account="bob")


def _watched(d: AgentDriver) -> None:
    d.do(inputs.CaptureReady(monitor=1))
    q = d.ask("screen:view", "input:control")
    d.do(
        inputs.Answered(
            question=q, chosen=frozenset({"screen:view", "input:control"}), control_confirmed=True
        )
    )


def _invite(d: AgentDriver, *, transfer: bool = False) -> str:
    out = d.receive(
        ConsentRequest(
            id="p1",
            session_id=SESSION,
            operator="Alice",
            scopes=("screen:view",),
            viewer="Bob",
            viewer_account="bob",
            transfer=transfer,
            timeout=20,
        )
    )
    [ask] = [x for x in out if isinstance(x, actions.AskPerson)]
    return ask.question


def test_each_person_is_asked_and_named_in_the_receipt() -> None:
    d = AgentDriver()
    _watched(d)
    d.do(inputs.PersonAnswered(question=_invite(d), allowed=True))
    assert d.receipts()[-1].decision == "viewer_allowed"
    assert d.receipts()[-1].viewer == "bob"
    d.advance(1)
    _invite(d)
    d.advance(20)
    assert d.receipts()[-1].decision == "viewer_timeout"


def test_a_transfer_allowed_drops_control() -> None:
    d = AgentDriver()
    _watched(d)
    d.do(inputs.PersonAnswered(question=_invite(d, transfer=True), allowed=True))
    assert d.receipts()[-1].granted == ("screen:view",)
    assert actions.DenyInput() in d.actions
    assert d.core.operator == "Bob"


def test_a_person_shown_without_the_subscribers_yes_stops_sharing() -> None:
    d = AgentDriver()
    _watched(d)
    d.do(inputs.PersonAnswered(question=_invite(d), allowed=False))
    out = d.state(
        {"screen:view": "granted", "input:control": "granted"},
        viewers=(Viewer(name="Alice", role="operator"), BOB),
    )
    assert actions.StopSharing() in out
    assert any(isinstance(x, actions.Ignored) for x in out)
    d.state({"screen:view": "granted", "input:control": "granted"})  # Bob gone: sharing again, once
    assert len(d.of(actions.StartSharing)) == 2
