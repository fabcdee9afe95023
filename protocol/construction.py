"""Validation when a message is built: the metaclass of every struct in :mod:`protocol.messages`.

A message object can only be valid (issue 14; h11's self-validating events). ``Validating.__call__``
encodes the new object and decodes it with its own class's typed decoder, the codec's very rules, and
returns the decoded object; decoding a frame creates objects without the metaclass, so a received
message is validated once. The rules between an ``input`` event's fields are here too, run by
``InputEvent.__post_init__`` on both paths.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import msgspec
import msgspec.inspect

from .errors import InvalidArguments, InvalidField

if TYPE_CHECKING:
    from .messages import InputEvent

__all__ = ["Validating", "input_problem"]

_MAX_DETAIL = 200
_check_encoder = msgspec.json.Encoder()


def _refusal(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def _non_finite(value: object) -> bool:
    """Whether a float infinity or NaN is anywhere in ``value`` (plain data, already encodable)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(k) or _non_finite(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_non_finite(v) for v in value)
    return False


_FLOATS: dict[type, bool] = {}


def _carries_floats(cls: type) -> bool:
    """Whether a float (or an ``Any``, which may hold one) can sit anywhere in ``cls``: only then can
    a non-finite float be lost in JSON. Found once per class from msgspec's type information."""
    found = _FLOATS.get(cls)
    if found is None:
        found = _FLOATS[cls] = _has_float_type(msgspec.inspect.type_info(cls), set())
    return found


def _has_float_type(node: object, seen: set[int]) -> bool:
    if isinstance(node, msgspec.inspect.FloatType | msgspec.inspect.AnyType):
        return True
    if isinstance(node, tuple):
        return any(_has_float_type(item, seen) for item in node)
    if not isinstance(node, msgspec.inspect.Type | msgspec.inspect.Field) or id(node) in seen:
        return False
    seen.add(id(node))
    return any(_has_float_type(getattr(node, name), seen) for name in node.__struct_fields__)


class Validating(msgspec.StructMeta):
    """Metaclass: ``Cls(**fields)`` returns the object only if the decoder would accept it.

    The new object is encoded and decoded with its own class's typed decoder (the codec's rules:
    patterns, lengths, ranges, literals, known scopes, nested structs), and the *decoded* object
    is returned, so a list given for a tuple field comes back a tuple and construction and
    decoding can never disagree. ``msgspec.json.decode`` creates objects without calling the
    metaclass, so decoding is not validated twice.
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        try:
            built = super().__call__(*args, **kwargs)
        except TypeError as exc:  # a missing or unknown field: decoding refuses it the same way
            raise InvalidArguments(f"{cls.__name__}: {_refusal(exc)}") from None
        try:
            data = _check_encoder.encode(built)
        except (msgspec.EncodeError, TypeError, ValueError, OverflowError) as exc:
            raise InvalidField(f"{cls.__name__}: {_refusal(exc)}") from None
        try:
            decoded = msgspec.json.decode(data, type=cls)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise InvalidField(f"{cls.__name__}: {_refusal(exc)}") from None
        # JSON has no infinity or NaN: the encoder writes them as null, which a field may accept as
        # None. Only then can the decoded object say something else than the one built.
        if b"null" in data and _carries_floats(cls) and _non_finite(msgspec.to_builtins(built)):
            raise InvalidField(f"{cls.__name__}: a value does not survive JSON (infinity or NaN)")
        return decoded


def input_problem(event: InputEvent) -> str | None:
    """What is wrong with ``event`` as a whole, or None: what each ``kind`` needs.

    kind "move":   ``x``, ``y`` in shared-screen pixels (origin: the shared monitor's top-left).
    kind "button": ``button`` and ``action``; with ``x``/``y`` the pointer moves there first.
    kind "wheel":  ``dx``, ``dy`` in wheel steps, not both zero (positive ``dy`` scrolls down, like
                   the DOM's ``deltaY``); with ``x``/``y`` the pointer moves there first.
    kind "key":    ``action`` of a key given by exactly one of ``key`` (a pynput ``Key`` name, a DOM
                   ``KeyboardEvent.key`` name or one character) and ``code`` (platform key code).
    kind "text":   ``text``.
    """
    if (event.x is None) != (event.y is None):
        return "x and y go together"
    kind = event.kind
    if kind == "move":
        return "needs x and y" if event.x is None else None
    if kind == "button":
        if event.button is None or event.action is None:
            return "needs button and action"
    elif kind == "wheel":
        if event.dx == 0 and event.dy == 0:
            return "dx and dy are both zero"
    elif kind == "key":
        if event.action is None:
            return "needs action"
        if (event.key is None) == (event.code is None):
            return "needs exactly one of key and code"
    elif kind == "text":
        if event.text is None:
            return "needs text"
        if any(ord(c) < 0x20 and c not in "\t\n" for c in event.text):
            return "text may not contain control characters other than tab and newline"
    return None
