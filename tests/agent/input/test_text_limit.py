"""The agent's text limit is the wire's (issue 14: it was 1024 here and 256 on the wire)."""

from __future__ import annotations

import msgspec
import pytest

from agent.input.inject import InputEvent, InputRejected
from protocol.codec import decode
from protocol.errors import ProtocolError


def _wire(text: str) -> bytes:
    return msgspec.json.encode({"type": "input", "session_id": "sess-0001", "kind": "text", "text": text})


def test_what_the_wire_carries_the_agent_accepts_and_no_more() -> None:
    longest = "あ" * 256
    decode(_wire(longest))  # the wire carries it
    InputEvent(kind="text", text=longest)  # the agent accepts it
    with pytest.raises(ProtocolError):
        decode(_wire(longest + "あ"))
    with pytest.raises(InputRejected):
        InputEvent(kind="text", text=longest + "あ")
