"""The agent's text limit is the wire's (issue 14: it was 1024 in the agent and 256 on the wire).

There is one ``InputEvent`` (the protocol's); the injector takes it, so what the wire carries is
exactly what the agent accepts.
"""

from __future__ import annotations

import msgspec
import pytest

from agent.input import inject
from protocol import messages
from protocol.codec import decode
from protocol.errors import ProtocolError
from protocol.limits import MAX_INPUT_TEXT


def _wire(text: str) -> bytes:
    return msgspec.json.encode({"type": "input", "session_id": "sess-0001", "kind": "text", "text": text})


def test_the_injector_takes_the_protocols_input_event() -> None:
    assert vars(inject)["InputEvent"] is messages.InputEvent


def test_what_the_wire_carries_the_agent_accepts_and_no_more() -> None:
    longest = "あ" * MAX_INPUT_TEXT
    assert MAX_INPUT_TEXT == 256
    event = decode(_wire(longest))  # the wire carries it
    assert isinstance(event, messages.InputEvent)
    assert event.text == longest
    messages.InputEvent(session_id="sess-0001", kind="text", text=longest)  # and it can be built
    with pytest.raises(ProtocolError):
        decode(_wire(longest + "あ"))
    with pytest.raises(ProtocolError):
        messages.InputEvent(session_id="sess-0001", kind="text", text=longest + "あ")
