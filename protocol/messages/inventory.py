"""Inventory (別紙5) and monitor messages: the consented items, the router login behind an explicit
action, and the subscriber's monitor layout.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from .fields import Id, MessageBase, SessionId, WireStruct


class InventoryItem(WireStruct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    item: Annotated[str, msgspec.Meta(pattern=r"^[a-z_]{1,32}\Z")]
    available: bool
    value: Any = None
    reason: Annotated[str, msgspec.Meta(max_length=512)] | None = None


class InventoryReport(MessageBase, frozen=True, kw_only=True, tag="inventory_report"):
    """Agent → broker: only the items the subscriber granted (別紙5: item by item).

    Router credentials (別紙5 (11)) travel only if the subscriber typed them in this session.
    """

    id: Id
    session_id: SessionId
    items: Annotated[tuple[InventoryItem, ...], msgspec.Meta(max_length=16)]
    router_account: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    router_password: Annotated[str, msgspec.Meta(max_length=128)] | None = None


class InventoryView(MessageBase, frozen=True, kw_only=True, tag="inventory"):
    """Broker → operator: the consented items; credentials only behind :class:`RevealCredentials`."""

    session_id: SessionId
    items: Annotated[tuple[InventoryItem, ...], msgspec.Meta(max_length=16)]
    has_router_credentials: bool = False
    id: Id | None = None


class RevealCredentials(MessageBase, frozen=True, kw_only=True, tag="reveal_credentials"):
    """Operator → broker: the explicit, audited action that shows the router login (別紙5 (11))."""

    id: Id
    session_id: SessionId


class Credentials(MessageBase, frozen=True, kw_only=True, tag="credentials"):
    id: Id
    session_id: SessionId
    account: Annotated[str, msgspec.Meta(max_length=128)]
    password: Annotated[str, msgspec.Meta(max_length=128)]


class Monitor(WireStruct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    index: Annotated[int, msgspec.Meta(ge=0, le=16)]
    left: Annotated[int, msgspec.Meta(ge=-65535, le=65535)]
    top: Annotated[int, msgspec.Meta(ge=-65535, le=65535)]
    width: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    height: Annotated[int, msgspec.Meta(ge=1, le=65535)]


class MonitorLayout(MessageBase, frozen=True, kw_only=True, tag="monitor_layout"):
    """Agent → operator: the subscriber's monitors; ``current`` is the one being shared.

    Index 0 is all monitors together (as ``mss`` numbers them); the operator picks one with
    :class:`ScreenRefresh` ``monitor=n``.
    """

    session_id: SessionId
    monitors: Annotated[tuple[Monitor, ...], msgspec.Meta(max_length=17)]
    current: Annotated[int, msgspec.Meta(ge=0, le=16)] = 0
