"""An agent's admission when the database does not answer (a reconnect storm on a slow database):
the agent is told ``storage_unavailable`` with a 1013 close (try again later) and is admitted on a
later attempt; the broker counts it, logs one line (not a traceback per connection) and serves
everyone else. Before, each such connection logged "admission failed" with a traceback and got a
bare 1011 "internal".

Real parts: a broker on PostgreSQL with a statement timeout of its own (the URL's options), and the
``certificates`` table locked by another connection (as a migration or an administrator would), so
the admission's read of the certificate record times out inside PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from agent.connection import AgentClient
from tests.broker.storage.conftest import new_schema_url, postgres_database  # noqa: F401
from tests.helpers import InProcessBroker, in_process_broker

HOURS = "00:00-00:00"


@pytest.fixture
def database_url(postgres_database: str) -> str:  # noqa: F811
    url = new_schema_url(postgres_database)  # …?options=-csearch_path%3Dt_…
    return url + quote(" -cstatement_timeout=500")


async def _raw_admission(running: InProcessBroker, cert: Path, key: Path) -> tuple[dict[str, object], int]:
    """Connect as the agent and say hello: the first message the broker sends, and its close code."""
    ws = await connect(
        f"{running.url}/agent", ssl=running.client_context(cert=cert, key=key), ping_interval=None
    )
    try:
        await ws.send(json.dumps({"type": "hello", "versions": [1], "role": "agent"}))
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code is not None
        return first, ws.close_code
    finally:
        await ws.close()


async def test_an_agent_whose_record_cannot_be_read_is_told_to_try_again_and_gets_in_later(
    tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with in_process_broker(tmp_path / "broker", database=database_url, service_hours=HOURS) as running:
        identity = await running.enroll_agent("C-AS1", tmp_path / "agent")
        locker = await psycopg.AsyncConnection.connect(database_url)
        try:
            await locker.execute("LOCK TABLE certificates IN ACCESS EXCLUSIVE MODE")
            with caplog.at_level(logging.ERROR, logger="broker"):
                first, code = await _raw_admission(running, identity.cert_path, identity.key_path)
                again, code_again = await _raw_admission(running, identity.cert_path, identity.key_path)
            assert first["type"] == "error"
            assert first["code"] == "storage_unavailable"
            assert code == 1013  # try again later, not 1011 "internal" nor a refusal by rule (1008)
            assert (again["code"], code_again) == ("storage_unavailable", 1013)
            assert identity.serial not in running.broker.agents
            registry = running.broker.metrics.registry
            refused = registry.get_sample_value("broker_refusals_total", {"code": "storage_unavailable"})
            assert refused == 2
            # the broker's own pool is on /metrics: its connections answered, none timed out
            assert (registry.get_sample_value("broker_storage_pool_connections", {"state": "open"}) or 0) >= 1
            assert registry.get_sample_value("broker_storage_pool_timeouts_total") == 0
            assert caplog.text.count("agent admission deferred: the database did not answer") == 1
            assert "admission failed" not in caplog.text
            assert "Traceback" not in caplog.text
        finally:
            await locker.rollback()  # the lock is gone
            await locker.close()
        # The real agent, with its backoff, gets in now.
        client = AgentClient(identity)
        stop = asyncio.Event()
        task = asyncio.create_task(client.run(stop))
        try:
            deadline = time.monotonic() + 30
            while identity.serial not in running.broker.agents:
                assert time.monotonic() < deadline, "agent not admitted once the table was free"
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
