"""別紙5 inventory end to end: per-item consent in a session, only granted items collected and
sent, stored encrypted, router login shown only by an audited "reveal", purge after retention,
and a local preview that sends nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from helpdesk import HelpdeskClient
from protocol.messages import InventoryView
from tests.agent.inventory.gateway import FakeGateway, ssdp_reply
from tests.helpers import BrokerProcess, add_operator, enrolled_agent, login, run_agent, start_support

pytestmark = pytest.mark.e2e


def _rows(broker: BrokerProcess, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(broker.data_dir / "broker.sqlite3")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _os_release_name() -> str:
    text = Path("/etc/os-release").read_text()
    line = next(line for line in text.splitlines() if line.startswith("PRETTY_NAME="))
    return line.split("=", 1)[1].strip('"')


async def test_only_granted_items_are_sent_and_stored_encrypted(
    broker: BrokerProcess, tmp_path: Path, gateway: FakeGateway
) -> None:
    gateway.replies = lambda port: [ssdp_reply(f"http://127.0.0.1:{port}/rootDesc.xml")]
    enrolled_agent(broker, tmp_path / "agent", "C-800")
    alice = add_operator(broker, "alice")
    host, port = gateway.target
    support = start_support(tmp_path / "agent", "--test-pattern", "--router-target", f"{host}:{port}")
    try:
        code = support.support_code()
        async with HelpdeskClient(broker.url, cafile=broker.data_dir / "ca.pem") as op:
            await login(op, alice)
            scopes = ["screen:view", "inventory:os", "inventory:memory", "inventory:router"]
            session = (await op.claim(code=code, scopes=scopes)).session_id
            prompt = support.wait_for("Collect: ")
            # 別紙5: refusing changes nothing about the service, and the prompt says so.
            assert "the service is not limited in any way" in prompt
            await op.watch(session)
            support.type("2,4")  # OS and router; not the screen, not the memory size
            state = await op.wait_state(session, lambda s: s.scopes.get("inventory:memory") == "denied")
            assert state.scopes["screen:view"] == "denied"
            assert state.scopes["inventory:os"] == "granted"
            support.wait_for("Router login account")
            support.type("admin")
            support.wait_for("Router login password")
            support.type("s3cret-Router-pw")
            view = await op.next_event(InventoryView, timeout=30)
            assert isinstance(view, InventoryView)
            assert [item.item for item in view.items] == ["os", "router"]
            router = next(item for item in view.items if item.item == "router")
            assert router.value["model"]["model_name"] == "WX3000HP"
            assert "credentials" not in router.value  # never in the plain view
            assert view.has_router_credentials
            assert op.screen.empty()

            revealed = await op.reveal_credentials(session)
            assert (revealed.account, revealed.password) == ("admin", "s3cret-Router-pw")
            await op.end(session)
            await op.wait_state(session, lambda s: s.phase == "ended")
    finally:
        support.stop()

    raw = (broker.data_dir / "broker.sqlite3").read_bytes()
    for secret in (b"s3cret-Router-pw", b"WX3000HP", _os_release_name().encode()):
        assert secret not in raw, secret
    actions = [r[0] for r in _rows(broker, "SELECT action FROM audit")]
    assert "inventory.received" in actions
    reveal = _rows(broker, "SELECT actor, subject FROM audit WHERE action = 'inventory.reveal'")
    assert reveal == [("operator:alice", session)]

    shown = broker.cli("inventory", "show", "C-800").stdout
    assert _os_release_name() in shown
    assert "s3cret-Router-pw" not in shown
    assert "--reveal" in shown
    revealed_cli = broker.cli("inventory", "show", "C-800", "--reveal").stdout
    assert "admin / s3cret-Router-pw" in revealed_cli
    reveals = _rows(broker, "SELECT COUNT(*) FROM audit WHERE action = 'inventory.reveal'")
    assert reveals == [(2,)]


def test_purge_deletes_inventory_of_terminated_contracts_after_retention(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    import asyncio

    enrolled_agent(broker, tmp_path / "agent", "C-900")
    bob = add_operator(broker, "bob")
    support = start_support(tmp_path / "agent", "--test-pattern")

    async def session() -> None:
        async with HelpdeskClient(broker.url, cafile=broker.data_dir / "ca.pem") as op:
            await login(op, bob)
            sid = (await op.claim(code=support.support_code(), scopes=["inventory:cpu"])).session_id
            await op.watch(sid)
            support.wait_for("Collect: ")
            support.type("a")
            await op.next_event(InventoryView, timeout=30)
            await op.end(sid)

    try:
        asyncio.run(session())
    finally:
        support.stop()
    assert _rows(broker, "SELECT COUNT(*) FROM inventory") == [(1,)]
    broker.cli("subscriber", "terminate", "C-900")
    kept = broker.cli("inventory", "purge").stdout  # default retention: 90 days
    assert "0 terminated contract" in kept
    assert _rows(broker, "SELECT COUNT(*) FROM inventory") == [(1,)]
    purged = broker.cli("inventory", "purge", "--retention-days", "0").stdout
    assert "C-900" in purged
    assert _rows(broker, "SELECT COUNT(*) FROM inventory") == [(0,)]
    assert _rows(broker, "SELECT subject FROM audit WHERE action = 'inventory.purge'") == [("C-900",)]
    assert "audit chain OK" in broker.cli("audit", "verify").stdout


def test_preview_shows_values_and_sends_nothing(
    broker: BrokerProcess, tmp_path: Path, gateway: FakeGateway
) -> None:
    gateway.replies = lambda port: [ssdp_reply(f"http://127.0.0.1:{port}/rootDesc.xml")]
    serial = enrolled_agent(broker, tmp_path / "agent", "C-950")
    host, port = gateway.target
    result = run_agent(
        tmp_path / "agent", "inventory", "--preview", "--router-target", f"{host}:{port}", lang="ja"
    )
    assert result.returncode == 0, result.stderr
    assert _os_release_name() in result.stdout
    assert "WX3000HP" in result.stdout
    assert serial.upper().lstrip("0") in result.stdout.upper()
    assert "メモリ" in result.stdout  # Japanese labels
    assert _rows(broker, "SELECT COUNT(*) FROM inventory") == [(0,)]
