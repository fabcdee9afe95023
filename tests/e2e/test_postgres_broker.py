"""The broker on PostgreSQL (issue 14): ``serve --database postgresql://…`` as a real process, the admin
CLI on the same database (``BROKER_DATABASE``), a real agent enrolling and connecting, an operator
logging in, and ``audit verify`` through the CLI. Nothing is written to a SQLite file.

PostgreSQL: ``BROKER_TEST_POSTGRES`` (default the server on 127.0.0.1:5432, user postgres, trust);
a database with a random name is created and dropped. No server is a failure, never a skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from helpdesk import HelpdeskClient
from tests.broker.storage.conftest import temporary_database
from tests.e2e.conftest import ALWAYS_OPEN
from tests.helpers import BrokerProcess, add_operator, login, run_agent, start_agent, wait_until


@pytest.fixture
def database_url() -> Iterator[str]:
    yield from temporary_database("broker_e2e")


def _actions(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [str(row[0]) for row in conn.execute("SELECT action FROM audit ORDER BY seq")]


async def test_the_broker_and_its_cli_on_postgresql(database_url: str, tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "broker", extra_args=(*ALWAYS_OPEN, "--database", database_url))
    broker.env["BROKER_DATABASE"] = database_url  # the admin CLI: the same database, from the environment
    broker.start()
    agent = None
    try:
        enroll_args = broker.add_subscriber("C-PG-1")
        enrolled = run_agent(tmp_path / "agent", *enroll_args, "--machine-name", "pg-pc", stdin="y\n")
        assert enrolled.returncode == 0, enrolled.stderr
        serial = enrolled.stdout.split("Client certificate ID: ")[1].split()[0]

        agent = start_agent(tmp_path / "agent")
        wait_until(lambda: broker.agent_state(serial) == "online", what="agent online")
        assert "pg-pc" in broker.cli("agents").stdout

        account = add_operator(broker, "pgop")
        ca_pem = (broker.data_dir / "ca.pem").read_bytes()
        async with HelpdeskClient(broker.url, ca_pem=ca_pem) as op:
            await login(op, account)  # login and the one-time password change, on PostgreSQL
        assert "pgop" in broker.cli("operator", "list").stdout

        verified = broker.cli("audit", "verify")
        assert "audit chain OK" in verified.stdout, verified.stdout
        actions = _actions(database_url)
        for action in ("subscriber.add", "agent.enroll", "agent.connect", "operator.add", "operator.login"):
            assert action in actions, (action, actions)
        assert not (broker.data_dir / "broker.sqlite3").exists()
    finally:
        if agent is not None:
            agent.stop()
        broker.stop()
    # After the stop (broker.stop audited, the last checkpoint written) the chain and every signed
    # checkpoint still verify.
    final = broker.cli("audit", "verify", "--checkpoints", str(broker.data_dir / "audit-checkpoints.jsonl"))
    assert "audit chain OK" in final.stdout, final.stdout
    assert "broker.stop" in _actions(database_url)
