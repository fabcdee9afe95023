"""The one ``InputEvent`` (operator → broker → agent): its rules between fields hold when it is
built and when it is decoded, and the agent's injector takes it as it is (issue 14: it was defined
twice, with a field-by-field copy and contradicting limits)."""

from __future__ import annotations

import pytest

from protocol import decode
from protocol.codec import encode_raw
from protocol.errors import InvalidField
from protocol.messages import InputEvent

SID = "sess-0001"


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "move", "x": 1, "y": 2},
        {"kind": "button", "button": "left", "action": "click", "count": 2, "x": 0, "y": 0},
        {"kind": "button", "button": "right", "action": "down"},
        {"kind": "wheel", "dy": -3},
        {"kind": "key", "action": "down", "key": "Control"},
        {"kind": "key", "action": "click", "code": 0xFF0D},
        {"kind": "text", "text": "こんにちは\tworld\n"},
    ],
)
def test_valid_events(fields: dict[str, object]) -> None:
    InputEvent(session_id=SID, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "move"},
        {"kind": "move", "x": 1},
        {"kind": "button", "button": "back", "action": "click"},
        {"kind": "button", "button": "left", "action": "hold"},
        {"kind": "button", "button": "left", "action": "click", "count": 4},
        {"kind": "wheel"},
        {"kind": "wheel", "dy": 101},
        {"kind": "key", "action": "down"},
        {"kind": "key", "action": "down", "key": "a", "code": 97},
        {"kind": "key", "action": "down", "key": ""},
        {"kind": "key", "action": "down", "code": -1},
        {"kind": "key", "key": "a"},
        {"kind": "text", "text": ""},
        {"kind": "text", "text": "x" * 257},
        {"kind": "text", "text": "a\x1bb"},
        {"kind": "scroll"},
    ],
)
def test_invalid_events(fields: dict[str, object]) -> None:
    with pytest.raises(InvalidField):
        InputEvent(session_id=SID, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "move", "x": 1},
        {"kind": "wheel"},
        {"kind": "key", "action": "down", "key": "a", "code": 97},
        {"kind": "text", "text": "a\x1bb"},
        {"kind": "button", "action": "click"},
    ],
)
def test_decoding_applies_the_same_rules(fields: dict[str, object]) -> None:
    with pytest.raises(InvalidField):
        decode(encode_raw({"type": "input", "session_id": SID, **fields}))


def test_the_agent_injects_the_protocol_type() -> None:
    import agent.input.inject as inject

    assert not hasattr(inject, "InputEvent") or inject.InputEvent is InputEvent
    assert not hasattr(inject, "MAX_TEXT")
