"""A live session survives ``kill -9`` of the broker process holding its agent (issue 15): three
real broker processes on PostgreSQL and NATS behind Debian's HAProxy (TLS passed through, PROXY v2),
the agent and the operator through the front door, on different processes. After the kill the agent
reconnects through HAProxy to a surviving process, which adopts the session from the database; the
operator's process re-links; new frames reach the operator, input still needs ``input:control``, and
the audit chain verifies. A rolling restart (the operator on each process's own port, moving off the
one about to restart) ends no session."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from helpdesk import HelpdeskClient
from tests.e2e.cluster import (
    Cluster,
    cluster_database,
    frames,
    front_operator,
    holder,
    input_needs_control,
    running_cluster,
    viewed_session,
)
from tests.helpers import add_operator, login, start_support

pytestmark = pytest.mark.e2e


@pytest.fixture
def database_url() -> Iterator[str]:
    yield from cluster_database()


@pytest.fixture
def cluster(database_url: str, tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(database_url, tmp_path) as running:
        yield running


async def test_c_kill_9_of_the_agents_process_the_session_continues_on_another(
    cluster: Cluster, tmp_path: Path
) -> None:
    agent_dir = tmp_path / "agent"
    cluster.enroll(agent_dir, "C-KILL", via=None)  # the agent dials the front door
    erin = add_operator(cluster.brokers[0], "erin1")
    support = start_support(agent_dir, "--test-pattern")
    try:
        code = support.support_code()
        agents = holder(cluster.database_url, code)
        # The operator through the front door too, on a process that does not hold the agent.
        async with front_operator(cluster, {0, 1, 2} - {agents}) as (op, other):
            await login(op, erin)
            claimed = await op.claim(code=code, scopes=["screen:view", "input:control"])
            session = claimed.session_id
            support.wait_for("Control your mouse and keyboard")
            await op.watch(session)
            support.type("1")  # the screen only
            await op.wait_state(session, lambda s: s.scopes.get("screen:view") == "granted")
            await frames(op, 2)

            victim = cluster.brokers[agents]
            assert victim.proc is not None
            os.kill(victim.proc.pid, signal.SIGKILL)
            victim.proc.wait(10)
            while not op.screen.empty():
                op.screen.get_nowait()

            # The session continues: new frames from the process that adopted it.
            canvas = await frames(op, 2)
            assert canvas.pixels is not None
            state = await op.wait_state(session, lambda s: s.phase == "active")
            assert state.scopes["screen:view"] == "granted"
            assert state.scopes["input:control"] == "denied"

            # Input still needs input:control (the agent's process refuses it; nothing applied).
            await input_needs_control(op, support, session, 5, 6)

            await op.end(session)
            await op.wait_state(session, lambda s: s.phase == "ended")
        assert support.proc.wait(30) == 0
    finally:
        support.stop()
    alive = cluster.brokers[other]
    with psycopg.connect(cluster.database_url) as conn:
        actions = [str(r[0]) for r in conn.execute("SELECT action FROM audit ORDER BY seq")]
    assert "session.adopted" in actions
    assert actions.count("session.end") == 1
    verified = alive.cli("audit", "verify")
    assert "audit chain OK" in verified.stdout, verified.stdout


async def _moved_operator(cluster: Cluster, op: HelpdeskClient, to: int, session: str) -> HelpdeskClient:
    """The operator's console moves to process ``to`` (its own process is about to restart): the
    same login, the session watched again there."""
    assert op.login_info is not None
    moved = cluster.client(to)
    await moved.connect()
    await moved.auth(op.login_info.token)
    await moved.watch(session)
    await op.close()
    return moved


async def test_d_rolling_restart_of_every_process_ends_no_session(cluster: Cluster, tmp_path: Path) -> None:
    agent_dir = tmp_path / "agent"
    cluster.enroll(agent_dir, "C-ROLL", via=None)
    fay = add_operator(cluster.brokers[0], "fay1")
    support = start_support(agent_dir, "--test-pattern")
    op: HelpdeskClient | None = None
    try:
        code = support.support_code()
        where = (holder(cluster.database_url, code) + 1) % 3
        op = cluster.client(where)
        await op.connect()
        session = await viewed_session(op, fay, support, code)
        await frames(op, 2)

        for index, broker in enumerate(cluster.brokers):
            if index == where:  # the console moves off the process that restarts now
                where = (index + 1) % 3
                op = await _moved_operator(cluster, op, where, session)
            broker.stop()  # SIGTERM: a graceful stop hands the session over
            broker.start()  # the same port; HAProxy takes it back after its health checks
            while not op.screen.empty():
                op.screen.get_nowait()
            await frames(op, 2)  # new frames after each restart
            state = await op.wait_state(session, lambda s: s.phase == "active")
            assert state.scopes["screen:view"] == "granted"
            assert support.proc.poll() is None

        await op.end(session)
        await op.wait_state(session, lambda s: s.phase == "ended")
        assert support.proc.wait(30) == 0
    finally:
        if op is not None:
            await op.close()
        support.stop()
    with psycopg.connect(cluster.database_url) as conn:
        ends = conn.execute(
            "SELECT actor, details FROM audit WHERE action = 'session.end' AND subject = %s", (session,)
        ).fetchall()
        handoffs = conn.execute(
            "SELECT count(*) FROM audit WHERE action = 'session.handoff' AND subject = %s", (session,)
        ).fetchone()
    assert len(ends) == 1, ends  # ended once: by the operator, at the end
    assert handoffs is not None
    assert handoffs[0] >= 1
    verified = cluster.brokers[0].cli("audit", "verify")
    assert "audit chain OK" in verified.stdout, verified.stdout
