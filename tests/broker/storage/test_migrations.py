"""Migrations: an existing broker.sqlite3 is upgraded in place; migrating is atomic and idempotent."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from broker.auditkey import AuditKey
from broker.storage import MIGRATIONS, AuditChain, StoreError, keyed_chain, open_database, open_storage
from broker.storage.migrations import Migration, applied_versions, migrate
from broker.store import SubscriberStatus

LATEST = [m.number for m in MIGRATIONS]


FIXTURES = Path(__file__).with_name("fixtures")
OLD_FILE = FIXTURES / "old_broker.sqlite3"
"""A database written by the broker before this package (``broker/sqlite_store.py``, since deleted);
``fixtures/make_old_broker_db.py`` says how it was made and what is in it."""


OLD_SECRET = bytes(range(32))
"""The script's ``AUDIT_SECRET`` (the script cannot be imported: it names the deleted store)."""


def _old_chain() -> AuditChain:
    assert "AUDIT_SECRET = bytes(range(32))" in (FIXTURES / "make_old_broker_db.py").read_text()
    return keyed_chain(AuditKey.from_secret(OLD_SECRET).chain)


async def test_a_database_of_the_old_broker_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "broker.sqlite3"
    shutil.copyfile(OLD_FILE, path)
    chain = _old_chain()
    storage = await open_storage(path, chain=chain)
    try:
        async with storage.db.read() as tx:
            assert await applied_versions(tx) == LATEST
        report = await storage.audit.verify()
        assert report.ok, report.problems
        assert report.checked == 10
        actions = [e.action for e in await storage.audit.entries()]
        assert actions[:2] == ["subscriber.add", "subscriber.add"]
        assert actions[-1] == "session.end"
        subscribers = await storage.subscribers.list_all()
        assert [(s.contract_id, s.status) for s in subscribers] == [
            ("C-1", SubscriberStatus.ACTIVE),
            ("C-2", SubscriberStatus.SUSPENDED),
        ]
        used = await storage.subscribers.get_enrollment_token("h1")
        unused = await storage.subscribers.get_enrollment_token("h2")
        assert used is not None
        assert used.used_at == 13.0
        assert unused is not None
        assert unused.used_at is None
        certificate = await storage.certificates.get("0a")
        assert certificate is not None
        assert (certificate.contract_id, certificate.machine_name, certificate.issued_at) == (
            "C-1",
            "pc",
            13.0,
        )
        agents = await storage.presence.list_agents()
        assert [(a.serial, a.online) for a in agents] == [("0a", True)]
        operator = await storage.operators.get("alice")
        assert operator is not None
        assert (operator.role, operator.totp_secret_blob) == ("admin", b"blob")
        behind = await storage.operators.by_token("t-alice")
        assert behind is not None
        assert (behind[0].name, behind[1]) == ("alice", 5000.0)
        inventory = await storage.inventory.latest("C-1")
        assert inventory is not None
        assert inventory.items_blob == b"\x00enc"
        assert await storage.meta.get("public_url") == "wss://old"

        # the new layer goes on where the old one stopped: the chain continues, terminating works
        revoked = await storage.subscribers.set_status(
            "C-1", SubscriberStatus.TERMINATED, now=20.0, actor="admin"
        )
        assert revoked == ["0a"]
        await storage.sessions.opened("b2", contract_id="C-2", serial="x", operator="alice", now=21.0)
        report = await storage.audit.verify()
        assert report.ok, report.problems
        assert report.checked == 10 + 2
        token = await storage.subscribers.get_enrollment_token("h2")
        assert token is not None
        assert token.used_at == 20.0  # voided by the termination
    finally:
        await storage.close()

    again = await open_storage(path, chain=chain)  # nothing left to apply
    try:
        assert (await again.audit.verify()).ok
    finally:
        await again.close()


async def test_migrating_twice_applies_nothing(storage_url: str) -> None:
    db = await open_database(storage_url)
    try:
        assert await migrate(db, now=1.0) == LATEST
        assert await migrate(db, now=2.0) == []
    finally:
        await db.close()


async def test_brokers_starting_together_migrate_once(storage_url: str) -> None:
    databases = [await open_database(storage_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(db, now=1.0) for db in databases))
        assert sorted(results) == [[], [], [], LATEST]
    finally:
        for db in databases:
            await db.close()


async def test_a_failing_migration_leaves_the_schema_as_it_was(storage_url: str) -> None:
    broken = Migration(
        len(MIGRATIONS) + 1,
        "a migration that fails half way",
        sqlite=("CREATE TABLE half_done (x INTEGER)", "CREATE TABLE broken ("),
        postgresql=("CREATE TABLE half_done (x INTEGER)", "CREATE TABLE broken ("),
    )
    db = await open_database(storage_url)
    try:
        await migrate(db, now=1.0)
        with pytest.raises(Exception, match=r"syntax|incomplete"):
            await migrate(db, now=2.0, migrations=(*MIGRATIONS, broken))
        async with db.read() as tx:
            assert await applied_versions(tx) == LATEST
            tables = (
                "SELECT name FROM sqlite_master WHERE name = 'half_done'"
                if tx.dialect == "sqlite"
                else "SELECT tablename FROM pg_tables WHERE tablename = 'half_done'"
            )
            assert await tx.fetchall(tables) == []
    finally:
        await db.close()


async def test_migration_numbers_must_grow(storage_url: str) -> None:
    db = await open_database(storage_url)
    try:
        with pytest.raises(ValueError, match="increasing"):
            await migrate(db, now=1.0, migrations=(MIGRATIONS[1], MIGRATIONS[0]))
    finally:
        await db.close()


@pytest.mark.parametrize(
    "url",
    ["mysql://db/broker", "sqlite://otherhost/x.db", "sqlite:///"],
)
async def test_unusable_urls_are_refused(url: str) -> None:
    with pytest.raises(StoreError):
        await open_database(url)


@pytest.mark.parametrize(
    ("url", "fault"),
    [
        ("postgresql://broker:s3cret@db.example/broker?no_such_option=1", "no_such_option"),
        ("postgresql://broker:s3cret@[::1/broker", "IPv6"),
    ],
)
async def test_a_postgresql_url_libpq_cannot_parse_is_named_without_a_password(url: str, fault: str) -> None:
    with pytest.raises(StoreError, match="not a valid PostgreSQL URL") as refused:
        await open_database(url, connect_timeout=0.5)
    assert fault in str(refused.value)
    assert "s3cret" not in str(refused.value)


async def test_a_postgresql_server_that_does_not_answer_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL"):
        await open_database("postgresql://postgres@127.0.0.1:1/nothing", connect_timeout=0.5)


async def test_sqlite_urls_and_bare_paths_name_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    first = await open_storage(f"sqlite:///{path}")
    try:
        await first.subscribers.add("C-1", now=1.0, actor="admin")
    finally:
        await first.close()
    for url in (str(path), path):
        storage = await open_storage(url)
        try:
            assert [s.contract_id for s in await storage.subscribers.list_all()] == ["C-1"]
        finally:
            await storage.close()
