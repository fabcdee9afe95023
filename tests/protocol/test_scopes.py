"""Consent scopes: exactly the 別紙5 items and the two screen scopes; anything else is refused by
the codec (issue 13: ``inventory:network`` was accepted and shown raw to the subscriber)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.inventory.items import Item
from protocol.codec import decode
from protocol.errors import InvalidField
from protocol.messages import ScopeRequest
from protocol.scopes import ALL_SCOPES, INVENTORY_ITEMS, render_js

SCOPES_JS = Path(__file__).resolve().parents[2] / "broker" / "static" / "js" / "scopes.js"


def test_items_are_the_agents_wire_ids_in_order() -> None:
    assert tuple(item.value for item in Item) == INVENTORY_ITEMS
    assert len(INVENTORY_ITEMS) == 11


def test_console_list_is_generated_from_here() -> None:
    text = SCOPES_JS.read_text("utf-8")
    generated = text.split("// generated:begin (python -m protocol.scopes)\n", 1)[1].split(
        "// generated:end", 1
    )[0]
    assert generated == render_js(), (
        "run: python -m protocol.scopes and paste it into broker/static/js/scopes.js"
    )


@pytest.mark.parametrize("scope", ALL_SCOPES)
def test_every_known_scope_decodes(scope: str) -> None:
    msg = decode(f'{{"type":"scope_request","id":"r1","session_id":"s12345678","scopes":["{scope}"]}}')
    assert isinstance(msg, ScopeRequest)
    assert msg.scopes == (scope,)


@pytest.mark.parametrize(
    "scope", ["inventory:network", "inventory:", "inventory:OS", "screen:control", "input:view"]
)
def test_unknown_scopes_are_invalid_fields(scope: str) -> None:
    for raw in (
        f'{{"type":"scope_request","id":"r1","session_id":"s12345678","scopes":["{scope}"]}}',
        f'{{"type":"claim","id":"r1","code":"123456","scopes":["{scope}"]}}',
    ):
        with pytest.raises(InvalidField) as info:
            decode(raw)
        assert info.value.code.value == "invalid_field"


def test_status_table_is_the_wire_type_and_the_messages_use_it() -> None:
    from typing import get_args

    from protocol import messages
    from protocol.scopes import SCOPE_STATUSES, ScopeStatus

    assert tuple(SCOPE_STATUSES) == get_args(ScopeStatus)
    assert messages.ScopeStatus is ScopeStatus  # one definition, re-used by the wire type
    assert all(SCOPE_STATUSES.values())
