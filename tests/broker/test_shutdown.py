"""A stopping broker whose database does not answer stops anyway, in a bounded time, and leaves
nothing half written (``shutdown_records_timeout``, docs/cluster.md "Shutdown").

The user's path: a real broker (its TLS listener, PostgreSQL) with a real agent connected; someone
else holds the ``presence`` and ``audit`` tables locked (a migration, an administrator's
``LOCK TABLE``), and the broker is stopped. Before, its last writes waited for the lock without end
and the restart hung. Now it gives up on them after the limit, says so in its log, and the audit
chain still verifies once the lock is gone, without a ``broker.stop`` entry of that stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import psycopg
import pytest

from agent.connection import AgentClient
from tests.broker.storage.conftest import new_schema_url, postgres_database  # noqa: F401
from tests.helpers import in_process_broker

HOURS = "00:00-00:00"
LIMIT = 1.5


@pytest.fixture
def database_url(postgres_database: str) -> str:  # noqa: F811
    return new_schema_url(postgres_database)


async def test_a_stop_with_the_tables_locked_ends_in_bounded_time_and_writes_nothing_half(
    tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "broker"
    context = in_process_broker(
        data_dir, database=database_url, service_hours=HOURS, shutdown_records_timeout=LIMIT
    )
    running = await context.__aenter__()
    identity = await running.enroll_agent("C-SD1", tmp_path / "agent")
    client = AgentClient(identity)
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(stop))
    locker = await psycopg.AsyncConnection.connect(database_url)
    try:
        deadline = time.monotonic() + 30
        while identity.serial not in running.broker.agents:
            assert time.monotonic() < deadline, "agent never connected"
            await asyncio.sleep(0.05)
        await running.broker.background.wait_idle(10)  # its connect is written
        await locker.execute("LOCK TABLE presence, audit IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with caplog.at_level(logging.ERROR, logger="broker"):
            await context.__aexit__(None, None, None)
        took = time.monotonic() - started
        # each waiting step gives up after LIMIT: the queued records, then the final ones
        assert took < 4 * LIMIT + 10, f"stop took {took:.1f} s"
        assert "stopping without the final records: the database did not answer in 1.5 s" in caplog.text
    finally:
        await locker.rollback()  # the lock is gone
        await locker.close()
        stop.set()
        await asyncio.wait_for(task, 15)
    # The next start finds a chain that verifies, and no entry of the stop that was cut.
    async with in_process_broker(data_dir, database=database_url, service_hours=HOURS) as again:
        report = await again.store.audit.verify()
        assert report.ok, report.problems
        entries = await again.store.audit.entries()
        assert [e.action for e in entries].count("broker.stop") == 0
        assert any(e.action == "agent.connect" for e in entries)
