"""Result types of inventory collection (別紙5), shaped for the wire.

Why frozen and validated: what the agent sends under 別紙5 is personal data handled under 第30条, and the
subscriber is shown a preview of exactly these objects before anything is sent. A result must therefore be
immutable between preview and send, JSON-safe by construction (so the preview and the wire cannot differ),
and say plainly when an item could not be read (``available=False`` plus a reason) instead of carrying a
guess.

Router credentials (別紙5 (11)) are never read from the router or the system: only typed in by the
subscriber. They travel in their own type whose ``repr`` hides the password, so that logging a result never
leaks it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from agent.errors import AgentError, AgentErrorCode
from agent.inventory.items import Item

__all__ = [
    "MAX_REASON_CHARS",
    "PASSWORD_MASK",
    "ItemResult",
    "ItemUnavailable",
    "JsonValue",
    "RouterCredentials",
]

#: What a collector may return. Nested containers must themselves be JSON-safe (checked at construction).
JsonValue: TypeAlias = str | int | float | bool | dict[str, Any] | list[Any]

#: Reasons are shown to operators; cap them so a pathological error text cannot bloat the message.
MAX_REASON_CHARS: Final = 500

#: Fixed-length mask: showing one star per character would disclose the password's length.
PASSWORD_MASK: Final = "********"  # noqa: S105 - a display mask, not a password


class ItemUnavailable(AgentError):
    """Raised by a collector when an item cannot be read on this machine; ``reason`` says why, for the
    operator."""

    code = AgentErrorCode.ITEM_UNAVAILABLE

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RouterCredentials:
    """Router login typed in by the subscriber (別紙5 (11)); never harvested from the router or the system.

    ``repr`` hides the password so the object can be logged, put in an exception or shown in a debugger
    without disclosing it (第30条, 第33条).
    """

    account: str
    password: str = field(repr=False)

    def __repr__(self) -> str:
        return f"RouterCredentials(account={self.account!r}, password={PASSWORD_MASK!r})"

    def to_wire(self, *, mask_password: bool = False) -> dict[str, str]:
        """JSON form; ``mask_password`` for the local preview, which must not print the secret on screen."""
        return {"account": self.account, "password": PASSWORD_MASK if mask_password else self.password}


def _check_json_safe(value: object) -> None:
    """Reject anything ``json.dumps`` would refuse or change (NaN, non-str keys, tuples, bytes)."""
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("non-finite float is not JSON-safe")
        return
    if isinstance(value, list):
        for element in value:
            _check_json_safe(element)
        return
    if isinstance(value, dict):
        for key, element in value.items():
            if not isinstance(key, str):
                raise ValueError(f"dict key {key!r} is not a string")
            _check_json_safe(element)
        return
    raise ValueError(f"{type(value).__name__} is not JSON-safe")


@dataclass(frozen=True, slots=True)
class ItemResult:
    """The outcome of reading one 別紙5 item.

    Invariants: ``available`` results carry a value and no reason; unavailable ones carry a reason and no
    value. ``credentials`` is only allowed on the router item (別紙5 (11)) and is kept out of ``value`` so
    the password stays behind ``RouterCredentials.__repr__`` until ``to_wire`` is called.
    """

    item: Item
    available: bool
    value: JsonValue | None
    reason: str | None
    credentials: RouterCredentials | None = None

    def __post_init__(self) -> None:
        if self.available:
            if self.value is None:
                raise ValueError("an available item needs a value")
            if self.reason is not None:
                raise ValueError("an available item has no reason")
        else:
            if self.value is not None:
                raise ValueError("an unavailable item carries no value (never a guess)")
            if not self.reason:
                raise ValueError("an unavailable item needs a reason")
            if len(self.reason) > MAX_REASON_CHARS:
                object.__setattr__(self, "reason", self.reason[: MAX_REASON_CHARS - 1] + "…")
        if self.credentials is not None and self.item is not Item.ROUTER:
            raise ValueError("credentials belong to the router item only")
        _check_json_safe(self.value)

    @classmethod
    def ok(cls, item: Item, value: JsonValue) -> ItemResult:
        """An item that was read."""
        return cls(item=item, available=True, value=value, reason=None)

    @classmethod
    def unavailable(cls, item: Item, reason: str) -> ItemResult:
        """An item that could not be read here, with the reason an operator will see."""
        return cls(item=item, available=False, value=None, reason=reason)

    def to_wire(self, *, mask_password: bool = False) -> dict[str, Any]:
        """JSON-safe dict for the inventory message: ``{"item", "available", "value", "reason"}``.

        For the router item, typed-in credentials are merged into ``value["credentials"]``. The broker
        stores them encrypted (第30条, 第32条) and shows them only on an explicit, audited operator action.
        """
        value: Any = self.value
        if self.credentials is not None:
            value = dict(value) if isinstance(value, dict) else {}
            value["credentials"] = self.credentials.to_wire(mask_password=mask_password)
        wire = {"item": self.item.value, "available": self.available, "value": value, "reason": self.reason}
        # Round-trip through json so callers get plain, detached containers that cannot alias our frozen
        # state.
        result: dict[str, Any] = json.loads(json.dumps(wire, allow_nan=False))
        return result
