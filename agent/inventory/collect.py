"""Collect exactly the consented 別紙5 items, and nothing else.

Why this shape: 別紙5 lets the agent read an item only "本契約者の承諾を得て" (with the subscriber's
consent), item by item, and says refusing "本サービスの利用には何ら制限はありません". So ``collect`` takes
the consented items and calls only their collector methods: a refused item is never read, not
read-and-dropped. One failing collector must not cost the subscriber the others, so each failure becomes
``available=False`` with a reason. What is collected is personal data handled under 第30条; the broker
encrypts it at rest (第32条).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Collection
from typing import Final

from agent.inventory.base import PlatformCollector
from agent.inventory.items import Item
from agent.inventory.model import MAX_REASON_CHARS, ItemResult, ItemUnavailable, JsonValue, RouterCredentials

__all__ = ["PlatformCollector", "collect", "default_collector", "normalize_cert_serial"]

_HEX: Final = re.compile(r"^[0-9A-F]{1,64}\Z")

#: Items read from the local machine, mapped to the collector method that reads them.
_LOCAL: Final[dict[Item, Callable[[PlatformCollector], JsonValue]]] = {
    Item.OS: lambda c: c.os_info(),
    Item.MACHINE_NAME: lambda c: c.machine_name(),
    Item.MAC_ADDRESSES: lambda c: c.mac_addresses(),
    Item.VOLUME_SERIAL: lambda c: c.volume_serial(),
    Item.VOLUME_FREE: lambda c: c.volume_free(),
    Item.DEFAULT_BROWSER: lambda c: c.default_browser(),
    Item.DEFAULT_MAIL: lambda c: c.default_mail(),
    Item.CPU: lambda c: c.cpu(),
    Item.MEMORY: lambda c: c.memory(),
}


def normalize_cert_serial(serial: str) -> str:
    """別紙5 (2): the agent certificate's serial as upper-case hex without separators or ``0x`` prefix.

    Raises ValueError for anything that is not hex, so a wrong value is reported, never sent.
    """
    text = serial.strip().replace(":", "").replace(" ", "").upper()
    if text.startswith("0X"):
        text = text[2:]
    if not _HEX.match(text):
        raise ValueError("the certificate serial is not hexadecimal")
    return text.lstrip("0") or "0"


def _failure_reason(exc: BaseException) -> str:
    if isinstance(exc, ItemUnavailable):
        return exc.reason
    return f"collector failed: {type(exc).__name__}: {exc}"[:MAX_REASON_CHARS]


def _router(probe: Callable[[], ItemResult] | None, credentials: RouterCredentials | None) -> ItemResult:
    """別紙5 (11): model from the probe; credentials only as typed in by the subscriber, never discovered."""
    if probe is None:
        result = ItemResult.unavailable(Item.ROUTER, "router discovery was not run")
    else:
        try:
            result = probe()
        except Exception as exc:
            result = ItemResult.unavailable(Item.ROUTER, _failure_reason(exc))
        if result.item is not Item.ROUTER:
            result = ItemResult.unavailable(Item.ROUTER, "router probe returned a result for another item")
    if credentials is None:
        return result
    if result.available:
        value: JsonValue = result.value if result.value is not None else {}
    else:
        value = {"model": None, "model_reason": result.reason}
    return ItemResult(item=Item.ROUTER, available=True, value=value, reason=None, credentials=credentials)


def collect(
    items: Collection[Item],
    *,
    collector: PlatformCollector,
    cert_serial: str | None,
    router_probe: Callable[[], ItemResult] | None,
    router_credentials: RouterCredentials | None,
) -> list[ItemResult]:
    """Read the consented ``items`` (in 別紙5 order) and return one result per item.

    Only methods of consented items are called; the router probe runs only if the router item is consented,
    and typed-in credentials are attached only then too. Exceptions never escape: they become unavailable
    results.
    """
    wanted = set(items)
    results: list[ItemResult] = []
    for item in Item:  # 別紙5 order, whatever order the consent arrived in
        if item not in wanted:
            continue
        if item is Item.CERT_ID:
            if cert_serial is None:
                results.append(
                    ItemResult.unavailable(item, "no client certificate yet (the agent is not enrolled)")
                )
                continue
            try:
                results.append(ItemResult.ok(item, normalize_cert_serial(cert_serial)))
            except ValueError as exc:
                results.append(ItemResult.unavailable(item, str(exc)))
            continue
        if item is Item.ROUTER:
            results.append(_router(router_probe, router_credentials))
            continue
        try:
            results.append(ItemResult.ok(item, _LOCAL[item](collector)))
        except Exception as exc:  # one broken collector must not cost the subscriber the other items
            results.append(ItemResult.unavailable(item, _failure_reason(exc)))
    return results


def default_collector() -> PlatformCollector:
    """The collector for the running OS."""
    if sys.platform == "win32":
        from agent.inventory.windows import default_windows_collector

        return default_windows_collector()
    elif sys.platform == "darwin":
        from agent.inventory.macos import MacOSCollector

        return MacOSCollector()
    else:
        from agent.inventory.linux import LinuxCollector

        return LinuxCollector()
