"""Encode and decode control messages, validating everything on the way in.

Decoding is two steps: a cheap envelope read finds ``type`` (so an unknown type gets its own
code, ``unknown_type``, rather than a generic validation error), then the typed decode of that
one class checks every field. The size limit is checked before any parsing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from .errors import InvalidField, MalformedMessage, MessageTooLarge, UnknownMessageType
from .limits import DEFAULT_LIMITS
from .messages import MESSAGE_TYPES, Message

_MAX_DETAIL = 200
_encoder = msgspec.json.Encoder()


class _Envelope(msgspec.Struct):
    type: str


def encode(message: Message) -> bytes:
    """Serialise one message as compact UTF-8 JSON (a WebSocket text frame)."""
    return _encoder.encode(message)


def encode_raw(fields: Mapping[str, Any]) -> bytes:
    """Serialise a plain dict as JSON, unchecked: for tests and fuzzers that must send invalid frames.

    Message objects can only be valid (they validate when built), so a test that sends a hostile
    frame writes it as a dict, ``encode_raw({"type": "claim", "id": ""})``. Products never need
    this: they build messages and call :func:`encode`.
    """
    return _encoder.encode(fields)


def decode(data: bytes | str, *, max_size: int = DEFAULT_LIMITS.max_text_bytes) -> Message:
    """Parse one text frame into its typed message.

    Raises :class:`~protocol.errors.MessageTooLarge`, :class:`MalformedMessage`,
    :class:`UnknownMessageType` or :class:`InvalidField`; never anything else.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if len(raw) > max_size:
        raise MessageTooLarge(f"message of {len(raw)} bytes exceeds the limit of {max_size}")
    if not raw.lstrip(b" \t\r\n").startswith(b"{"):
        raise MalformedMessage("a message must be a JSON object")
    try:
        envelope = msgspec.json.decode(raw, type=_Envelope)
    except msgspec.ValidationError as exc:
        raise InvalidField(_detail(exc)) from None
    except (msgspec.DecodeError, RecursionError, UnicodeError) as exc:
        raise MalformedMessage(f"not a JSON object: {_detail(exc)}") from None
    cls = MESSAGE_TYPES.get(envelope.type)
    if cls is None:
        raise UnknownMessageType(f"unknown message type {envelope.type[:64]!r}")
    try:
        return msgspec.json.decode(raw, type=cls)
    except msgspec.ValidationError as exc:
        raise InvalidField(_detail(exc)) from None
    except (msgspec.DecodeError, RecursionError, UnicodeError) as exc:
        # The envelope pass skips fields other than ``type``; a bad byte there shows up here.
        raise MalformedMessage(_detail(exc)) from None


def _detail(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"
