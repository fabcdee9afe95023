"""Property-based fuzzing of the protocol's two decoders: whatever arrives, ``decode`` (JSON control
messages) and ``decode_update`` (binary screen updates) raise only ``RemoteProtocolError`` with a
stable code, never anything else (issue 12; profiles in tests/fuzzing.py)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import tests.fuzzing  # noqa: F401  (loads the hypothesis profile)
from protocol.codec import decode
from protocol.errors import ErrorCode, RemoteProtocolError
from protocol.messages import MESSAGE_TYPES
from protocol.screen import Encoding, Rect, ScreenUpdate, decode_update, encode_update

CODES = {code.value for code in ErrorCode}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)
FIELD_NAMES = sorted(
    {name for cls in MESSAGE_TYPES.values() for name in getattr(cls, "__struct_fields__", ())} | {"type"}
)
message_like = st.builds(
    lambda kind, fields: {"type": kind, **fields},
    st.sampled_from(sorted(MESSAGE_TYPES)) | st.text(max_size=12),
    st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=8),
)


def _decode_or_protocol_error(data: bytes | str) -> None:
    code = None
    try:
        decode(data)
    except RemoteProtocolError as exc:
        code = exc.code.value
    assert code is None or code in CODES


@given(st.binary(max_size=2048))
def test_fuzz_codec_bytes(data: bytes) -> None:
    _decode_or_protocol_error(data)


@given(st.text(max_size=2048))
def test_fuzz_codec_text(data: str) -> None:
    _decode_or_protocol_error(data)


@given(message_like)
def test_fuzz_codec_message_shaped_json(message: dict[str, Any]) -> None:
    _decode_or_protocol_error(json.dumps(message))


@given(json_values)
def test_fuzz_codec_any_json(value: Any) -> None:
    _decode_or_protocol_error(json.dumps(value))


def _decode_update_or_protocol_error(data: bytes) -> None:
    code = None
    try:
        decode_update(data)
    except RemoteProtocolError as exc:
        code = exc.code.value
    assert code is None or code in CODES


@given(st.binary(max_size=4096))
def test_fuzz_screen_bytes(data: bytes) -> None:
    _decode_update_or_protocol_error(data)


@st.composite
def mutated_updates(draw: st.DrawFn) -> bytes:
    """A valid screen update with a few bytes changed, cut or appended: past the first checks."""
    width, height = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    rects = tuple(
        Rect(
            x=0,
            y=0,
            w=draw(st.integers(1, width)),
            h=draw(st.integers(1, height)),
            encoding=draw(st.sampled_from(list(Encoding))),
            payload=draw(st.binary(max_size=64)),
        )
        for _ in range(draw(st.integers(0, 3)))
    )
    frame = bytearray(
        encode_update(ScreenUpdate(seq=draw(st.integers(0, 1000)), width=width, height=height, rects=rects))
    )
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(frame) - 1))
        frame[at] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(frame)))
    return bytes(frame[:cut]) + draw(st.binary(max_size=8))


@given(mutated_updates())
def test_fuzz_screen_mutated_updates(data: bytes) -> None:
    _decode_update_or_protocol_error(data)
