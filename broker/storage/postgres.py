"""The multi-node backend: PostgreSQL through psycopg 3's asyncio API and its connection pool.

Why psycopg 3 rather than asyncpg (both are well kept and native asyncio):

- it ships type information (``py.typed``), so this package stays ``mypy --strict`` without stubs;
- it is the PostgreSQL adapter Django and SQLAlchemy default to, maintained with libpq by the same
  people, and its connection pool (``psycopg_pool``) is a sibling package of the same project;
- it speaks libpq's connection strings and URLs as they are (``postgresql://…?sslmode=…&options=…``),
  works behind PgBouncer in transaction mode (no statement cache needed), and ``psycopg[binary]``
  carries libpq, so nothing comes from the OS;
- asyncpg is faster on bulk reads, which the broker does not do: its rows are small and few.

Write transactions run at READ COMMITTED, PostgreSQL's default: the services take row locks where they
read before they write (``SELECT … FOR UPDATE``) and the audit chain's appenders take a transaction-level
advisory lock, so two brokers appending at once get consecutive entries and never fork the chain (test:
``tests/broker/storage/test_contract_audit.py``). ``durable=False`` writes set ``synchronous_commit = off``
for their transaction only.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Final

import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..errors import StoreError
from .db import AUDIT_LOCK_KEY, ConstraintViolated, Dialect, OneStatement, Row, StorageBusy

#: Connections a broker process keeps open (min) and may open (max); PostgreSQL's own default limit
#: is 100 connections for all brokers together.
DEFAULT_MIN_CONNECTIONS: Final = 1
DEFAULT_MAX_CONNECTIONS: Final = 8
#: How long a transaction waits for a free connection, and the first connection at start.
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
#: How long a connection may go unanswered by a database server that vanished (its host lost power, a
#: network partition) before it fails, so the transaction fails with a storage error and the pool
#: replaces the connection. libpq's ``tcp_user_timeout`` bounds data sent but never acknowledged (a
#: query to a dead host); TCP keepalives bound a connection waiting for an answer whose server went
#: silent (probes after half of it, then three at a sixth of it). Without them Linux retransmits for
#: about 15 minutes (``tcp_retries2``) and keepalives start after 2 hours, and the transaction, its
#: pool connection and whatever awaits it wait as long. A slow but live server is not affected: its
#: kernel acknowledges, and a long statement is PostgreSQL's own ``statement_timeout`` to set. The
#: URL's own ``tcp_user_timeout`` / ``keepalives*`` parameters win over these.
DEFAULT_DEAD_SERVER_TIMEOUT: Final = 20.0


def tcp_settings(url: str, dead_server_timeout: float) -> dict[str, str]:
    """The libpq connection parameters for ``dead_server_timeout`` that ``url`` does not set itself.
    A URL libpq cannot parse is a :class:`StoreError` that names the fault, never the URL (it may
    hold a password)."""
    try:
        given = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        fault = str(exc).split(" in URI", 1)[0].strip()
        raise StoreError(f"not a valid PostgreSQL URL: {fault}") from None
    whole = max(1, round(dead_server_timeout))
    wanted = {
        "keepalives": "1",
        "keepalives_idle": str(max(1, whole // 2)),
        "keepalives_interval": str(max(1, whole // 6)),
        "keepalives_count": "3",
        "tcp_user_timeout": str(whole * 1000),
    }
    return {key: value for key, value in wanted.items() if key not in given}


@functools.lru_cache(maxsize=512)
def _paramstyle(sql: str) -> str:
    """``?`` placeholders (the repositories' one style) to psycopg's ``%s``."""
    if "%" in sql:
        raise ValueError("a literal % in SQL is not supported; pass it as a parameter")
    return sql.replace("?", "%s")


def _translate(exc: psycopg.Error) -> Exception:
    if isinstance(exc, psycopg.errors.IntegrityError | psycopg.errors.RaiseException):
        return ConstraintViolated(f"refused by the database: {exc.diag.message_primary or exc}")
    if isinstance(exc, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled):
        return StorageBusy("the database is locked by another transaction; nothing was changed")
    return exc


class _PgTx:
    dialect: Dialect = "postgresql"
    for_update = " FOR UPDATE"

    def __init__(self, conn: psycopg.AsyncConnection[Row]) -> None:
        self._conn = conn

    async def _run(self, sql: str, args: Sequence[Any]) -> psycopg.AsyncCursor[Row]:
        try:
            return await self._conn.execute(_paramstyle(sql), tuple(args) if args else None)
        except psycopg.Error as exc:
            translated = _translate(exc)
            if translated is exc:
                raise
            raise translated from None

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        return (await self._run(sql, args)).rowcount

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        async with self._conn.cursor() as cur:
            await cur.executemany(_paramstyle(sql), [tuple(r) for r in rows])

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        return await (await self._run(sql, args)).fetchone()

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        return await (await self._run(sql, args)).fetchall()

    async def lock_audit(self) -> None:
        await self._run("SELECT pg_advisory_xact_lock(?)", (AUDIT_LOCK_KEY,))


class PostgresDatabase:
    """:class:`broker.storage.db.Database` on a PostgreSQL server; call :meth:`open` first."""

    dialect: Dialect = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        min_connections: int = DEFAULT_MIN_CONNECTIONS,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        dead_server_timeout: float = DEFAULT_DEAD_SERVER_TIMEOUT,
    ) -> None:
        self.url = url
        self._timeout = connect_timeout
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Row]] = AsyncConnectionPool(
            url,
            min_size=min_connections,
            max_size=max_connections,
            timeout=connect_timeout,
            kwargs={"autocommit": True, **tcp_settings(url, dead_server_timeout)},
            open=False,
            name="broker-storage",
        )

    async def open(self) -> None:
        try:
            await self._pool.open(wait=True, timeout=self._timeout)
        except PoolTimeout:
            await self._pool.close()
            raise StoreError(f"cannot connect to PostgreSQL within {self._timeout:g} s") from None

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Row]]:
        """A pool connection; none free within the timeout is :class:`StorageBusy`."""
        try:
            async with self._pool.connection() as conn:
                yield conn
        except PoolTimeout:
            raise StorageBusy(f"no database connection free within {self._timeout:g} s") from None

    @asynccontextmanager
    async def _transaction(self, first: str) -> AsyncIterator[_PgTx]:
        async with self._connection() as conn, conn.transaction():
            tx = _PgTx(conn)
            if first:
                await conn.execute(first)
            yield tx

    def write(self, *, durable: bool = True) -> AbstractAsyncContextManager[_PgTx]:
        return self._transaction("" if durable else "SET LOCAL synchronous_commit = off")

    def read(self) -> AbstractAsyncContextManager[_PgTx]:
        return self._transaction("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    @asynccontextmanager
    async def read_statement(self) -> AsyncIterator[OneStatement]:
        """The pool's connections are in autocommit: the one ``SELECT`` is a transaction of its own
        (one snapshot), in one round trip."""
        async with self._connection() as conn:
            yield OneStatement(_PgTx(conn))

    def pool_stats(self) -> dict[str, int]:
        """Cumulative since the pool opened (``get_stats``, not ``pop_stats``: nothing is reset)."""
        return dict(self._pool.get_stats())

    async def close(self) -> None:
        await self._pool.close()
