"""Sharing starts exactly once per grant: the broker's confirming session_state, a repeated one,
or a refresh never start it again (one keyframe at the start of a stream)."""

from __future__ import annotations

from agent.core import actions, inputs
from protocol.messages import ScreenRefresh

from .driver import SESSION, AgentDriver


def _viewing(d: AgentDriver) -> None:
    d.do(inputs.CaptureReady(monitor=2))
    q = d.ask("screen:view")
    d.do(inputs.Answered(question=q, chosen=frozenset({"screen:view"})))


def test_one_start_per_grant_whatever_the_broker_repeats() -> None:
    d = AgentDriver()
    _viewing(d)
    for _ in range(3):
        d.state({"screen:view": "granted"})
    d.receive(ScreenRefresh(session_id=SESSION))
    assert d.of(actions.StartSharing) == [actions.StartSharing(monitor=2)]
    assert d.of(actions.RefreshSharing) == [actions.RefreshSharing()]


def test_a_new_grant_after_a_withdrawal_starts_again() -> None:
    d = AgentDriver()
    _viewing(d)
    d.do(inputs.Withdrawn(scopes=frozenset({"screen:view"})))
    d.state({"screen:view": "withdrawn"})
    d.do(inputs.Granted(scopes=frozenset({"screen:view"})))
    d.state({"screen:view": "granted"})
    assert len(d.of(actions.StartSharing)) == 2
    assert len(d.of(actions.StopSharing)) == 1


def test_nothing_is_shared_between_a_drop_and_the_broker_confirming_the_session() -> None:
    d = AgentDriver()
    _viewing(d)
    out = d.do(inputs.Disconnected())
    assert actions.StopSharing() in out
    assert not d.core.permits("screen_update")
    assert d.connect().resume == SESSION
    assert d.of(actions.StartSharing) == [actions.StartSharing(monitor=2)]
    d.state({"screen:view": "granted"})
    d.state({"screen:view": "granted"})
    assert len(d.of(actions.StartSharing)) == 2


def test_without_a_capture_nothing_starts() -> None:
    d = AgentDriver()
    q = d.ask("screen:view")
    d.do(inputs.Answered(question=q, chosen=frozenset({"screen:view"})))
    assert d.of(actions.StartSharing) == []
    d.do(inputs.CaptureReady(monitor=1))
    assert d.of(actions.StartSharing) == [actions.StartSharing(monitor=1)]
