"""A claimed session whose process died and whose agent never came back is ended by the sweep of a
live process (docs/cluster.md §6a): three real broker processes on PostgreSQL and NATS, the real
agent on broker-1, the operator on broker-2. The agent is stopped, broker-1 and then the agent are
killed (``kill -9``): nobody holds the session's grace timer any more. A live process ends the row
once, with the grace expiry's record (``agent_lost``); the operator is told; the audit verifies."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from broker.cluster.node import publish_cut_once
from tests.broker.cluster.natsserver import SHARED_NATS_URL
from tests.e2e.cluster import Cluster, cluster_database, start_cluster, viewed_session
from tests.helpers import add_operator, start_support

pytestmark = pytest.mark.e2e

GRACE = "3"
SWEEP = "1"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    for database_url in cluster_database():
        running = start_cluster(
            database_url, tmp_path / "cluster", extra=("--grace", GRACE, "--session-sweep", SWEEP)
        )
        try:
            yield running
        finally:
            running.stop()


async def test_a_session_whose_process_and_agent_died_is_swept_once(cluster: Cluster, tmp_path: Path) -> None:
    cluster.enroll(tmp_path / "agent", "C-SWEEP", via=0)
    ann = add_operator(cluster.brokers[0], "ann1")
    support = start_support(tmp_path / "agent", "--test-pattern")
    try:
        code = support.support_code()
        async with cluster.client(1) as op:
            session = await viewed_session(op, ann, support, code)

            os.kill(support.proc.pid, signal.SIGSTOP)  # the agent cannot notice anything
            victim = cluster.brokers[0]
            assert victim.proc is not None
            os.kill(victim.proc.pid, signal.SIGKILL)
            victim.proc.wait(10)
            os.kill(support.proc.pid, signal.SIGKILL)
            support.proc.wait(10)

            # broker-1 falls silent (15 s), then the grace passes on a sweeper that saw it orphaned
            state = await op.wait_state(session, lambda s: s.phase == "ended", timeout=90)
            assert (state.ended_by, state.reason) == ("broker", "agent_lost")
    finally:
        support.stop()

    with psycopg.connect(cluster.database_url) as conn:
        row = conn.execute(
            "SELECT ended_at IS NOT NULL, ended_by, reason FROM support_sessions WHERE id = %s", (session,)
        ).fetchone()
        ends = conn.execute(
            "SELECT details FROM audit WHERE action = 'session.end' AND subject = %s", (session,)
        ).fetchall()
    assert row == (True, "broker", "agent_lost")
    assert len(ends) == 1
    assert '"held_by":"broker-1"' in str(ends[0][0]).replace(" ", "")
    verified = cluster.brokers[2].cli("audit", "verify")
    assert "audit chain OK" in verified.stdout, verified.stdout


async def test_a_contract_suspended_during_a_session_ends_it_on_the_agents_resume(
    cluster: Cluster, tmp_path: Path
) -> None:
    """第18条 in a cluster: the contract is suspended (the admin CLI) and the cut closes the agent's
    connection on broker-1; the agent reconnects and is admitted (suspension refuses requests, not
    connections, as in one process), but its resume is refused and the session ends, instead of going
    on as before."""
    cluster.enroll(tmp_path / "agent", "C-SUSP", via=0)
    bea = add_operator(cluster.brokers[0], "bea1")
    support = start_support(tmp_path / "agent", "--test-pattern")
    try:
        code = support.support_code()
        async with cluster.client(1) as op:
            session = await viewed_session(op, bea, support, code)

            assert "suspended" in cluster.brokers[2].cli("subscriber", "suspend", "C-SUSP").stdout
            sent = await publish_cut_once(
                SHARED_NATS_URL, contract_id="C-SUSP", reason="suspended", prefix=cluster.prefix
            )
            assert sent
            state = await op.wait_state(session, lambda s: s.phase == "ended", timeout=60)
            assert (state.ended_by, state.reason) == ("broker", "subscriber_suspended")
        support.proc.wait(30)  # the agent's session ended: it stops
    finally:
        support.stop()
    with psycopg.connect(cluster.database_url) as conn:
        row = conn.execute("SELECT reason FROM support_sessions WHERE id = %s", (session,)).fetchone()
        resumed = conn.execute(
            "SELECT count(*) FROM audit WHERE action = 'agent.refused' AND subject = 'C-SUSP'"
        ).fetchone()
    assert row == ("subscriber_suspended",)
    assert resumed == (0,)  # admitted: the connection itself was not refused
