"""The broker's asynchronous storage: repositories by record kind, services with the rules, numbered
migrations, and two backends picked by URL (docs/storage.md).

    storage = await open_storage("sqlite:///var/lib/broker/broker.sqlite3")   # or a bare path
    storage = await open_storage("postgresql://broker@db.example/broker")
    await storage.subscribers.add("C-1001", now=time.time(), actor="admin")
    ...
    await storage.close()

Nothing here blocks the event loop: SQLite runs on threads of its own (:mod:`.sqlite`), PostgreSQL
through psycopg's asyncio API (:mod:`.postgres`, installed with the ``postgres`` extra).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import StoreError
from .db import ConstraintViolated, Database, StorageBusy, Tx, is_storage_failure
from .migrations import MIGRATIONS, migrate
from .operator_service import Operators
from .repo_audit import SHA256_CHAIN, AuditChain, keyed_chain
from .repo_records import ReceiptRecord, SessionRecord
from .services import AuditLog, Certificates, Inventory, Meta, Presence, Subscribers, check_token
from .session_log import SessionLog
from .sqlite import DEFAULT_BUSY_TIMEOUT, SQLiteDatabase

#: How long PostgreSQL may take to give a connection (the same as ``postgres.DEFAULT_CONNECT_TIMEOUT``;
#: repeated here so that the SQLite-only install does not import psycopg).
DEFAULT_CONNECT_TIMEOUT = 10.0

__all__ = [
    "MIGRATIONS",
    "SHA256_CHAIN",
    "AuditChain",
    "ConstraintViolated",
    "Database",
    "ReceiptRecord",
    "SessionRecord",
    "Storage",
    "StorageBusy",
    "StoreError",
    "Tx",
    "check_token",
    "is_storage_failure",
    "keyed_chain",
    "open_database",
    "open_storage",
]


@dataclass(frozen=True, slots=True)
class Storage:
    """Every service over one database."""

    db: Database
    audit: AuditLog
    subscribers: Subscribers
    certificates: Certificates
    presence: Presence
    inventory: Inventory
    operators: Operators
    sessions: SessionLog
    meta: Meta

    @classmethod
    def over(cls, db: Database, *, chain: AuditChain = SHA256_CHAIN) -> Storage:
        audit = AuditLog(db, chain)
        return cls(
            db=db,
            audit=audit,
            subscribers=Subscribers(db, audit),
            certificates=Certificates(db, audit),
            presence=Presence(db, audit),
            inventory=Inventory(db, audit),
            operators=Operators(db, audit),
            sessions=SessionLog(db, audit),
            meta=Meta(db),
        )

    async def close(self) -> None:
        await self.db.close()


def _sqlite_path(url: str) -> Path:
    if url.startswith("sqlite://"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise StoreError(f"a sqlite URL names a local file (sqlite:///path), not a host: {url!r}")
        path = unquote(parts.path)
        if not path or path == "/":
            raise StoreError(f"no file in the sqlite URL {url!r}")
        return Path(path)
    return Path(url)


async def open_database(
    url: str | Path,
    *,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> Database:
    """The backend a URL names, connected but not migrated.

    ``postgresql://…`` or ``postgres://…`` → PostgreSQL (needs the ``postgres`` extra);
    ``sqlite:///abs/path`` (as a ``file:`` URL: three slashes, then the absolute path) or a bare path,
    relative or absolute → SQLite. ``busy_timeout``: how long a SQLite write waits for another
    process's lock; ``connect_timeout``: how long PostgreSQL may take to give a connection.
    """
    text = str(url)
    scheme = text.split(":", 1)[0].lower() if "://" in text else ""
    if scheme in ("postgresql", "postgres"):
        try:
            from .postgres import PostgresDatabase
        except ImportError:  # pragma: no cover - depends on what is installed
            raise StoreError(
                "PostgreSQL needs the driver: pip install 'isp-remote-support[postgres]'"
            ) from None
        database = PostgresDatabase(text, connect_timeout=connect_timeout)
        await database.open()
        return database
    if scheme not in ("", "sqlite", "file"):
        raise StoreError(f"unknown database URL scheme {scheme!r} (sqlite:///path or postgresql://…)")
    path = Path(urlsplit(text).path) if scheme == "file" else _sqlite_path(text)
    return SQLiteDatabase(path, busy_timeout=busy_timeout)


async def open_storage(
    url: str | Path,
    *,
    chain: AuditChain = SHA256_CHAIN,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    now: float | None = None,
) -> Storage:
    """Open the database a URL names, apply the missing migrations, and return the services."""
    db = await open_database(url, busy_timeout=busy_timeout, connect_timeout=connect_timeout)
    try:
        await migrate(db, now=time.time() if now is None else now)
    except BaseException:
        await db.close()
        raise
    return Storage.over(db, chain=chain)
