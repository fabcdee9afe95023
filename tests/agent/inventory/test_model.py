"""ItemResult / RouterCredentials: JSON-safe, never a guess, the password hidden from repr."""

from __future__ import annotations

import json
import math

import pytest

from agent.inventory.items import Item
from agent.inventory.model import PASSWORD_MASK, ItemResult, RouterCredentials


def test_available_round_trips_to_json() -> None:
    result = ItemResult.ok(Item.MAC_ADDRESSES, [{"interface": "eth0", "mac": "02:fc:00:00:00:01"}])
    wire = result.to_wire()
    assert wire == {
        "item": "mac_addresses",
        "available": True,
        "value": [{"interface": "eth0", "mac": "02:fc:00:00:00:01"}],
        "reason": None,
    }
    assert json.loads(json.dumps(wire)) == wire


def test_unavailable_carries_reason_not_value() -> None:
    result = ItemResult.unavailable(Item.VOLUME_SERIAL, "overlay root")
    assert result.to_wire() == {
        "item": "volume_serial",
        "available": False,
        "value": None,
        "reason": "overlay root",
    }
    with pytest.raises(ValueError, match="never a guess"):
        ItemResult(item=Item.CPU, available=False, value="x", reason="r")
    with pytest.raises(ValueError, match="needs a reason"):
        ItemResult(item=Item.CPU, available=False, value=None, reason="")
    with pytest.raises(ValueError, match="needs a value"):
        ItemResult(item=Item.CPU, available=True, value=None, reason=None)


def test_long_reasons_are_capped() -> None:
    result = ItemResult.unavailable(Item.CPU, "x" * 10_000)
    assert result.reason is not None
    assert len(result.reason) == 500


@pytest.mark.parametrize("bad", [math.nan, b"bytes", ("tuple",), {1: "int key"}, [object()], {"k": math.inf}])
def test_non_json_values_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match=r"JSON-safe|not a string"):
        ItemResult(item=Item.CPU, available=True, value=bad, reason=None)  # type: ignore[arg-type]


def test_to_wire_is_detached_from_frozen_state() -> None:
    result = ItemResult.ok(Item.OS, {"name": "Debian"})
    wire = result.to_wire()
    wire["value"]["name"] = "changed"
    assert result.to_wire()["value"] == {"name": "Debian"}


def test_router_credentials_repr_hides_password() -> None:
    creds = RouterCredentials(account="admin", password="s3cr3t-pass")
    assert "s3cr3t-pass" not in repr(creds)
    assert "s3cr3t-pass" not in str(creds)
    result = ItemResult(
        item=Item.ROUTER, available=True, value={"model": None}, reason=None, credentials=creds
    )
    assert "s3cr3t-pass" not in repr(result)
    assert result.to_wire()["value"]["credentials"] == {"account": "admin", "password": "s3cr3t-pass"}
    assert result.to_wire(mask_password=True)["value"]["credentials"] == {
        "account": "admin",
        "password": PASSWORD_MASK,
    }


def test_credentials_only_on_router() -> None:
    with pytest.raises(ValueError, match="router item only"):
        ItemResult(
            item=Item.OS, available=True, value="x", reason=None, credentials=RouterCredentials("a", "b")
        )
