"""What the repositories see of a database: a transaction that runs SQL, whichever the backend.

Repositories write SQL once, with ``?`` placeholders and the subset both SQLite (≥ 3.35) and
PostgreSQL understand (``ON CONFLICT … DO UPDATE``, ``RETURNING``, ``USING``); the few differences
are attributes of the transaction (:attr:`Tx.for_update`, :meth:`Tx.lock_audit`). The schema's
differences live in the migrations (:mod:`broker.storage.migrations`).

A transaction is opened by a service (:meth:`Database.write` or :meth:`Database.read`), and every
repository call inside it commits together or not at all: any exception rolls the whole of it back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Final, Literal, Protocol

from protocol.errors import ErrorCode

from ..errors import StoreError

Dialect = Literal["sqlite", "postgresql"]

Row = tuple[Any, ...]

#: The advisory-lock key that serialises audit appends on PostgreSQL (any constant works; this one is
#: "audit" in ASCII). On SQLite every write transaction is already serial (``BEGIN IMMEDIATE``).
AUDIT_LOCK_KEY: Final = 0x6175646974


class StorageBusy(StoreError):
    """The database stayed locked by another writer past the busy timeout; the operation did nothing."""

    code = ErrorCode.INTERNAL


class ConstraintViolated(StoreError):
    """A row broke a constraint of the schema (a duplicate key, a missing referenced row …); the
    transaction was rolled back."""

    code = ErrorCode.INVALID_FIELD


def is_storage_failure(exc: Exception) -> bool:
    """A failure of the database itself (either backend), not a refusal by rule."""
    if isinstance(exc, StorageBusy | ConstraintViolated | sqlite3.OperationalError | OSError):
        return True
    return type(exc).__module__.split(".", 1)[0] == "psycopg"  # OperationalError, InterfaceError, …


class Tx(Protocol):
    """One open transaction."""

    dialect: Dialect
    for_update: str
    """``" FOR UPDATE"`` on PostgreSQL (row locks for read-then-write), ``""`` on SQLite, where the
    write transaction holds the database's one write lock from its start."""

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        ...

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Row | None: ...

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]: ...

    async def lock_audit(self) -> None:
        """Make this transaction the only audit appender until it ends (PostgreSQL: a transaction-level
        advisory lock; SQLite: nothing to do)."""
        ...


class Database(Protocol):
    """A backend: SQLite (:mod:`broker.storage.sqlite`) or PostgreSQL (:mod:`broker.storage.postgres`)."""

    dialect: Dialect
    url: str

    def write(self, *, durable: bool = True) -> AbstractAsyncContextManager[Tx]:
        """A write transaction. ``durable=False`` lets the backend acknowledge the commit before it is
        on disk (SQLite ``synchronous=NORMAL``, PostgreSQL ``synchronous_commit=off``): for presence
        and other state that the next connection rewrites anyway. Everything that is acknowledged to
        someone (an enrollment answer, an audit entry, a consent receipt) stays ``durable=True``."""
        ...

    def read(self) -> AbstractAsyncContextManager[Tx]:
        """A read-only transaction: one consistent snapshot for all its statements."""
        ...

    async def close(self) -> None: ...
