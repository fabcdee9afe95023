"""What the repositories see of a database: a transaction that runs SQL, whichever the backend.

Repositories write SQL once, with ``?`` placeholders and the subset both SQLite (≥ 3.35) and
PostgreSQL understand (``ON CONFLICT … DO UPDATE``, ``RETURNING``, ``USING``); the few differences
are attributes of the transaction (:attr:`Tx.for_update`, :meth:`Tx.lock_audit`). The schema's
differences live in the migrations (:mod:`broker.storage.migrations`).

A transaction is opened by a service (:meth:`Database.write` or :meth:`Database.read`), and every
repository call inside it commits together or not at all: any exception rolls the whole of it back.
"""

from __future__ import annotations

import re
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


_ROW_LOCK = re.compile(r"\bFOR\s+(UPDATE|SHARE|NO\s+KEY\s+UPDATE|KEY\s+SHARE)\b", re.IGNORECASE)


class OneStatementOnly(StoreError):
    """A bug: :meth:`Database.read_statement` was given a write or a second statement (use
    :meth:`Database.read`). Not a storage failure (:func:`is_storage_failure`): a caller that turns
    those into ``storage_unavailable`` lets this one through as the bug it is."""

    code = ErrorCode.INTERNAL


class OneStatement:
    """The :class:`Tx` of :meth:`Database.read_statement`: lets one ``SELECT`` through to ``tx``."""

    __slots__ = ("_tx", "_used", "dialect", "for_update")

    def __init__(self, tx: Tx) -> None:
        self._tx = tx
        self._used = False
        self.dialect = tx.dialect
        self.for_update = ""  # a lock would end with the statement: meaningless here

    def _one(self, sql: str) -> None:
        if self._used:
            raise OneStatementOnly("read_statement() runs one statement; use read() for more")
        if sql.lstrip()[:6].upper() != "SELECT" or ";" in sql.rstrip().rstrip(";") or _ROW_LOCK.search(sql):
            raise OneStatementOnly(f"read_statement() runs a plain SELECT, not {sql.split(None, 1)[0]!r}")
        self._used = True

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        raise OneStatementOnly("read_statement() does not write; use write()")

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        raise OneStatementOnly("read_statement() does not write; use write()")

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        self._one(sql)
        return await self._tx.fetchone(sql, args)

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        self._one(sql)
        return await self._tx.fetchall(sql, args)

    async def lock_audit(self) -> None:
        raise OneStatementOnly("read_statement() takes no lock; use write()")


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

    def read_statement(self) -> AbstractAsyncContextManager[Tx]:
        """A read of exactly one ``SELECT``, which is its own consistent snapshot, without a
        transaction around it: on PostgreSQL one round trip instead of four (``BEGIN``,
        ``SET TRANSACTION``, the statement, ``COMMIT``), for the reads every reconnect makes. Any other
        statement, or a second one, raises :class:`OneStatementOnly` before reaching the database."""
        ...

    def pool_stats(self) -> dict[str, int]:
        """The connection pool's counters and state (psycopg_pool's ``get_stats()`` names:
        ``pool_size``, ``pool_available``, ``requests_waiting``, ``requests_queued``,
        ``requests_wait_ms``, ``requests_errors`` (timeouts), ``connections_lost``, ``returns_bad``, …);
        empty for a backend without a pool (SQLite)."""
        ...

    async def close(self) -> None: ...
