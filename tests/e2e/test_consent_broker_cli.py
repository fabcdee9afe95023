"""Issue 11 item 10: strings an agent (or an admin) sets reach the admin's terminal escaped.

A real agent enrolls with a machine name full of terminal controls; the real admin CLI's output
bytes must carry none of them, only their visible escapes (protocol.text.safe_text)."""

from __future__ import annotations

import time
from pathlib import Path

from broker.datakeys import DataKeyring
from broker.inventory import InventoryVault
from broker.sqlite_store import SQLiteStore
from protocol.messages import InventoryItem, InventoryReport
from tests.helpers import BrokerProcess, run_agent

EVIL = "pc\x1b[2J\x1b]0;owned\x07\u202eexe.txt\r\nfake line"
RAW = ("\x1b", "\x07", "\u202e", "\r", "fake line\n")


def _clean(text: str) -> None:
    for raw in RAW:
        assert raw not in text, repr(raw)


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
    store = SQLiteStore(broker.data_dir / "broker.sqlite3")
    try:
        InventoryVault(store, DataKeyring.open(broker.data_dir / "keys")).save(
            contract_id="C-200",
            serial=serial,
            report=InventoryReport(
                id="i1",
                session_id="sessionAAAA",
                items=(InventoryItem(item="os", available=True, value=EVIL),),
                router_account="admin\x1b[8m",
                router_password="pw\u202e",
            ),
            now=time.time(),
        )
    finally:
        store.close()
    out = broker.cli("inventory", "show", "C-200", "--reveal").stdout
    _clean(out)
    assert "\\u202eexe.txt" in out
    assert "admin\\x1b[8m / pw\\u202e" in out
