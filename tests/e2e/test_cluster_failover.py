"""A live session survives ``kill -9`` of the broker process holding its agent (issue 15): three
real broker processes on PostgreSQL and NATS behind Debian's HAProxy (TLS passed through), the agent
through the front door, the operator on another process. After the kill the agent reconnects
through HAProxy to a surviving process, which adopts the session from the database; the operator's
process re-links; new frames reach the operator, input still needs ``input:control``, and the audit
chain verifies."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from broker.cluster.haproxy import Backend, FrontDoor, render
from helpdesk import HelpdeskClient
from helpdesk.canvas import Canvas
from tests.broker.cluster.natsserver import free_port
from tests.broker.cluster.test_haproxy import HAProxy, show_stat
from tests.e2e.cluster import Cluster, cluster_database, input_needs_control, start_cluster
from tests.helpers import add_operator, login, run_agent, start_support, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def database_url() -> Iterator[str]:
    yield from cluster_database()


@pytest.fixture
def front(database_url: str, tmp_path: Path) -> Iterator[tuple[Cluster, int]]:
    cluster = start_cluster(database_url, tmp_path / "cluster")
    port = free_port()
    stats = tmp_path / "haproxy.sock"
    door = FrontDoor(
        listen=("127.0.0.1", port),
        backends=tuple(Backend(f"broker{i + 1}", "127.0.0.1", b.port) for i, b in enumerate(cluster.brokers)),
        check_interval=0.5,
        maxconn=1000,
        stats_socket=str(stats),
    )
    haproxy = HAProxy(render(door), tmp_path)
    haproxy.start()
    try:
        wait_until(
            lambda: stats.exists() and set(show_stat(stats).values()) == {"UP"},
            what="every broker UP in HAProxy",
        )
        yield cluster, port
    finally:
        haproxy.stop()
        cluster.stop()


def _holder(database_url: str, code: str) -> int:
    """Index of the broker process that issued ``code`` (its node id is ``broker-<n>``)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT node FROM support_codes WHERE code = %s", (code,)).fetchone()
    assert row is not None
    return int(str(row[0]).rsplit("-", 1)[1]) - 1


async def _frames(op: HelpdeskClient, count: int) -> Canvas:
    canvas = Canvas()
    seen = 0
    while canvas.keyframes == 0 or seen < count:
        canvas.apply(await asyncio.wait_for(op.screen.get(), 30))
        seen += 1
    return canvas


async def test_c_kill_9_of_the_agents_process_the_session_continues_on_another(
    front: tuple[Cluster, int], tmp_path: Path
) -> None:
    cluster, port = front
    agent_dir = tmp_path / "agent"
    args = cluster.brokers[0].add_subscriber("C-KILL")
    args[args.index("--broker") + 1] = f"wss://127.0.0.1:{port}"  # the agent dials the front door
    enrolled = run_agent(agent_dir, *args, "--machine-name", "pc-kill", stdin="y\n")
    assert enrolled.returncode == 0, enrolled.stderr
    erin = add_operator(cluster.brokers[0], "erin1")
    support = start_support(agent_dir, "--test-pattern")
    try:
        code = support.support_code()
        holder = _holder(cluster.database_url, code)
        other = (holder + 1) % 3
        async with cluster.client(other) as op:  # the operator on a process that does not hold the agent
            await login(op, erin)
            claimed = await op.claim(code=code, scopes=["screen:view", "input:control"])
            session = claimed.session_id
            support.wait_for("Control your mouse and keyboard")
            await op.watch(session)
            support.type("1")  # the screen only
            await op.wait_state(session, lambda s: s.scopes.get("screen:view") == "granted")
            await _frames(op, 2)

            victim = cluster.brokers[holder]
            assert victim.proc is not None
            os.kill(victim.proc.pid, signal.SIGKILL)
            victim.proc.wait(10)
            while not op.screen.empty():
                op.screen.get_nowait()

            # The session continues: new frames from the process that adopted it.
            canvas = await _frames(op, 2)
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


async def test_d_rolling_restart_of_every_process_ends_no_session(
    front: tuple[Cluster, int], tmp_path: Path
) -> None:
    cluster, port = front
    agent_dir = tmp_path / "agent"
    args = cluster.brokers[0].add_subscriber("C-ROLL")
    args[args.index("--broker") + 1] = f"wss://127.0.0.1:{port}"
    enrolled = run_agent(agent_dir, *args, "--machine-name", "pc-roll", stdin="y\n")
    assert enrolled.returncode == 0, enrolled.stderr
    fay = add_operator(cluster.brokers[0], "fay1")
    support = start_support(agent_dir, "--test-pattern")
    op: HelpdeskClient | None = None
    try:
        code = support.support_code()
        where = (_holder(cluster.database_url, code) + 1) % 3
        op = cluster.client(where)
        await op.connect()
        await login(op, fay)
        session = (await op.claim(code=code, scopes=["screen:view"])).session_id
        support.wait_for("View your screen")
        await op.watch(session)
        support.type("1")
        await op.wait_state(session, lambda s: s.scopes.get("screen:view") == "granted")
        await _frames(op, 2)

        for index, broker in enumerate(cluster.brokers):
            if index == where:  # the console moves off the process that restarts now
                where = (index + 1) % 3
                op = await _moved_operator(cluster, op, where, session)
            broker.stop()  # SIGTERM: a graceful stop hands the session over
            broker.start()  # the same port; HAProxy takes it back after its health checks
            while not op.screen.empty():
                op.screen.get_nowait()
            await _frames(op, 2)  # new frames after each restart
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
