"""The eleven inventory items of 別紙5 (本ソフトが取得する情報), with stable wire ids and labels.

Why this module exists: the terms list exactly eleven things the agent may read, and only
"本契約者の承諾を得て" (with the subscriber's consent), item by item. Refusing any of them
"本サービスの利用には何ら制限はありません" (changes nothing about the service). So every item has a fixed
identity that the consent prompt, the consent receipt, the wire message and the broker's storage all agree
on: the ``Item`` value and its consent scope ``inventory:<value>`` (DESIGN §4). The values are wire ids:
never rename them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = ["BESSHI5_NUMBER", "LABELS", "SCOPE_PREFIX", "Item", "item_from_scope", "label", "scope_for"]


class Item(StrEnum):
    """One inventory item of 別紙5; the value is the stable wire id (and the tail of the consent scope)."""

    OS = "os"  # 別紙5 (1) オペレーティングシステムの種類、バージョン
    CERT_ID = "cert_id"  # 別紙5 (2) クライアント証明書ID
    MACHINE_NAME = "machine_name"  # 別紙5 (3) マシン名
    MAC_ADDRESSES = "mac_addresses"  # 別紙5 (4) MAC アドレス
    VOLUME_SERIAL = "volume_serial"  # 別紙5 (5) ハードディスクドライブのボリュームシリアル番号
    VOLUME_FREE = "volume_free"  # 別紙5 (6) ハードディスクドライブの空き容量
    DEFAULT_BROWSER = "default_browser"  # 別紙5 (7) デフォルトブラウザの種類、バージョン
    DEFAULT_MAIL = "default_mail"  # 別紙5 (8) デフォルトメールソフトの種類、バージョン
    CPU = "cpu"  # 別紙5 (9) CPU 種類、動作周波数
    MEMORY = "memory"  # 別紙5 (10) メモリ容量
    ROUTER = "router"  # 別紙5 (11) ルータの機種、ログインアカウント及びログインパスワード


#: (Japanese label, English label). The Japanese text follows the wording of 別紙5 so that the consent prompt
#: shows the subscriber the same words they agreed to in the terms.
LABELS: Final[dict[Item, tuple[str, str]]] = {
    Item.OS: ("オペレーティングシステムの種類、バージョン", "Operating system type and version"),
    Item.CERT_ID: ("クライアント証明書ID", "Client certificate ID"),
    Item.MACHINE_NAME: ("マシン名", "Machine name"),
    Item.MAC_ADDRESSES: ("MACアドレス", "MAC addresses"),
    Item.VOLUME_SERIAL: ("ハードディスクドライブのボリュームシリアル番号", "System volume serial number"),
    Item.VOLUME_FREE: ("ハードディスクドライブの空き容量", "System volume free space"),
    Item.DEFAULT_BROWSER: ("デフォルトブラウザの種類、バージョン", "Default browser and version"),
    Item.DEFAULT_MAIL: ("デフォルトメールソフトの種類、バージョン", "Default mail client and version"),
    Item.CPU: ("CPUの種類、動作周波数", "CPU type and clock"),
    Item.MEMORY: ("メモリ容量", "Memory size"),
    Item.ROUTER: (
        "ルータの機種、ログインアカウント及びログインパスワード",
        "Router model, login account and password",
    ),
}

#: The item's number in 別紙5, so that UI and docs can cite "別紙5 (n)".
BESSHI5_NUMBER: Final[dict[Item, int]] = {item: n for n, item in enumerate(Item, start=1)}

SCOPE_PREFIX: Final = "inventory:"


def label(item: Item, lang: str) -> str:
    """The item's label in ``lang`` ("ja", else English: DESIGN §1 prompts are Japanese with English
    fallback)."""
    ja, en = LABELS[item]
    return ja if lang.lower().startswith("ja") else en


def scope_for(item: Item) -> str:
    """Consent scope for one item (DESIGN §4 ``inventory:<item>``): consent is given per 別紙5 item."""
    return f"{SCOPE_PREFIX}{item.value}"


def item_from_scope(scope: str) -> Item | None:
    """The item a consent scope grants, or None if the scope is not an inventory scope we know.

    Unknown scopes map to None rather than raising, so a newer broker asking for an item this agent does not
    know cannot make the agent collect something the subscriber was never shown.
    """
    if not scope.startswith(SCOPE_PREFIX):
        return None
    try:
        return Item(scope[len(SCOPE_PREFIX) :])
    except ValueError:
        return None
