"""Migrations: an existing broker.sqlite3 is upgraded in place; migrating is atomic and idempotent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from broker.auditkey import load_or_create_audit_key
from broker.sqlite_store import SQLiteStore
from broker.storage import MIGRATIONS, StoreError, keyed_chain, open_database, open_storage
from broker.storage.migrations import Migration, applied_versions, migrate
from broker.store import CertificateRecord, SubscriberStatus

LATEST = [m.number for m in MIGRATIONS]


def _old_broker_file(path: Path) -> None:
    """A database as today's broker leaves it: contracts, a PC, an operator, inventory, audit."""
    store = SQLiteStore(path)
    try:
        store.add_subscriber("C-1", now=10.0, actor="admin")
        store.add_subscriber("C-2", now=11.0, actor="admin")
        store.add_enrollment_token("C-1", "h1", now=12.0, expires_at=1000.0, actor="admin")
        store.add_enrollment_token("C-1", "h2", now=12.5, expires_at=1000.0, actor="admin")
        store.complete_enrollment(
            "h1",
            CertificateRecord(
                serial="0a",
                contract_id="C-1",
                machine_name="pc",
                cert_pem="PEM",
                issued_at=13.0,
                not_after=99999.0,
            ),
            now=13.0,
        )
        store.set_online("0a", online=True, now=14.0, peer="127.0.0.1", node="n1")
        store.add_operator(
            "alice",
            display_name="Alice",
            role="admin",
            password_hash="argon",
            totp_secret_blob=b"blob",
            now=15.0,
            actor="admin",
        )
        store.save_inventory(
            contract_id="C-1",
            serial="0a",
            session_id="b1",
            items=["os"],
            items_blob=b"\x00enc",
            credentials_blob=None,
            now=16.0,
        )
        store.set_meta("public_url", "wss://old")
    finally:
        store.close()


async def test_a_database_of_todays_broker_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "broker.sqlite3"
    _old_broker_file(path)
    chain = keyed_chain(load_or_create_audit_key(tmp_path).chain)  # today's store made the key file

    storage = await open_storage(path, chain=chain)
    try:
        async with storage.db.read() as tx:
            assert await applied_versions(tx) == LATEST
        report = await storage.audit.verify()
        assert report.ok, report.problems
        old_entries = report.checked
        assert [s.contract_id for s in await storage.subscribers.list_all()] == ["C-1", "C-2"]
        assert (await storage.certificates.get("0a")) is not None
        agents = await storage.presence.list_agents()
        assert [(a.serial, a.online) for a in agents] == [("0a", True)]
        operator = await storage.operators.get("alice")
        assert operator is not None
        assert operator.totp_secret_blob == b"blob"
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
        assert report.checked == old_entries + 2
    finally:
        await storage.close()

    again = await open_storage(path, chain=chain)  # nothing left to apply
    await again.close()
    old = SQLiteStore(path)  # and today's store still reads the upgraded file
    try:
        assert old.verify_audit().ok
        token = old.get_enrollment_token("h2")
        assert token is not None
        assert token.used_at == 20.0
    finally:
        old.close()


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


async def test_todays_store_and_the_new_layer_share_one_file_and_one_chain(tmp_path: Path) -> None:
    """During the move the admin CLI may still be the old one: both append to one chain."""
    path = tmp_path / "broker.sqlite3"
    old = SQLiteStore(path)
    storage = await open_storage(path, chain=keyed_chain(old.audit_key.chain))
    try:

        def old_appends() -> None:
            for i in range(30):
                old.append_audit(actor="old", action="x", subject="s", details={"i": i}, now=float(i))

        await asyncio.gather(
            asyncio.to_thread(old_appends),
            *(
                storage.audit.append(actor="new", action="x", subject="s", details={"i": i}, now=1.0)
                for i in range(30)
            ),
        )
        report = await storage.audit.verify()
        assert report.ok, report.problems
        assert report.checked == 60
        assert old.verify_audit().ok
    finally:
        old.close()
        await storage.close()
