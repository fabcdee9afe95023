"""A broker that contradicts the subscriber's record changes nothing in the core (DESIGN §2)."""

from __future__ import annotations

from agent.core import actions, inputs
from protocol.messages import Error, InputEvent, RestartRequest, ScreenRefresh

from .driver import SESSION, AgentDriver


def test_a_state_claiming_grants_the_subscriber_never_gave_changes_nothing() -> None:
    d = AgentDriver()
    d.do(inputs.CaptureReady(monitor=1))
    q = d.ask("screen:view", "input:control")
    d.do(inputs.Answered(question=q, chosen=frozenset()))
    out = d.state({"screen:view": "granted", "input:control": "granted", "inventory:os": "granted"})
    assert (
        actions.Ignored(
            what="session_state contradicting the subscriber's consent",
            scopes=("screen:view", "input:control", "inventory:os"),
        )
        in out
    )
    assert d.of(actions.StartSharing) == []
    assert d.of(actions.AllowInput) == []
    assert d.of(actions.CollectInventory) == []
    assert d.core.record is not None
    assert d.core.record.granted == frozenset()


def test_input_refresh_and_restart_without_their_scope_are_refused() -> None:
    d = AgentDriver()
    q = d.ask("screen:view")
    d.do(inputs.Answered(question=q, chosen=frozenset({"screen:view"})))
    d.take_sent()
    d.receive(InputEvent(session_id=SESSION, kind="key", key="a", action="down"))
    d.receive(RestartRequest(id="x1", session_id=SESSION))
    assert d.of(actions.InjectInput) == []
    assert d.of(actions.Reboot) == []
    assert [m.code for m in d.take_sent() if isinstance(m, Error)] == ["consent_required", "consent_required"]
    d.do(inputs.Withdrawn(scopes=frozenset({"screen:view"})))
    d.receive(ScreenRefresh(session_id=SESSION))
    assert d.of(actions.RefreshSharing) == []


def test_messages_for_another_session_are_ignored() -> None:
    d = AgentDriver()
    q = d.ask("screen:view", "input:control")
    d.do(
        inputs.Answered(
            question=q, chosen=frozenset({"screen:view", "input:control"}), control_confirmed=True
        )
    )
    out = d.receive(InputEvent(session_id="other-0001", kind="key", key="a", action="down"))
    assert d.of(actions.InjectInput) == []
    assert any(isinstance(x, actions.Ignored) for x in out)
    d.receive(InputEvent(session_id=SESSION, kind="key", key="a", action="down"))
    assert len(d.of(actions.InjectInput)) == 1


def test_an_unknown_session_after_a_broker_restart_stops_everything() -> None:
    d = AgentDriver()
    d.do(inputs.CaptureReady(monitor=1))
    q = d.ask("screen:view")
    d.do(inputs.Answered(question=q, chosen=frozenset({"screen:view"})))
    out = d.receive(Error(code="not_found", message="no such session"))
    assert actions.StopSharing() in out
    assert out[-1] == actions.Finish(exit_code=6)
