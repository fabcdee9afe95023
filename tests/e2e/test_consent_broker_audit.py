"""Issue 11 item 8 with the real broker process: it writes signed checkpoints to its data dir and
to its log at start and at shutdown, and a tail cut afterwards is caught by ``audit verify``."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from broker.checkpoints import CHECKPOINT_FILE
from tests.helpers import BrokerProcess


def test_broker_checkpoints_catch_a_cut_tail(broker: BrokerProcess) -> None:
    broker.cli("subscriber", "add", "C-100")
    broker.cli("subscriber", "add", "C-101")
    assert broker.output is not None
    broker.stop()
    path: Path = broker.data_dir / CHECKPOINT_FILE
    lines = path.read_text().splitlines()
    last = json.loads(lines[-1])
    # Written at shutdown, after the broker's own last entry (broker.stop).
    db = sqlite3.connect(broker.data_dir / "broker.sqlite3")
    assert db.execute("SELECT MAX(seq), action FROM audit").fetchone() == (last["seq"], "broker.stop")
    db.close()
    assert f"audit checkpoint {lines[-1]}" in broker.output.text()
    assert broker.cli("audit", "verify").returncode == 0

    db = sqlite3.connect(broker.data_dir / "broker.sqlite3", isolation_level=None)
    keep = last["seq"] - 2
    keep_hash = db.execute("SELECT hash FROM audit WHERE seq = ?", (keep,)).fetchone()[0]
    db.execute("DROP TRIGGER audit_no_delete")
    db.execute("DELETE FROM audit WHERE seq > ?", (keep,))
    db.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'", (json.dumps([keep, keep_hash]),))
    db.close()

    result = broker.cli("audit", "verify", "--checkpoints", str(path), check=False)
    assert result.returncode == 1
    assert f"entry {last['seq']} is missing from the database (the log was cut short)" in result.stdout
    # The broker's own log (shipped off the box) holds the same signed checkpoints.
    log_copy = broker.data_dir.parent / "broker.log"
    log_copy.write_text(broker.output.text())
    result = broker.cli("audit", "verify", "--checkpoints", str(log_copy), check=False)
    assert result.returncode == 1
    assert f"entry {last['seq']} is missing from the database (the log was cut short)" in result.stdout

    # The next start notices it too, records the break in the chain and says so in its log.
    broker.start()
    assert "AUDIT LOG DAMAGED" in broker.output.text()
    log = broker.cli("audit", "log").stdout
    assert "audit.break" in log
