"""別紙5 in the core: only items the subscriber granted are collected and sent, item by item."""

from __future__ import annotations

from agent.core import actions, inputs
from protocol.messages import InventoryItem, InventoryReport

from .driver import AgentDriver


def _item(name: str) -> InventoryItem:
    return InventoryItem(item=name, available=True, value="x")


def test_only_the_granted_items_are_collected_and_sent() -> None:
    d = AgentDriver()
    q = d.ask("inventory:os", "inventory:cpu", "inventory:router")
    d.do(inputs.Answered(question=q, chosen=frozenset({"inventory:os", "inventory:router"})))
    assert d.of(actions.CollectInventory) == [
        actions.CollectInventory(items=("os", "router"), ask_router_login=True)
    ]
    # Whatever the collectors return, an item not granted (cpu) or never asked (memory) is dropped.
    found = (_item("os"), _item("cpu"), _item("memory"), _item("router"))
    d.do(inputs.InventoryCollected(items=found, router_account="admin", router_password="pw"))
    [report] = [m for m in d.sent() if isinstance(m, InventoryReport)]
    assert [i.item for i in report.items] == ["os", "router"]
    assert (report.router_account, report.router_password) == ("admin", "pw")


def test_an_item_withdrawn_while_collecting_is_not_sent() -> None:
    d = AgentDriver()
    q = d.ask("inventory:os", "inventory:router")
    d.do(inputs.Answered(question=q, chosen=frozenset({"inventory:os", "inventory:router"})))
    d.do(inputs.Withdrawn(scopes=frozenset({"inventory:router"})))
    d.do(
        inputs.InventoryCollected(
            items=(_item("os"), _item("router")), router_account="a", router_password="p"
        )
    )
    [report] = [m for m in d.sent() if isinstance(m, InventoryReport)]
    assert [i.item for i in report.items] == ["os"]
    assert report.router_account is None
    assert report.router_password is None


def test_refused_items_are_never_collected() -> None:
    d = AgentDriver()
    q = d.ask("inventory:os", "inventory:memory")
    d.do(inputs.Answered(question=q, chosen=frozenset()))
    assert d.of(actions.CollectInventory) == []
    d.do(inputs.InventoryCollected(items=(_item("os"),)))
    assert not any(isinstance(m, InventoryReport) for m in d.sent())
