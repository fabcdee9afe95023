"""The 11 items of 別紙5: stable wire ids, labels, numbers, consent scopes."""

from __future__ import annotations

from agent.inventory.items import BESSHI5_NUMBER, LABELS, Item, item_from_scope, label, scope_for


def test_eleven_items_with_stable_wire_ids_in_besshi5_order() -> None:
    assert [i.value for i in Item] == [
        "os",
        "cert_id",
        "machine_name",
        "mac_addresses",
        "volume_serial",
        "volume_free",
        "default_browser",
        "default_mail",
        "cpu",
        "memory",
        "router",
    ]
    assert [BESSHI5_NUMBER[i] for i in Item] == list(range(1, 12))


def test_every_item_has_both_labels() -> None:
    assert set(LABELS) == set(Item)
    for ja, en in LABELS.values():
        assert ja
        assert en
        assert ja != en
    assert label(Item.ROUTER, "ja") == "ルータの機種、ログインアカウント及びログインパスワード"
    assert label(Item.MEMORY, "ja-JP") == "メモリ容量"
    assert label(Item.MEMORY, "en") == "Memory size"
    assert label(Item.MEMORY, "fr") == "Memory size"


def test_scope_round_trip() -> None:
    for item in Item:
        assert scope_for(item) == f"inventory:{item.value}"
        assert item_from_scope(scope_for(item)) is item


def test_unknown_scopes_map_to_none() -> None:
    for scope in (
        "screen:view",
        "input:control",
        "inventory:",
        "inventory:bios_password",
        "os",
        "INVENTORY:os",
    ):
        assert item_from_scope(scope) is None
