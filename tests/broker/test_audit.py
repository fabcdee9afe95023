"""The audit log's hash chain: pure functions, then tampering with a real SQLite file under the
broker's storage (``broker.storage``, keyed as the broker keys it)."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest

from broker.audit import GENESIS_HASH, canonical_details, entry_hash, verify_chain
from broker.storage import Storage, repo_audit
from tests.broker.conftest import open_broker_storage

T0 = 1_743_500_000.0

Row = tuple[int, float, str, str, str, str, str, str]


def _chain(n: int) -> list[Row]:
    rows: list[Row] = []
    prev = GENESIS_HASH
    for seq in range(1, n + 1):
        details = canonical_details({"n": seq, "名前": "山田"})
        digest = entry_hash(
            prev_hash=prev,
            seq=seq,
            at=T0 + seq,
            actor="admin",
            action="x.y",
            subject="C1",
            details_json=details,
        )
        rows.append((seq, T0 + seq, "admin", "x.y", "C1", details, prev, digest))
        prev = digest
    return rows


# -- pure ------------------------------------------------------------------------------------------


def test_canonical_details_is_order_independent_and_compact() -> None:
    assert canonical_details({"b": 1, "a": "名"}) == canonical_details({"a": "名", "b": 1})
    assert canonical_details({"b": 1, "a": "名"}) == '{"a":"名","b":1}'


def test_entry_hash_depends_on_every_field() -> None:
    base = {
        "prev_hash": GENESIS_HASH,
        "seq": 1,
        "at": T0,
        "actor": "admin",
        "action": "subscriber.add",
        "subject": "C1",
        "details_json": "{}",
    }
    digest = entry_hash(**base)  # type: ignore[arg-type]
    assert len(digest) == 64
    assert int(digest, 16) >= 0
    changes: dict[str, object] = {
        "prev_hash": "1" * 64,
        "seq": 2,
        "at": T0 + 0.001,
        "actor": "cli",
        "action": "subscriber.terminate",
        "subject": "C2",
        "details_json": '{"a":1}',
    }
    for key, value in changes.items():
        assert entry_hash(**{**base, key: value}) != digest, key  # type: ignore[arg-type]


def test_entry_hash_treats_int_and_float_time_alike() -> None:
    # SQLite may hand back 1743500000 as int or float; the hash must not care.
    kwargs = {
        "prev_hash": GENESIS_HASH,
        "seq": 1,
        "actor": "a",
        "action": "b",
        "subject": "c",
        "details_json": "{}",
    }
    assert entry_hash(at=1_743_500_000, **kwargs) == entry_hash(at=1_743_500_000.0, **kwargs)  # type: ignore[arg-type]


def test_fields_cannot_be_shifted_between_each_other() -> None:
    kwargs = {"prev_hash": GENESIS_HASH, "seq": 1, "at": T0, "details_json": "{}"}
    one = entry_hash(actor="ab", action="c", subject="", **kwargs)  # type: ignore[arg-type]
    two = entry_hash(actor="a", action="bc", subject="", **kwargs)  # type: ignore[arg-type]
    assert one != two


def test_intact_chain_verifies() -> None:
    rows = _chain(5)
    report = verify_chain(rows, head=(5, rows[-1][7]))
    assert report.ok
    assert report.checked == 5
    assert report.problems == []


def test_empty_chain_verifies() -> None:
    report = verify_chain([], head=None)
    assert report.ok
    assert report.checked == 0


def test_empty_chain_with_a_head_reports_deletion() -> None:
    report = verify_chain([], head=(3, "a" * 64))
    assert not report.ok
    assert report.problems == ["entries after 0 up to 3 deleted"]


def test_changed_entry_is_reported() -> None:
    rows = _chain(4)
    seq, at, actor, action, subject, _, prev, digest = rows[2]
    rows[2] = (seq, at, actor, action, subject, '{"n":999}', prev, digest)
    report = verify_chain(rows, head=(4, rows[-1][7]))
    assert report.problems == ["entry 3 (x.y) was changed: its hash does not match"]


def test_deleted_middle_entries_are_reported() -> None:
    rows = _chain(6)
    del rows[2:4]  # entries 3 and 4
    report = verify_chain(rows, head=(6, rows[-1][7]))
    assert report.problems == [
        "entry 3–4 deleted (sequence jumps to 5)",
        "entry 5: link to the previous entry is broken",
    ]


def test_head_mismatch_is_reported() -> None:
    rows = _chain(3)
    report = verify_chain(rows, head=(3, "f" * 64))
    assert report.problems == ["the recorded head of the chain does not match the last entry"]


# -- a real SQLite file (the broker's storage) --------------------------------------------------------


async def _fill(storage: Storage, n: int) -> None:
    for i in range(n):
        await storage.audit.append(
            actor="admin", action="test.entry", subject=f"C{i % 3}", details={"i": i}, now=T0 + i
        )


def _tamper(db_path: Path, *statements: str) -> None:
    """What someone with the file does: a separate connection, triggers dropped first."""
    db = sqlite3.connect(db_path, isolation_level=None)
    try:
        for statement in statements:
            db.execute(statement)
    finally:
        db.close()


async def test_two_storages_on_one_file_keep_one_chain(db_path: Path) -> None:
    """The broker and the admin CLI: two processes' worth of connections appending in turn."""
    broker = await open_broker_storage(db_path)
    cli = await open_broker_storage(db_path)
    try:
        for i in range(40):
            writer = broker if i % 3 else cli
            seq = await writer.audit.append(
                actor="broker" if writer is broker else "cli",
                action="test.entry",
                subject="C1",
                details={"i": i},
                now=T0 + i,
            )
            assert seq == i + 1
        for reader in (broker, cli):
            report = await reader.audit.verify()
            assert report.ok, report.problems
            assert report.checked == 40
        entries = await cli.audit.entries()
        assert [e.seq for e in entries] == list(range(1, 41))
        assert entries[0].prev_hash == GENESIS_HASH
        assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
        assert {e.actor for e in entries} == {"broker", "cli"}
    finally:
        await broker.close()
        await cli.close()


async def test_verify_reads_one_snapshot_while_another_connection_appends(db_path: Path) -> None:
    """An entry appended by another connection between verify's read of the head and its read of
    the rows must not make an intact chain look broken ("the recorded head of the chain does not
    match the last entry"): verify runs in one read transaction."""
    broker = await open_broker_storage(db_path)
    other = await open_broker_storage(db_path)
    try:
        await _fill(broker, 3)
        async with broker.db.read() as tx:
            assert await tx.fetchone("SELECT value FROM meta WHERE key = 'audit_head'") is not None
            appended = await other.audit.append(
                actor="broker", action="agent.refused", subject="x", details={}, now=T0
            )
            report = await repo_audit.verify(tx, broker.audit.chain)
        assert appended == 4
        assert report.ok, report.problems
        assert report.checked == 3  # the snapshot verify started with
        assert (await broker.audit.verify()).checked == 4
    finally:
        await broker.close()
        await other.close()


async def test_chain_survives_reopening(db_path: Path) -> None:
    first = await open_broker_storage(db_path)
    await _fill(first, 5)
    await first.close()
    second = await open_broker_storage(db_path)
    try:
        await _fill(second, 5)
        report = await second.audit.verify()
        assert report.ok
        assert report.checked == 10
    finally:
        await second.close()


async def test_audit_entries_by_subject(storage: Storage) -> None:
    await _fill(storage, 9)
    assert [e.details["i"] for e in await storage.audit.entries(subject="C1")] == [1, 4, 7]


async def test_triggers_refuse_update(storage: Storage, db_path: Path) -> None:
    await _fill(storage, 3)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        _tamper(db_path, "UPDATE audit SET actor = 'mallory' WHERE seq = 2")
    assert (await storage.audit.verify()).ok
    assert [e.actor for e in await storage.audit.entries()] == ["admin"] * 3


async def test_triggers_refuse_delete(storage: Storage, db_path: Path) -> None:
    await _fill(storage, 3)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        _tamper(db_path, "DELETE FROM audit WHERE seq = 3")
    assert (await storage.audit.verify()).checked == 3


async def test_edited_row_is_reported(storage: Storage, db_path: Path) -> None:
    await _fill(storage, 5)
    _tamper(
        db_path,
        "DROP TRIGGER audit_no_update",
        """UPDATE audit SET details = '{"i":999}' WHERE seq = 3""",
    )
    report = await storage.audit.verify()
    assert not report.ok
    assert report.problems == ["entry 3 (test.entry) was changed: its hash does not match"]


async def test_edited_time_is_reported(storage: Storage, db_path: Path) -> None:
    await _fill(storage, 5)
    _tamper(db_path, "DROP TRIGGER audit_no_update", "UPDATE audit SET at = at + 1 WHERE seq = 2")
    report = await storage.audit.verify()
    assert report.problems == ["entry 2 (test.entry) was changed: its hash does not match"]


async def test_deleted_middle_row_is_reported(storage: Storage, db_path: Path) -> None:
    await _fill(storage, 5)
    _tamper(db_path, "DROP TRIGGER audit_no_delete", "DELETE FROM audit WHERE seq = 3")
    report = await storage.audit.verify()
    assert report.checked == 4
    assert report.problems == [
        "entry 3 deleted (sequence jumps to 4)",
        "entry 4: link to the previous entry is broken",
    ]


async def test_deleted_first_row_is_reported(storage: Storage, db_path: Path) -> None:
    await _fill(storage, 3)
    _tamper(db_path, "DROP TRIGGER audit_no_delete", "DELETE FROM audit WHERE seq = 1")
    assert "entry 1 deleted (sequence jumps to 2)" in (await storage.audit.verify()).problems


async def test_deleted_last_row_is_reported_via_head(storage: Storage, db_path: Path) -> None:
    await _fill(storage, 5)
    _tamper(db_path, "DROP TRIGGER audit_no_delete", "DELETE FROM audit WHERE seq = 5")
    report = await storage.audit.verify()
    assert report.checked == 4
    assert report.problems == ["entries after 4 up to 5 deleted"]


async def test_every_row_deleted_is_reported_via_head(storage: Storage, db_path: Path) -> None:
    await _fill(storage, 3)
    _tamper(db_path, "DROP TRIGGER audit_no_delete", "DELETE FROM audit")
    assert (await storage.audit.verify()).problems == ["entries after 0 up to 3 deleted"]


async def test_head_is_recorded_in_meta(storage: Storage) -> None:
    await _fill(storage, 2)
    last = (await storage.audit.entries())[-1]
    assert await storage.meta.get("audit_head") == f'[2, "{last.hash}"]'
