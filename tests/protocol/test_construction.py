"""Messages validate when they are built, by the decoder's own rules (issue 14: ``Claim(id='',
code='12', scopes=('rm -rf',))`` used to build).

Properties over every message type: whatever builds also encodes and decodes back equal, and
construction and decoding agree on every input: the same fields are refused by both (with
``invalid_field``) or accepted by both, as equal messages. Hostile frames are written as raw dicts
with ``encode_raw``, never as message objects.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tests.fuzzing  # noqa: F401  (loads the hypothesis profile)
from protocol.codec import decode, encode, encode_raw
from protocol.errors import ErrorCode, InvalidField, ProtocolError
from protocol.messages import (
    MESSAGE_TYPES,
    Chat,
    Claim,
    Error,
    InputEvent,
    Message,
    SessionState,
    Viewer,
)
from protocol.scopes import ALL_SCOPES

SID = "sess-0001"

# Plausible values by field name (so many examples build), mixed with hostile ones.
GOOD: dict[str, list[Any]] = {
    "id": ["r-1", "a.b:c"],
    "session_id": [SID, "abcdefgh12"],
    "code": ["123456", "invalid_field", 65],
    "scopes": [["screen:view"], list(ALL_SCOPES[:3]), {"screen:view": "granted"}],
    "kind": ["move", "button", "wheel", "key", "text", "invite"],
    "x": [0, 10],
    "y": [0, 10],
    "button": ["left"],
    "action": ["click", "down"],
    "key": ["a", "Enter"],
    "text": ["hello", "a\tb\n"],
    "time": [0, 1.5, 1_700_000_000.25],
    "expires_at": [1_700_000_000],
    "versions": [[1], [1, 2]],
    "role": ["agent", "operator", "supervisor"],
    "name": ["Sato"],
    "phase": ["active", "waiting"],
    "contract_id": ["C-1001"],
    "operator": ["Sato"],
    "machine_name": ["PC-01"],
    "viewers": [[{"name": "Sato", "role": "operator"}]],
    "token": ["t" * 16],
    "status": ["asked"],
    "colleague": ["ito"],
    "by": ["sato"],
    "monitors": [[{"index": 1, "left": 0, "top": 0, "width": 800, "height": 600}]],
    "items": [[{"item": "os", "available": True, "value": "Linux"}]],
    "requests": [[]],
    "sessions": [[]],
    "entries": [[]],
    "ok": [True],
    "checked": [3],
    "totp": ["123456"],
    "password": ["pw"],
}
hostile = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8"), max_size=80)
    | st.sampled_from(["", "rm -rf", "inventory:network", "x" * 300, "12", "screen:view"])
    | st.lists(st.sampled_from(["screen:view", "rm -rf", 1, None]), max_size=20)
)
FIELDS: dict[str, tuple[str, ...]] = {tag: tuple(cls.__struct_fields__) for tag, cls in MESSAGE_TYPES.items()}


@st.composite
def field_dicts(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    tag = draw(st.sampled_from(sorted(MESSAGE_TYPES)))
    fields: dict[str, Any] = {}
    for name in FIELDS[tag]:
        choice = draw(st.integers(0, 9))
        if choice < 6 and name in GOOD:
            fields[name] = draw(st.sampled_from(GOOD[name]))
        elif choice < 8:
            fields[name] = draw(hostile)
        # else: left out (its default, or missing)
    if draw(st.integers(0, 19)) == 0:
        fields["unknown_field"] = 1
    return tag, fields


def _build(tag: str, fields: dict[str, Any]) -> Message | ProtocolError:
    try:
        return MESSAGE_TYPES[tag](**fields)
    except ProtocolError as exc:
        return exc


def _decode(tag: str, fields: dict[str, Any]) -> Message | ProtocolError:
    try:
        return decode(encode_raw({"type": tag, **fields}))
    except ProtocolError as exc:
        return exc


@given(field_dicts())
def test_construction_and_decoding_agree(case: tuple[str, dict[str, Any]]) -> None:
    tag, fields = case
    built, decoded = _build(tag, fields), _decode(tag, fields)
    if isinstance(decoded, ProtocolError):
        assert isinstance(built, InvalidField), (tag, fields, decoded)
        assert built.code is ErrorCode.INVALID_FIELD
    else:
        assert not isinstance(built, ProtocolError), (tag, fields, built)
        assert built == decoded


@given(field_dicts())
def test_whatever_builds_round_trips(case: tuple[str, dict[str, Any]]) -> None:
    tag, fields = case
    built = _build(tag, fields)
    if not isinstance(built, ProtocolError):
        assert decode(encode(built)) == built


def test_the_property_sees_both_outcomes() -> None:
    """Both branches above are exercised, not only refusals (a property that never builds would
    pass for the wrong reason)."""
    assert not isinstance(_build("claim", {"id": "r-1", "code": "123456"}), ProtocolError)
    assert isinstance(_build("claim", {"id": "", "code": "12", "scopes": ("rm -rf",)}), InvalidField)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Claim(id="", code="12", scopes=("rm -rf",)),  # the example
        lambda: Claim(id="r-1", scopes=("inventory:network",)),  # not one of 別紙5's items
        lambda: Claim(id="r 1"),
        lambda: Chat(session_id=SID, text=""),
        lambda: Chat(session_id=SID, text="x" * 2001),
        lambda: Error(code="Not A Code"),
        lambda: Error(code="x", retry_after=math.inf),
        lambda: SessionState(session_id=SID, phase="over", contract_id="C-1"),  # type: ignore[arg-type]
        lambda: SessionState(session_id=SID, phase="active", contract_id="C-1", scopes={"rm": "granted"}),
        lambda: Viewer(name="", role="operator"),
        lambda: InputEvent(session_id="short", kind="move", x=1, y=1),
        lambda: InputEvent(session_id=SID, kind="move", x=70_000, y=1),
        lambda: Claim(id="r-1", colour="red"),  # type: ignore[call-arg]
        lambda: Claim(),  # type: ignore[call-arg]
    ],
)
def test_invalid_messages_do_not_build(build: Any) -> None:
    with pytest.raises(InvalidField) as info:
        build()
    assert info.value.code is ErrorCode.INVALID_FIELD


def test_construction_normalises_like_decoding() -> None:
    """A list given for a tuple field comes back a tuple (hashable, frozen), as decoding gives it."""
    claim = Claim(id="r-1", scopes=["screen:view"])  # type: ignore[arg-type]
    assert claim.scopes == ("screen:view",)
    assert claim == decode(encode(claim))
    state = SessionState(
        session_id=SID, phase="active", contract_id="C-1", viewers=(Viewer(name="Sato", role="operator"),)
    )
    assert state.viewers[0] == Viewer(name="Sato", role="operator")


def test_hostile_frames_are_written_raw() -> None:
    """``encode_raw`` writes any dict: the tool for tests that must send what no message can be."""
    data = encode_raw({"type": "claim", "id": "", "code": "12", "scopes": ["rm -rf"]})
    with pytest.raises(InvalidField):
        decode(data)
