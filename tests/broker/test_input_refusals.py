"""The broker reads an agent's report of input it refused as outside input: only known codes,
reasons and sane counts; anything else is one event, ``unspecified`` (broker/input_refusals.py)."""

from __future__ import annotations

import pytest

from broker.input_refusals import parse_agent_refusal
from protocol.errors import ErrorCode
from protocol.messages import Error

BUSY = "input refused: subscriber_active"
WINDOW = "input refused: protected_window"


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        ("input_paused", "input refused: question_open (3 events)", ("input_paused", "question_open", 3)),
        ("input_paused", "input refused: grace (1 event)", ("input_paused", "grace", 1)),
        (
            "subscriber_busy",
            "input refused: subscriber_active (7 events)",
            ("subscriber_busy", "subscriber_active", 7),
        ),
        (
            "not_allowed",
            "input refused: protected_window (2 events)",
            ("input_paused", "protected_window", 2),
        ),
        ("consent_required", "input:control is not granted", ("consent_required", "no_control", 1)),
        ("input_paused", "input refused: <script> (3 events)", ("input_paused", "unspecified", 1)),
        ("input_paused", "input refused: made_up (3 events)", ("input_paused", "unspecified", 3)),
        ("input_paused", "input refused: grace (0 events)", ("input_paused", "grace", 1)),
        ("input_paused", "input refused: grace (99999999 events)", ("input_paused", "unspecified", 1)),
        ("input_paused", "input refused: grace (3 events)\nmore", ("input_paused", "unspecified", 1)),
    ],
)
def test_reports_are_read_strictly(code: str, message: str, expected: tuple[str, str, int]) -> None:
    refusal = parse_agent_refusal(Error(code=code, message=message))
    assert refusal is not None
    assert (refusal.code.value, refusal.reason, refusal.count) == expected


@pytest.mark.parametrize(
    ("code", "message"), [("not_allowed", "something else"), ("internal", "input refused: grace (1 events)")]
)
def test_other_errors_are_not_refusals(code: str, message: str) -> None:
    assert parse_agent_refusal(Error(code=code, message=message)) is None


def test_the_new_codes_are_stable() -> None:
    assert ErrorCode.INPUT_PAUSED.value == "input_paused"
    assert ErrorCode.SUBSCRIBER_BUSY.value == "subscriber_busy"
