"""Remote input is refused while a consent question is open, for the grace time after it, on
the indicator's and the consent window's rectangle, and as keys while they have the focus."""

from __future__ import annotations

from dataclasses import dataclass

from agent.input.consent_guard import DEFAULT_GRACE, ConsentGuard, Rect, desktop_point


@dataclass(frozen=True)
class Ev:
    kind: str
    x: int | None = None
    y: int | None = None


@dataclass(frozen=True)
class Mon:
    left: int
    top: int


def test_open_question_refuses_everything_then_the_grace_time() -> None:
    guard = ConsentGuard()
    assert guard.refusal("move", (1, 1), 10.0) is None
    guard.question_opened("consent")
    for kind in ("move", "button", "wheel", "key", "text"):
        assert guard.refusal(kind, (1, 1), 10.0) == "question_open"
    guard.question_closed("consent", 11.0)
    assert guard.refusal("button", (1, 1), 11.0 + DEFAULT_GRACE - 0.01) == "grace"
    assert guard.refusal("button", (1, 1), 11.0 + DEFAULT_GRACE) is None
    assert guard.refused == {"question_open": 5, "grace": 1}


def test_two_questions_the_pause_lasts_until_both_closed() -> None:
    guard = ConsentGuard(grace=0.0)
    guard.question_opened("consent")
    guard.question_opened("line")
    guard.question_closed("line", 1.0)
    assert guard.refusal("key", None, 5.0) == "question_open"
    guard.question_closed("consent", 5.0)
    assert guard.refusal("key", None, 5.0) is None


def test_pointer_inside_a_protected_window_and_keys_while_it_has_focus() -> None:
    guard = ConsentGuard(grace=0.0)
    guard.protect("indicator", Rect(100, 10, 200, 80))
    assert guard.refusal("button", (150, 50), 0.0) == "protected_window"
    assert guard.refusal("move", (100, 10), 0.0) == "protected_window"
    assert guard.refusal("wheel", (299, 89), 0.0) == "protected_window"
    assert guard.refusal("button", (300, 50), 0.0) is None
    assert guard.refusal("button", None, 0.0) == "protected_window"  # lands who knows where
    assert guard.refusal("key", None, 0.0) is None
    guard.focus("indicator", True)
    assert guard.refusal("text", None, 0.0) == "protected_focus"
    guard.focus("indicator", False)
    assert guard.refusal("text", None, 0.0) is None
    guard.protect("indicator", None)
    assert guard.refusal("button", (150, 50), 0.0) is None


def test_desktop_point_shifts_by_the_shared_monitor_and_asks_the_pointer_otherwise() -> None:
    assert desktop_point(Ev("button", 5, 6), Mon(1280, 0)) == (1285, 6)
    assert desktop_point(Ev("move", 5, 6), None) == (5, 6)
    assert desktop_point(Ev("button"), Mon(0, 0), lambda: (7, 8)) == (7, 8)
    assert desktop_point(Ev("key"), Mon(0, 0), lambda: (7, 8)) is None


def test_a_terminal_line_right_after_remote_typing_is_not_an_answer() -> None:
    guard = ConsentGuard(key_settle=1.0)
    assert not guard.may_be_remote_typing(5.0)
    guard.remote_keys_applied(10.0)
    assert guard.may_be_remote_typing(10.0)
    assert guard.may_be_remote_typing(10.99)
    assert not guard.may_be_remote_typing(11.0)
