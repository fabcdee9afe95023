"""Issue 11 item 10: strings an agent (or an admin) sets reach the admin's terminal escaped.

A real agent enrolls with a machine name full of terminal controls; the real admin CLI's output
bytes must carry none of them, only their visible escapes (protocol.text.safe_text)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from broker.auditkey import load_or_create_audit_key
from broker.datakeys import DataKeyring
from broker.inventory import InventoryVault
from broker.storage import keyed_chain, open_storage
from protocol.messages import InventoryItem, InventoryReport
from tests.helpers import BrokerProcess, run_agent

EVIL = "pc\x1b[2J\x1b]0;owned\x07\u202eexe.txt\r\nfake line"
RAW = ("\x1b", "\x07", "\u202e", "\r", "fake line\n")


def _clean(text: str) -> None:
    for raw in RAW:
        assert raw not in text, repr(raw)


async def _store_inventory(data_dir: Path, serial: str, report: InventoryReport) -> None:
    """As the session host stores an agent's report: encrypted, in the broker's own database."""
    key = load_or_create_audit_key(data_dir)
    storage = await open_storage(data_dir / "broker.sqlite3", chain=keyed_chain(key.chain))
    try:
        vault = InventoryVault(DataKeyring.open(data_dir / "keys"))
        await vault.store(storage, contract_id="C-200", serial=serial, report=report, now=time.time())
    finally:
        await storage.close()


def test_agent_strings_are_escaped_in_every_listing(broker: BrokerProcess, tmp_path: Path) -> None:
    result = run_agent(
        tmp_path / "agent", *broker.add_subscriber("C-200"), "--machine-name", EVIL, stdin="y\n"
    )
    assert result.returncode == 0, result.stderr
    serial = result.stdout.split("Client certificate ID: ")[1].split()[0]
    broker.cli("operator", "add", "eve", "--display-name", "Eve\x1b[31m\u202e")

    for command in (("agents",), ("cert", "list"), ("audit", "log"), ("operator", "list")):
        out = broker.cli(*command).stdout
        _clean(out)
        if command == ("audit", "log"):  # details are JSON: controls as \u001b, the bidi mark escaped
            assert "owned\\u0007\\u202eexe.txt" in out
        elif command != ("operator", "list"):
            assert "pc\\x1b[2J\\x1b]0;owned\\x07\\u202eexe.txt\\x0d\\x0afake line" in out, command
        else:
            assert "Eve\\x1b[31m\\u202e" in out
    _clean(broker.cli("subscriber", "list").stdout)

    # inventory values come from the agent too
    asyncio.run(
        _store_inventory(
            broker.data_dir,
            serial,
            InventoryReport(
                id="i1",
                session_id="sessionAAAA",
                items=(InventoryItem(item="os", available=True, value=EVIL),),
                router_account="admin\x1b[8m",
                router_password="pw\u202e",
            ),
        )
    )
    out = broker.cli("inventory", "show", "C-200", "--reveal").stdout
    _clean(out)
    assert "\\u202eexe.txt" in out
    assert "admin\\x1b[8m / pw\\u202e" in out
