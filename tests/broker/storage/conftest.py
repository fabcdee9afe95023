"""The backends every contract test runs against: a SQLite file, and a real PostgreSQL server.

PostgreSQL: ``BROKER_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``, trust
auth) must answer; this suite creates one database with a random name for the test session and drops
it at the end, and gives each test a schema of its own in it (``search_path``), so tests see empty
tables without paying for a database each. No server is a failure, never a skip: CI starts one
(``scripts/bootstrap --system``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest

from broker.storage import Storage, open_storage

ADMIN_URL = os.environ.get("BROKER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("sqlite", "postgresql")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


def temporary_database(prefix: str) -> Iterator[str]:
    """URL of a fresh database ``<prefix>_<random>`` on the test server, dropped (``FORCE``) when the
    generator ends; no server is a failure, never a skip."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL does not answer at {ADMIN_URL} ({exc}); start it (scripts/bootstrap --system)",
            pytrace=False,
        )
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield _with_database(ADMIN_URL, name)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """URL of a fresh database on the test server, dropped after the test session."""
    yield from temporary_database("broker_test")


def new_schema_url(database_url: str) -> str:
    """A fresh, empty schema in the test database; the URL selects it with ``search_path``."""
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{database_url}?options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(params=BACKENDS)
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'broker.sqlite3'}"
    database: str = request.getfixturevalue("postgres_database")
    return new_schema_url(database)


@pytest.fixture
async def storage(storage_url: str) -> AsyncIterator[Storage]:
    s = await open_storage(storage_url)
    try:
        yield s
    finally:
        await s.close()
