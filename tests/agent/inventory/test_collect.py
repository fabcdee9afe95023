"""collect(): only consented items are read; failures are isolated; router credentials only as typed in."""

from __future__ import annotations

import sys

import pytest

from agent.inventory.base import PlatformCollector
from agent.inventory.collect import collect, default_collector, normalize_cert_serial
from agent.inventory.items import Item
from agent.inventory.linux import LinuxCollector
from agent.inventory.model import ItemResult, ItemUnavailable, JsonValue, RouterCredentials

METHOD_OF = {
    Item.OS: "os_info",
    Item.MACHINE_NAME: "machine_name",
    Item.MAC_ADDRESSES: "mac_addresses",
    Item.VOLUME_SERIAL: "volume_serial",
    Item.VOLUME_FREE: "volume_free",
    Item.DEFAULT_BROWSER: "default_browser",
    Item.DEFAULT_MAIL: "default_mail",
    Item.CPU: "cpu",
    Item.MEMORY: "memory",
}


class RecordingCollector:
    """Answers only for allowed methods; any other call is a consent violation and fails the test."""

    def __init__(self, allowed: set[str], broken: dict[str, BaseException] | None = None) -> None:
        self.allowed = allowed
        self.broken = broken or {}
        self.calls: list[str] = []

    def _answer(self, name: str) -> JsonValue:
        self.calls.append(name)
        if name not in self.allowed:
            raise AssertionError(f"{name} was called without consent")
        if name in self.broken:
            raise self.broken[name]
        return f"value of {name}"

    def os_info(self) -> JsonValue:
        return self._answer("os_info")

    def machine_name(self) -> JsonValue:
        return self._answer("machine_name")

    def mac_addresses(self) -> JsonValue:
        return self._answer("mac_addresses")

    def volume_serial(self) -> JsonValue:
        return self._answer("volume_serial")

    def volume_free(self) -> JsonValue:
        return self._answer("volume_free")

    def default_browser(self) -> JsonValue:
        return self._answer("default_browser")

    def default_mail(self) -> JsonValue:
        return self._answer("default_mail")

    def cpu(self) -> JsonValue:
        return self._answer("cpu")

    def memory(self) -> JsonValue:
        return self._answer("memory")


def never_probe() -> ItemResult:
    raise AssertionError("router probed without consent")


def test_refused_items_are_never_read() -> None:
    consented = [Item.MEMORY, Item.OS]  # order of consent does not matter
    collector = RecordingCollector({"os_info", "memory"})
    results = collect(
        consented,
        collector=collector,
        cert_serial="0A1B",
        router_probe=never_probe,
        router_credentials=RouterCredentials("admin", "pw"),
    )
    assert [r.item for r in results] == [Item.OS, Item.MEMORY]
    assert collector.calls == ["os_info", "memory"]
    assert all(r.available for r in results)


def test_nothing_consented_reads_nothing() -> None:
    collector = RecordingCollector(set())
    assert (
        collect([], collector=collector, cert_serial="01", router_probe=never_probe, router_credentials=None)
        == []
    )
    assert collector.calls == []


@pytest.mark.parametrize("item", [i for i in Item if i in METHOD_OF])
def test_each_item_alone_calls_only_its_method(item: Item) -> None:
    collector = RecordingCollector({METHOD_OF[item]})
    results = collect(
        [item], collector=collector, cert_serial=None, router_probe=never_probe, router_credentials=None
    )
    assert collector.calls == [METHOD_OF[item]]
    assert results == [ItemResult.ok(item, f"value of {METHOD_OF[item]}")]


def test_failures_are_isolated() -> None:
    collector = RecordingCollector(
        set(METHOD_OF.values()),
        broken={"cpu": RuntimeError("boom"), "volume_serial": ItemUnavailable("overlay root has no UUID")},
    )
    results = {
        r.item: r
        for r in collect(
            list(Item), collector=collector, cert_serial="ab:CD", router_probe=None, router_credentials=None
        )
    }
    assert len(results) == 11
    assert results[Item.CPU].to_wire() == {
        "item": "cpu",
        "available": False,
        "value": None,
        "reason": "collector failed: RuntimeError: boom",
    }
    assert results[Item.VOLUME_SERIAL].reason == "overlay root has no UUID"
    assert results[Item.MEMORY].available
    assert results[Item.CERT_ID].value == "ABCD"
    assert results[Item.ROUTER].reason == "router discovery was not run"


def test_non_json_value_from_collector_becomes_unavailable() -> None:
    class Bad(RecordingCollector):
        def memory(self) -> JsonValue:
            return {"total": float("nan")}

    results = collect(
        [Item.MEMORY], collector=Bad(set()), cert_serial=None, router_probe=None, router_credentials=None
    )
    assert not results[0].available
    assert "JSON-safe" in (results[0].reason or "")


def test_cert_id() -> None:
    collector = RecordingCollector(set())
    [missing] = collect(
        [Item.CERT_ID], collector=collector, cert_serial=None, router_probe=None, router_credentials=None
    )
    assert missing.reason == "no client certificate yet (the agent is not enrolled)"
    [bad] = collect(
        [Item.CERT_ID], collector=collector, cert_serial="xyz", router_probe=None, router_credentials=None
    )
    assert not bad.available
    assert normalize_cert_serial("0x00:1f:AB") == "1FAB"
    assert normalize_cert_serial(format(0x5C0FFEE, "x")) == "5C0FFEE"
    with pytest.raises(ValueError, match="not hexadecimal"):
        normalize_cert_serial("")


def router_ok() -> ItemResult:
    return ItemResult.ok(Item.ROUTER, {"model": {"manufacturer": "NEC", "model_name": "WX3000HP"}})


def router_down() -> ItemResult:
    return ItemResult.unavailable(Item.ROUTER, "no UPnP Internet Gateway Device answered within 2 s")


def test_router_model_only() -> None:
    [r] = collect(
        [Item.ROUTER],
        collector=RecordingCollector(set()),
        cert_serial=None,
        router_probe=router_ok,
        router_credentials=None,
    )
    assert r.to_wire()["value"] == {"model": {"manufacturer": "NEC", "model_name": "WX3000HP"}}
    assert r.credentials is None


def test_router_with_typed_credentials() -> None:
    creds = RouterCredentials("admin", "typed-by-subscriber")
    [r] = collect(
        [Item.ROUTER],
        collector=RecordingCollector(set()),
        cert_serial=None,
        router_probe=router_ok,
        router_credentials=creds,
    )
    assert r.to_wire()["value"] == {
        "model": {"manufacturer": "NEC", "model_name": "WX3000HP"},
        "credentials": {"account": "admin", "password": "typed-by-subscriber"},
    }


def test_router_credentials_without_model() -> None:
    creds = RouterCredentials("admin", "pw")
    [r] = collect(
        [Item.ROUTER],
        collector=RecordingCollector(set()),
        cert_serial=None,
        router_probe=router_down,
        router_credentials=creds,
    )
    assert r.available
    assert r.to_wire()["value"] == {
        "model": None,
        "model_reason": "no UPnP Internet Gateway Device answered within 2 s",
        "credentials": {"account": "admin", "password": "pw"},
    }


def test_router_probe_exception_is_contained() -> None:
    def explode() -> ItemResult:
        raise OSError("network unreachable")

    [r] = collect(
        [Item.ROUTER],
        collector=RecordingCollector(set()),
        cert_serial=None,
        router_probe=explode,
        router_credentials=None,
    )
    assert not r.available
    assert r.reason == "collector failed: OSError: network unreachable"


def test_default_collector_matches_platform() -> None:
    collector = default_collector()
    assert isinstance(collector, PlatformCollector)
    if sys.platform.startswith("linux"):
        assert isinstance(collector, LinuxCollector)
