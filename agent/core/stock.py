"""Inventory (別紙5) in the core: which items to collect, and the report of what may be sent.

Only items just granted by the subscriber's answer are collected, each only while the agent's
own record grants it; a result for an item that was not asked for, or was withdrawn while the
collectors ran, is dropped. Router credentials travel only if typed by the subscriber
(別紙5 (11)) and only while ``inventory:router`` is granted.
"""

from __future__ import annotations

from collections.abc import Iterable

from protocol.messages import InventoryReport
from protocol.scopes import INVENTORY_ITEMS
from protocol.session import INVENTORY_PREFIX

from ..consent_record import ConsentRecord
from . import actions as a
from . import inputs as i

__all__ = ["InventoryFlow"]


class InventoryFlow:
    def __init__(self) -> None:
        self.collecting: set[str] = set()
        """Items named in a ``CollectInventory`` whose results have not come back."""

    @staticmethod
    def wanted(newly_granted: Iterable[str], record: ConsentRecord) -> tuple[str, ...]:
        """The 別紙5 items among ``newly_granted`` scopes that the record grants, in 別紙5 order."""
        scopes = set(newly_granted)
        return tuple(
            item
            for item in INVENTORY_ITEMS
            if INVENTORY_PREFIX + item in scopes and record.permits_item(item)
        )

    def collect(self, items: tuple[str, ...]) -> a.CollectInventory:
        self.collecting.update(items)
        return a.CollectInventory(items=items, ask_router_login="router" in items)

    def report(
        self, event: i.InventoryCollected, record: ConsentRecord, session_id: str, request_id: str
    ) -> InventoryReport | None:
        items = tuple(
            item for item in event.items if item.item in self.collecting and record.permits_item(item.item)
        )
        self.collecting -= {item.item for item in event.items}
        if not items:
            return None
        router = record.permits_item("router") and any(item.item == "router" for item in items)
        return InventoryReport(
            id=request_id,
            session_id=session_id,
            items=items,
            router_account=event.router_account if router else None,
            router_password=event.router_password if router else None,
        )
