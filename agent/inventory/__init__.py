"""Inventory collectors for 別紙5 (本ソフトが取得する情報): read only what the subscriber consented to, item
by item.

See docs/inventory.md. Public entry points: ``collect`` and ``default_collector`` (agent.inventory.collect),
``render_preview`` / ``run_preview`` (agent.inventory.preview), ``probe_router`` (agent.inventory.router).
"""

from agent.inventory.items import LABELS, Item, item_from_scope, scope_for
from agent.inventory.model import ItemResult, ItemUnavailable, RouterCredentials

__all__ = [
    "LABELS",
    "Item",
    "ItemResult",
    "ItemUnavailable",
    "RouterCredentials",
    "item_from_scope",
    "scope_for",
]
