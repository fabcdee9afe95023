"""The session's life in the core: the code, refusals, chat, the end; time is only ``now``."""

from __future__ import annotations

from datetime import UTC, datetime

from agent.core import actions, inputs
from protocol.messages import Chat, Error, SupportCodeIssued

from .driver import SESSION, AgentDriver


def test_the_code_is_shown_with_its_minutes_counted_from_now() -> None:
    d = AgentDriver(lang="en")
    d.connect()
    out = d.receive(SupportCodeIssued(id="a1", session_id=SESSION, code="654321", expires_at=d.now + 480))
    assert "654321" in out[0].text  # type: ignore[union-attr]
    assert "8" in out[0].text  # type: ignore[union-attr]


def test_closed_hours_show_the_opening_in_japan_time_and_exit_5() -> None:
    d = AgentDriver(lang="en", now=datetime(2026, 12, 1, 13, 0, tzinfo=UTC).timestamp())  # 22:00 JST
    d.connect()
    out = d.receive(Error(code="service_closed", message="closed", retry_after=11 * 3600))
    assert "12/02 09:00" in out[0].text  # type: ignore[union-attr]
    assert out[-1] == actions.Finish(exit_code=5)


def test_chat_both_ways() -> None:
    d = AgentDriver()
    d.ask("screen:view")
    d.receive(Chat(session_id=SESSION, text="hello", sender="Alice"))
    assert d.of(actions.ShowChat) == [actions.ShowChat(sender="Alice", text="hello")]
    d.take_sent()
    d.do(inputs.Typed(text="  thanks  "))
    assert d.take_sent() == [Chat(session_id=SESSION, text="thanks")]


def test_chat_before_an_operator_took_the_request_is_not_sent() -> None:
    d = AgentDriver()
    d.code()
    d.take_sent()
    out = d.do(inputs.Typed(text="hello?"))
    assert d.take_sent() == []  # the broker would refuse it (protocol.session: chat needs consent or active)
    assert [type(x) for x in out] == [actions.Say]


def test_ending_before_any_session_finishes_at_once() -> None:
    d = AgentDriver()
    assert d.do(inputs.EndRequested()) == [actions.Finish(exit_code=0)]
    assert d.sent() == []
