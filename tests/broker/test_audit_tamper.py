"""Issue 11 item 8: an attacker with write access to the SQLite file, and ``audit verify`` as the
admin runs it (a real ``python -m broker`` process). Each edit is what someone with ``sqlite3``
does: triggers dropped, rows deleted, the head moved, the public SHA-256 chain recomputed."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from broker.audit import BREAK_ACTION, GENESIS_HASH, KEYED_ACTION, entry_hash
from broker.auditkey import AUDIT_KEY_FILE, load_or_create_audit_key
from broker.checkpoints import CHECKPOINT_FILE, Checkpointer
from broker.storage import Storage, keyed_chain, open_storage
from tests.helpers import PYTHON, ROOT, child_env

T = TypeVar("T")

T0 = 1_743_500_000.0


async def _fill(storage: Storage, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        await storage.audit.append(
            actor="admin", action="test.entry", subject="C1", details={"i": i}, now=T0 + i
        )


async def _broker_storage(data_dir: Path) -> Storage:
    """The storage as the broker and every admin command open it: the data dir's audit key (created
    on the first start), and an old unkeyed chain given its transition then (broker/cli.py)."""
    key = load_or_create_audit_key(data_dir)
    storage = await open_storage(data_dir / "broker.sqlite3", chain=keyed_chain(key.chain))
    await storage.audit.adopt_key(created=key.created)
    return storage


def _on_broker_storage(data_dir: Path, use: Callable[[Storage], Awaitable[T]]) -> T:
    async def run() -> T:
        storage = await _broker_storage(data_dir)
        try:
            return await use(storage)
        finally:
            await storage.close()

    return asyncio.run(run())


def _sql(db_path: Path, *statements: str) -> None:
    db = sqlite3.connect(db_path, isolation_level=None)
    try:
        for statement in statements:
            db.execute(statement)
    finally:
        db.close()


def _move_head(db_path: Path, seq: int, digest: str) -> None:
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'", (json.dumps([seq, digest]),))
    db.close()


def _recompute_public_chain(db_path: Path) -> None:
    """The attacker's tool: rewrite every hash with the public, unkeyed SHA-256 and move the head."""
    db = sqlite3.connect(db_path, isolation_level=None)
    try:
        db.execute("DROP TRIGGER IF EXISTS audit_no_update")
        rows = db.execute(
            "SELECT seq, at, actor, action, subject, details FROM audit ORDER BY seq"
        ).fetchall()
        prev = GENESIS_HASH
        for number, (seq, at, actor, action, subject, details) in enumerate(rows, start=1):
            digest = entry_hash(
                prev_hash=prev,
                seq=number,
                at=at,
                actor=actor,
                action=action,
                subject=subject,
                details_json=details,
            )
            db.execute(
                "UPDATE audit SET seq = ?, prev_hash = ?, hash = ? WHERE seq = ?", (number, prev, digest, seq)
            )
            prev = digest
        db.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'", (json.dumps([len(rows), prev]),))
    finally:
        db.close()


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "broker", "--data-dir", str(data_dir), "audit", *args],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def _broken(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "audit chain BROKEN" in result.stdout
    return result.stdout


async def _checkpointer(data_dir: Path, run: Callable[[Checkpointer], Awaitable[T]]) -> T:
    """``run(checkpointer)`` over the broker's storage of ``data_dir`` (as the broker does)."""
    storage = await open_storage(
        data_dir / "broker.sqlite3", chain=keyed_chain(load_or_create_audit_key(data_dir).chain)
    )
    try:
        key = load_or_create_audit_key(data_dir)
        return await run(Checkpointer(storage.audit, key, data_dir / CHECKPOINT_FILE))
    finally:
        await storage.close()


@pytest.fixture
def filled(tmp_path: Path) -> tuple[Path, Path]:
    """A data dir with 10 keyed entries and a signed checkpoint at entry 10."""
    db_path = tmp_path / "broker.sqlite3"
    _on_broker_storage(tmp_path, lambda storage: _fill(storage, 10))
    assert asyncio.run(_checkpointer(tmp_path, lambda c: c.write(T0 + 100))) is not None
    return tmp_path, db_path


def test_intact_log_verifies_through_the_cli(filled: tuple[Path, Path]) -> None:
    data_dir, _ = filled
    result = _cli(data_dir, "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "audit chain OK (10 entries; 1 signed checkpoints" in result.stdout
    assert (data_dir / AUDIT_KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert (data_dir / CHECKPOINT_FILE).stat().st_mode & 0o777 == 0o600


def test_key_is_not_in_the_database(filled: tuple[Path, Path]) -> None:
    data_dir, db_path = filled
    key_text = (data_dir / AUDIT_KEY_FILE).read_bytes().strip()
    assert key_text not in db_path.read_bytes()


def test_cut_tail_with_moved_head_is_caught_by_the_checkpoints(filled: tuple[Path, Path]) -> None:
    data_dir, db_path = filled
    db = sqlite3.connect(db_path)
    eight = db.execute("SELECT hash FROM audit WHERE seq = 8").fetchone()[0]
    db.close()
    _sql(
        db_path,
        "DROP TRIGGER audit_no_delete",
        "DELETE FROM audit WHERE seq > 8",
    )
    _move_head(db_path, 8, eight)
    out = _broken(_cli(data_dir, "verify", "--checkpoints", str(data_dir / CHECKPOINT_FILE)))
    assert "entry 10 is missing from the database (the log was cut short)" in out
    # The data dir's checkpoint file is used by default too.
    assert "entry 10 is missing" in _broken(_cli(data_dir, "verify"))


def test_deleted_head_row_is_reported(filled: tuple[Path, Path]) -> None:
    data_dir, db_path = filled
    _sql(db_path, "DELETE FROM meta WHERE key = 'audit_head'")
    assert "the recorded head of the chain is missing" in _broken(_cli(data_dir, "verify"))


def test_deleted_row_with_recomputed_public_chain_is_reported(filled: tuple[Path, Path]) -> None:
    data_dir, db_path = filled
    _sql(db_path, "DROP TRIGGER audit_no_delete", "DELETE FROM audit WHERE seq = 4")
    _recompute_public_chain(db_path)
    (data_dir / CHECKPOINT_FILE).unlink()  # even without checkpoints: the MACs do not verify
    out = _broken(_cli(data_dir, "verify"))
    assert "entry 1 (test.entry) was changed: its hash does not match" in out


def test_recomputed_chain_differs_from_the_checkpoint(filled: tuple[Path, Path]) -> None:
    data_dir, db_path = filled
    _sql(db_path, "DROP TRIGGER audit_no_delete", "DELETE FROM audit WHERE seq = 4")
    _recompute_public_chain(db_path)
    out = _broken(_cli(data_dir, "verify"))
    assert "entry 10 is missing from the database" in out


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("not json", "the recorded head of the chain is malformed (not JSON"),
        ('[10, "short"]', "the recorded head of the chain is malformed (not [seq, 64 hex digits]"),
        (f'[{2**63 - 1}, "{"a" * 64}"]', "the recorded head of the chain is malformed"),
        ('{"seq": 10}', "the recorded head of the chain is malformed"),
        ("[[[[[[[[[[", "the recorded head of the chain is malformed"),
    ],
)
def test_malformed_head_is_reported_not_a_traceback(
    filled: tuple[Path, Path], value: str, expected: str
) -> None:
    data_dir, db_path = filled
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'", (value,))
    db.close()
    assert expected in _broken(_cli(data_dir, "verify"))


def test_malformed_timestamp_and_details_are_reported(filled: tuple[Path, Path]) -> None:
    data_dir, db_path = filled
    _sql(
        db_path,
        "DROP TRIGGER audit_no_update",
        "UPDATE audit SET at = 'yesterday' WHERE seq = 3",
        "UPDATE audit SET at = 1e300 WHERE seq = 4",
        "UPDATE audit SET details = '{not json' WHERE seq = 5",
        "UPDATE audit SET actor = x'1b5b324a' WHERE seq = 6",
    )
    out = _broken(_cli(data_dir, "verify"))
    assert "entry 3 (test.entry) is malformed: malformed timestamp" in out
    assert "entry 4 (test.entry) was changed" in out
    assert "entry 5 (test.entry): its details are not valid JSON" in out
    assert "entry 6 (test.entry) is malformed: actor is not text" in out
    log = _cli(data_dir, "log")
    assert log.returncode == 0, log.stderr
    assert "Traceback" not in log.stderr
    assert "\x1b" not in log.stdout


def test_append_after_a_cut_tail_records_the_break_instead_of_laundering(
    filled: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    data_dir, db_path = filled
    (data_dir / CHECKPOINT_FILE).unlink()  # the chain alone must show it
    _sql(db_path, "DROP TRIGGER audit_no_delete", "DELETE FROM audit WHERE seq > 7")

    async def append_then_more(storage: Storage) -> None:
        with caplog.at_level(logging.ERROR, logger="broker.storage.audit"):
            seq = await storage.audit.append(
                actor="admin", action="after.cut", subject="C1", details={}, now=T0 + 50
            )
        assert "AUDIT LOG DAMAGED: the recorded head is entry 10 but the last entry is 7" in caplog.text
        entries = await storage.audit.entries()
        assert [(e.seq, e.action) for e in entries[-2:]] == [(11, BREAK_ACTION), (12, "after.cut")]
        assert seq == 12
        report = await storage.audit.verify()
        assert not report.ok
        assert "entry 8–10 deleted (sequence jumps to 11)" in report.problems
        assert any("the broker found the chain damaged" in p for p in report.problems)
        # Later appends chain normally onto the recorded break; the break stays reported.
        await _fill(storage, 3, start=100)
        assert [e.action for e in await storage.audit.entries()].count(BREAK_ACTION) == 1
        assert not (await storage.audit.verify()).ok

    _on_broker_storage(data_dir, append_then_more)
    assert "entry 8–10 deleted" in _broken(_cli(data_dir, "verify"))


def test_append_after_a_forged_last_row_records_the_break(filled: tuple[Path, Path]) -> None:
    data_dir, db_path = filled
    db = sqlite3.connect(db_path, isolation_level=None)
    prev = db.execute("SELECT hash FROM audit WHERE seq = 10").fetchone()[0]
    forged = entry_hash(
        prev_hash=prev, seq=11, at=T0 + 11, actor="admin", action="x", subject="C1", details_json="{}"
    )
    db.execute("INSERT INTO audit VALUES (11, ?, 'admin', 'x', 'C1', '{}', ?, ?)", (T0 + 11, prev, forged))
    db.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'", (json.dumps([11, forged]),))
    db.close()

    async def append(storage: Storage) -> None:
        await storage.audit.append(actor="admin", action="next", subject="C1", details={}, now=T0 + 60)
        actions = [e.action for e in await storage.audit.entries()]
        assert actions[-2:] == [BREAK_ACTION, "next"]
        assert "entry 11 (x) was changed: its hash does not match" in (await storage.audit.verify()).problems

    _on_broker_storage(data_dir, append)


def test_forged_checkpoint_line_is_reported(filled: tuple[Path, Path]) -> None:
    data_dir, _ = filled
    path = data_dir / CHECKPOINT_FILE
    line = json.loads(path.read_text().splitlines()[0])
    line["seq"] = 9
    with path.open("a") as f:
        f.write(json.dumps(line) + "\n")
        f.write("garbage\n")
    out = _broken(_cli(data_dir, "verify"))
    assert "checkpoint line 2: signature does not verify (forged or edited)" in out
    assert "checkpoint line 3: not JSON" in out


def test_broker_start_records_a_database_behind_its_last_checkpoint(filled: tuple[Path, Path]) -> None:
    data_dir, db_path = filled
    db = sqlite3.connect(db_path)
    six = db.execute("SELECT hash FROM audit WHERE seq = 6").fetchone()[0]
    db.close()
    _sql(
        db_path,
        "DROP TRIGGER audit_no_delete",
        "DELETE FROM audit WHERE seq > 6",
    )
    _move_head(db_path, 6, six)
    assert not asyncio.run(_checkpointer(data_dir, lambda c: c.check_last(T0 + 200)))
    last = _on_broker_storage(data_dir, lambda storage: storage.audit.entries())[-1]
    assert last.action == BREAK_ACTION
    assert "entry 10 of the last signed checkpoint is missing" in last.details["reason"]


# -- migration of a chain written before the key ------------------------------------------------------


def _old_database(db_path: Path, n: int) -> None:
    """A database as the broker wrote it before the audit key: public SHA-256 chain, no key file."""

    async def schema() -> None:
        await (await open_storage(db_path)).close()  # the tables, nothing else (no key file)

    asyncio.run(schema())
    assert not (db_path.parent / AUDIT_KEY_FILE).exists()
    db = sqlite3.connect(db_path, isolation_level=None)
    prev = GENESIS_HASH
    for seq in range(1, n + 1):
        digest = entry_hash(
            prev_hash=prev, seq=seq, at=T0 + seq, actor="admin", action="old", subject="C1", details_json="{}"
        )
        db.execute(
            "INSERT INTO audit VALUES (?, ?, 'admin', 'old', 'C1', '{}', ?, ?)", (seq, T0 + seq, prev, digest)
        )
        prev = digest
    db.execute("INSERT INTO meta VALUES ('audit_head', ?)", (json.dumps([n, prev]),))
    db.close()


def test_old_unkeyed_chain_is_verified_up_to_a_keyed_transition(tmp_path: Path) -> None:
    db_path = tmp_path / "broker.sqlite3"
    _old_database(db_path, 5)

    async def first_start(storage: Storage) -> None:  # creates the key, writes the transition
        await _fill(storage, 3)
        entries = await storage.audit.entries()
        assert entries[5].action == KEYED_ACTION
        assert entries[5].details["unkeyed_entries"] == 5
        report = await storage.audit.verify()
        assert report.ok, report.problems
        assert report.checked == 9

    _on_broker_storage(tmp_path, first_start)
    # The unkeyed part is still tamper-evident: the keyed transition pins its last hash.
    _sql(db_path, "DROP TRIGGER audit_no_update", "UPDATE audit SET action = 'other' WHERE seq = 2")
    db = sqlite3.connect(db_path, isolation_level=None)
    prev = GENESIS_HASH
    for seq, at, actor, action, subject, details in db.execute(
        "SELECT seq, at, actor, action, subject, details FROM audit WHERE seq <= 5 ORDER BY seq"
    ).fetchall():
        digest = entry_hash(
            prev_hash=prev, seq=seq, at=at, actor=actor, action=action, subject=subject, details_json=details
        )
        db.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, seq))
        prev = digest
    db.close()
    assert "entry 6: link to the previous entry is broken" in _broken(_cli(tmp_path, "verify"))


def test_keyed_part_cut_off_is_not_migrated_again(tmp_path: Path) -> None:
    db_path = tmp_path / "broker.sqlite3"
    _old_database(db_path, 4)
    _on_broker_storage(tmp_path, lambda storage: storage.audit.head())  # transition at 5, key file exists
    db = sqlite3.connect(db_path)
    four = db.execute("SELECT hash FROM audit WHERE seq = 4").fetchone()[0]
    db.close()
    # The attacker removes the keyed part, leaving a whole unkeyed chain.
    _sql(
        db_path,
        "DROP TRIGGER audit_no_delete",
        "DELETE FROM audit WHERE seq >= 5",
    )
    _move_head(db_path, 4, four)
    assert "entry 1 (old) was changed" in _broken(_cli(tmp_path, "verify"))

    async def next_start(storage: Storage) -> None:  # the key exists now: no second transition
        await storage.audit.append(actor="admin", action="next", subject="C1", details={}, now=T0 + 60)
        assert [e.action for e in await storage.audit.entries()][-2:] == [BREAK_ACTION, "next"]
        assert not (await storage.audit.verify()).ok

    _on_broker_storage(tmp_path, next_start)


def test_a_file_that_is_not_a_database_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "broker.sqlite3").write_bytes(b"this is not sqlite" * 100)
    result = _cli(tmp_path, "verify")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "error [internal]: the database cannot be read" in result.stderr


def test_dropped_audit_table_is_reported(filled: tuple[Path, Path]) -> None:
    data_dir, db_path = filled
    _sql(db_path, "DROP TABLE audit")
    out = _broken(_cli(data_dir, "verify"))
    assert "entries after 0 up to 10 deleted" in out


async def test_the_consoles_verify_uses_the_checkpoints_too(tmp_path: Path) -> None:
    from broker.core import OperatorPeer
    from protocol.messages import AuditVerified, AuditVerify
    from tests.broker.core.driver import Recorder
    from tests.helpers import in_process_broker

    async with in_process_broker(tmp_path / "data") as running:
        await _fill(running.broker.storage, 6)
        assert await running.broker.checkpoints.write(T0 + 10) is not None
        db_path = running.config.db_path
        db = sqlite3.connect(db_path)
        four = db.execute("SELECT hash FROM audit WHERE seq = 4").fetchone()[0]
        db.close()
        _sql(db_path, "DROP TRIGGER audit_no_delete", "DELETE FROM audit WHERE seq > 4")
        _move_head(db_path, 4, four)
        out = Recorder()
        sup = OperatorPeer(peer=out, address="::1", name="sam", display_name="Sam", role="supervisor")
        running.broker.sessions.operator_message(sup, AuditVerify(id="v1"))
        for _ in range(500):  # answered by a task of the session host (the check runs in a thread)
            if any(isinstance(m, AuditVerified) for m in out.messages):
                break
            await asyncio.sleep(0.01)
        answer = out.last(AuditVerified)
        assert isinstance(answer, AuditVerified)
        assert not answer.ok
        assert any("is missing from the database (the log was cut short)" in p for p in answer.problems)


def test_a_head_pushed_to_the_end_of_the_integer_range_does_not_stop_auditing(
    filled: tuple[Path, Path],
) -> None:
    _, db_path = filled
    _move_head(db_path, 2**63 - 1, "a" * 64)

    async def append(storage: Storage) -> None:
        seq = await storage.audit.append(actor="admin", action="next", subject="C1", details={}, now=T0 + 60)
        assert seq == 12  # the break entry is 11, after the last real row
        assert not (await storage.audit.verify()).ok

    _on_broker_storage(db_path.parent, append)


# -- the same rules on the broker's storage (broker.storage), through the admin CLI -------------------


def test_an_admin_command_after_a_cut_tail_records_the_break(filled: tuple[Path, Path]) -> None:
    """``subscriber add`` appends with broker.storage: onto a deleted tail it records the damage first."""
    data_dir, db_path = filled
    (data_dir / CHECKPOINT_FILE).unlink()  # the chain alone must show it
    _sql(db_path, "DROP TRIGGER audit_no_delete", "DELETE FROM audit WHERE seq > 7")
    added = _admin(data_dir, "subscriber", "add", "C-AFTER")
    assert added.returncode == 0, added.stderr
    assert "AUDIT LOG DAMAGED: the recorded head is entry 10 but the last entry is 7" in added.stderr
    actions = [(e.seq, e.action) for e in _on_broker_storage(data_dir, lambda st: st.audit.entries())]
    assert actions[-3:] == [(11, BREAK_ACTION), (12, "subscriber.add"), (13, "token.issue")]
    out = _broken(_cli(data_dir, "verify"))
    assert "entry 8–10 deleted (sequence jumps to 11)" in out
    assert "the broker found the chain damaged" in out


def test_an_old_unkeyed_chain_gets_its_transition_from_the_first_admin_command(tmp_path: Path) -> None:
    db_path = tmp_path / "broker.sqlite3"
    _old_database(db_path, 5)
    assert not (tmp_path / AUDIT_KEY_FILE).exists()
    added = _admin(tmp_path, "subscriber", "add", "C-NEW")  # creates the key, keys the chain
    assert added.returncode == 0, added.stderr
    result = _cli(tmp_path, "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "audit chain OK (8 entries" in result.stdout  # 5 old, the transition, 2 new
    db = sqlite3.connect(db_path)
    try:
        assert db.execute("SELECT action FROM audit WHERE seq = 6").fetchone()[0] == KEYED_ACTION
    finally:
        db.close()


def _admin(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "broker", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=ROOT,
        timeout=60,
        check=False,
    )
