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
from protocol.messages import Error
from tests.broker.cluster.natsserver import free_port
from tests.broker.cluster.test_haproxy import HAProxy, show_stat
from tests.e2e.cluster import Cluster, cluster_database, start_cluster
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
            await op.send_input(session, "move", x=5, y=6)
            refusal = await op.next_event(Error)
            assert isinstance(refusal, Error)
            assert refusal.code == "consent_required"
            assert "input applied" not in support.output.text()
            support.type("/grant control")
            support.wait_for('Type "yes"')
            support.type("yes")
            await op.wait_state(session, lambda s: s.scopes.get("input:control") == "granted")
            await op.send_input(session, "move", x=5, y=6)
            support.wait_for("input applied: move 5,6")

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
