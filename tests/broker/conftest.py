"""The broker's storage on a real SQLite file in a temporary directory, keyed with the data dir's
audit key as the broker opens it (``broker.storage``), for the broker's store-level tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broker.auditkey import load_or_create_audit_key
from broker.storage import Storage, keyed_chain, open_storage


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "broker.sqlite3"


async def open_broker_storage(db_path: Path) -> Storage:
    """What the broker and every admin command open: the file, chained with ``audit.key`` beside it."""
    return await open_storage(db_path, chain=keyed_chain(load_or_create_audit_key(db_path.parent).chain))


@pytest.fixture
async def storage(db_path: Path) -> AsyncIterator[Storage]:
    s = await open_broker_storage(db_path)
    try:
        yield s
    finally:
        await s.close()
