"""The embedded backend: one SQLite file, used from threads of its own so the event loop never waits.

Python's ``sqlite3`` blocks the calling thread, and a file locked by another process (the admin CLI,
a backup, a stray ``sqlite3`` shell) blocks it for the whole busy timeout: run on the event loop, that
froze the broker for 10–20 s. Here each database has two connections, each on its own thread (a
``ThreadPoolExecutor`` with one worker, so its jobs run one after another in the order submitted):

- the **writer**: every write transaction is ``BEGIN IMMEDIATE`` (the file's write lock is taken at the
  start, so a read-then-write inside it cannot race another process), with the busy timeout; one
  transaction at a time in this process (an ``asyncio.Lock``), its statements sent one by one;
- the **reader**: ``query_only``, deferred ``BEGIN`` … ``COMMIT`` for one snapshot. In WAL mode
  readers never wait for writers, so a read answers even while another process holds the write lock
  and our writer is waiting for it.

A coroutine that waits for the lock awaits a future; the loop runs everything else meanwhile (test:
``tests/broker/storage/test_contract_sqlite_lock.py``).

Why not aiosqlite: it is well kept and does the same (one thread per connection), but a transaction
that spans several awaits needs the same care either way (a lock around it, a rollback that cannot be
cancelled away), and the standard library's module plus ~150 lines keeps one dependency fewer on the
embedded default.

Durability: ``synchronous=FULL`` for durable transactions (the WAL is synced at every commit), ``NORMAL``
for the others (a power cut may lose the last commits, never corrupts); set before ``BEGIN``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

from .db import ConstraintViolated, Dialect, OneStatement, Row, StorageBusy

T = TypeVar("T")

#: How long a write waits for another process's lock before it fails with :class:`StorageBusy`.
DEFAULT_BUSY_TIMEOUT: Final = 10.0


def _translate(exc: sqlite3.Error) -> Exception:
    if isinstance(exc, sqlite3.IntegrityError):
        return ConstraintViolated(f"refused by the database: {exc}")
    text = str(exc).lower()
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return StorageBusy("the database is locked by another process; nothing was changed")
    return exc


class _Worker:
    """One connection on one thread; every call runs on that thread, in submission order."""

    def __init__(self, path: Path, *, name: str, busy_timeout: float, query_only: bool) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._path = path
        self._busy_timeout = busy_timeout
        self._query_only = query_only
        self._conn: sqlite3.Connection | None = None
        self.synchronous = ""

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, timeout=self._busy_timeout)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
            if self._query_only:
                conn.execute("PRAGMA query_only = ON")
            self._conn = conn
        return self._conn

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the thread; sqlite3 errors come back translated."""

        def job() -> T:
            try:
                return fn(self._connect())
            except sqlite3.Error as exc:
                translated = _translate(exc)
                if translated is exc:
                    raise
                raise translated from None

        return await asyncio.get_running_loop().run_in_executor(self._executor, job)

    async def finish(self, sql: str) -> None:
        """COMMIT/ROLLBACK that runs even if the awaiting task is cancelled (it is queued in order
        before any later transaction's BEGIN, since the executor has one worker)."""

        def job() -> None:
            if self._conn is not None and self._conn.in_transaction:
                self._conn.execute(sql)

        await asyncio.shield(asyncio.wrap_future(self._executor.submit(job)))

    def end_read(self) -> None:
        """End a read transaction without waiting: the COMMIT is queued before anything submitted
        later, and a read-only COMMIT has nothing to make durable or to fail on."""

        def job() -> None:
            if self._conn is not None and self._conn.in_transaction:
                self._conn.execute("COMMIT")

        self._executor.submit(job)

    async def close(self) -> None:
        def job() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        try:
            await asyncio.wrap_future(self._executor.submit(job))  # after every job queued before
        finally:
            self._executor.shutdown(wait=False)


class _SQLiteTx:
    """A transaction on one worker. Its ``BEGIN`` is sent with its first statement (one thread hop
    fewer); a transaction that ran no statement never began."""

    dialect: Dialect = "sqlite"
    for_update = ""

    def __init__(self, worker: _Worker, begin: Callable[[sqlite3.Connection], object]) -> None:
        self._worker = worker
        self._begin: Callable[[sqlite3.Connection], object] | None = begin

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        begin, self._begin = self._begin, None
        if begin is None:
            return await self._worker.call(fn)

        def first(c: sqlite3.Connection) -> T:
            begin(c)
            return fn(c)

        return await self._worker.call(first)

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        return await self._call(lambda c: c.execute(sql, tuple(args)).rowcount)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._call(lambda c: c.executemany(sql, [tuple(r) for r in rows]))

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        def run(c: sqlite3.Connection) -> Row | None:
            cur = c.execute(sql, tuple(args))
            try:
                row: Row | None = cur.fetchone()
                return row
            finally:
                cur.close()

        return await self._call(run)

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        return await self._call(lambda c: list(c.execute(sql, tuple(args)).fetchall()))

    async def lock_audit(self) -> None:
        return None  # BEGIN IMMEDIATE already made this the only writer


class SQLiteDatabase:
    """:class:`broker.storage.db.Database` on one SQLite file (created if missing)."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self._writer = _Worker(path, name="sqlite-writer", busy_timeout=busy_timeout, query_only=False)
        self._reader = _Worker(path, name="sqlite-reader", busy_timeout=busy_timeout, query_only=True)
        self._write_lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()

    @asynccontextmanager
    async def write(self, *, durable: bool = True) -> AsyncIterator[_SQLiteTx]:
        level = "FULL" if durable else "NORMAL"
        writer = self._writer

        def begin(c: sqlite3.Connection) -> None:
            if writer.synchronous != level:
                c.execute(f"PRAGMA synchronous = {level}")
                writer.synchronous = level
            c.execute("BEGIN IMMEDIATE")

        def commit(c: sqlite3.Connection) -> None:
            if c.in_transaction:
                c.execute("COMMIT")

        async with self._write_lock:
            try:
                yield _SQLiteTx(writer, begin)
                await writer.call(commit)
            except BaseException:
                await writer.finish("ROLLBACK")
                raise

    @asynccontextmanager
    async def read(self) -> AsyncIterator[_SQLiteTx]:
        async with self._read_lock:
            try:
                yield _SQLiteTx(self._reader, lambda c: c.execute("BEGIN"))
            finally:
                self._reader.end_read()

    def pool_stats(self) -> dict[str, int]:
        return {}  # one writer and one reader connection, no pool

    @asynccontextmanager
    async def read_statement(self) -> AsyncIterator[OneStatement]:
        """The reader's transaction costs no round trip here (its ``BEGIN`` goes with the statement)."""
        async with self.read() as tx:
            yield OneStatement(tx)

    async def close(self) -> None:
        async with self._write_lock, self._read_lock:
            await self._writer.close()
            await self._reader.close()
