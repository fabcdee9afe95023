"""Sessions across broker processes (issue 15): three real broker processes on one PostgreSQL
database and the NATS server behind Debian's HAProxy (TLS passed through, ``leastconn``, PROXY v2),
a real enrolled agent and operators with the helpdesk client, all entering through the front door as
deployed; where each landed is read from the processes themselves, and the tests need them on
different processes. Support codes are single use across the cluster, code-guess lockouts hold on
every process, and every process's operators see the waiting requests of all of them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from broker.cluster.nats_bus import NatsBus
from broker.cluster.signals import ConsentChanged
from helpdesk import HelpdeskClient, HelpdeskError
from protocol.messages import Chat, InventoryView
from tests.broker.cluster.natsserver import SHARED_NATS_URL
from tests.e2e.cluster import (
    Cluster,
    cluster_database,
    connected,
    connected_until,
    frames,
    front_operator,
    holder,
    input_needs_control,
    running_cluster,
    viewed_session,
)
from tests.helpers import add_operator, login, start_support

pytestmark = pytest.mark.e2e

PROCESSES = frozenset(range(3))


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    yield from cluster_database()


@pytest.fixture(scope="module")
def cluster(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(database_url, tmp_path_factory.mktemp("cluster")) as running:
        yield running


async def _queued(op: HelpdeskClient, contract_id: str, *, present: bool = True) -> None:
    """Wait until the operator's queue shows (or no longer shows) a request of ``contract_id``."""
    for _ in range(300):
        queue = await op.queue()
        if (contract_id in {e.contract_id for e in queue.requests}) is present:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the queue never {'showed' if present else 'dropped'} {contract_id}")


async def test_a_code_claimed_on_one_process_cannot_be_claimed_on_another(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Agent and operators through the front door: alice on a process that does not hold the agent,
    bob on the agent's process, carol on the third. Alice's claim is refused to both others."""
    cluster.enroll(tmp_path / "agent", "C-CL-1", via=None)
    accounts = [add_operator(cluster.brokers[0], name) for name in ("alice1", "bob1", "carol1")]
    support = start_support(tmp_path / "agent", "--test-pattern")
    try:
        code = support.support_code()
        agents = holder(cluster.database_url, code)
        async with AsyncExitStack() as stack:
            alice, on_a = await stack.enter_async_context(front_operator(cluster, PROCESSES - {agents}))
            carol, on_c = await stack.enter_async_context(
                front_operator(cluster, PROCESSES - {agents, on_a}, held=[on_a])
            )
            bob, on_b = await stack.enter_async_context(front_operator(cluster, {agents}, held=[on_a, on_c]))
            assert sorted([on_a, on_b, on_c]) == [0, 1, 2]
            for op, account in zip((alice, bob, carol), accounts, strict=True):
                await login(op, account)
            # The request held by the agent's process is waiting in the queue of every process.
            for op in (alice, bob, carol):
                await _queued(op, "C-CL-1")
            claimed = await alice.claim(code=code)
            assert claimed.contract_id == "C-CL-1"
            for other in (bob, carol):
                with pytest.raises(HelpdeskError) as refused:
                    await other.claim(code=code)
                assert refused.value.code == "code_invalid"
            # Claimed: gone from every other process's queue.
            await _queued(bob, "C-CL-1", present=False)
            await _queued(carol, "C-CL-1", present=False)
            await alice.end(claimed.session_id)
    finally:
        support.stop()


async def test_code_guess_lockout_holds_on_every_process(cluster: Cluster) -> None:
    mallory = add_operator(cluster.brokers[0], "mallory1")
    async with AsyncExitStack() as stack:
        first, one = await stack.enter_async_context(front_operator(cluster, PROCESSES))
        second, two = await stack.enter_async_context(front_operator(cluster, PROCESSES - {one}, held=[one]))
        assert one != two
        await login(first, mallory)
        assert first.login_info is not None
        await second.auth(first.login_info.token)  # the same login on another process (no TOTP replay)
        # Ten wrong codes in a row on one process (no request is waiting: every code is wrong) ...
        for guess in range(10):
            with pytest.raises(HelpdeskError) as wrong:
                await first.claim(code=f"{guess:06d}")
            assert wrong.value.code == "code_invalid"
        # ... and another process refuses the eleventh: the lockout is the cluster's.
        with pytest.raises(HelpdeskError) as locked:
            await second.claim(code="123456")
        assert locked.value.code == "account_locked"
        assert locked.value.retry_after is not None
        assert locked.value.retry_after > 800


async def test_b_operator_on_another_process_runs_a_whole_session(cluster: Cluster, tmp_path: Path) -> None:
    """The agent and the operator both through the front door, on different processes: the session
    crosses the node-to-node link; the agent's process owns it (consent, the scope check of every
    input, the audit)."""
    cluster.enroll(tmp_path / "agent", "C-CL-2", via=None)
    dana = add_operator(cluster.brokers[0], "dana1")
    # Listening on the cluster's bus as a fourth node: consent changes are published (第31条1項④).
    bus = NatsBus("observer", url=SHARED_NATS_URL, prefix=cluster.prefix)
    consent: list[ConsentChanged] = []
    bus.subscribe(ConsentChanged, consent.append)
    await bus.start()
    support = start_support(tmp_path / "agent", "--test-pattern")
    try:
        for _ in range(100):
            if bus.state.ready:
                break
            await asyncio.sleep(0.1)
        assert bus.state.ready
        code = support.support_code()
        agents = holder(cluster.database_url, code)
        async with front_operator(cluster, PROCESSES - {agents}) as (op, where):
            assert where != agents  # not one process: the session must cross the link
            # Read back from each process's own /metrics: the agent only on its process, the
            # operator's console only on another.
            alone = [int(i == agents) for i in range(3)]
            await connected_until(cluster, lambda c: c == alone, f"only on {agents}", "agents")
            assert await connected(cluster) == [int(i == where) for i in range(3)]
            await login(op, dana)
            await _queued(op, "C-CL-2")
            claimed = await op.claim(code=code, scopes=["screen:view", "inventory:os", "input:control"])
            session = claimed.session_id
            assert claimed.contract_id == "C-CL-2"
            prompt = support.wait_for("Control your mouse and keyboard")
            assert "Dana1 (helpdesk)" in prompt
            await op.watch(session)
            support.type("1,2")  # the screen and the OS; not control
            state = await op.wait_state(session, lambda s: s.scopes.get("input:control") == "denied")
            assert state.scopes["screen:view"] == "granted"
            assert state.scopes["inventory:os"] == "granted"

            view = await op.next_event(InventoryView, timeout=30)
            assert isinstance(view, InventoryView)
            assert [item.item for item in view.items] == ["os"]
            canvas = await frames(op)
            assert canvas.pixels is not None

            # Input without control: refused by the agent's process, never applied.
            await input_needs_control(op, support, session, 10, 20)
            for _ in range(100):
                if len(consent) >= 2:
                    break
                await asyncio.sleep(0.1)
            node = f"broker-{agents + 1}"
            assert [(c.node, c.session_id, sorted(c.granted)) for c in consent[:2]] == [
                (node, session, ["inventory:os", "screen:view"]),
                (node, session, ["input:control", "inventory:os", "screen:view"]),
            ]

            await op.chat(session, "こんにちは、別のプロセスから")
            support.wait_for("こんにちは、別のプロセスから")
            support.type("見えています")
            while True:
                chat = await op.next_event(Chat)
                assert isinstance(chat, Chat)
                if chat.sender == "subscriber":
                    break
            assert chat.text == "見えています"

            await op.end(session)
            ended = await op.wait_state(session, lambda s: s.phase == "ended")
            assert ended.ended_by == "operator"
        assert support.proc.wait(30) == 0
    finally:
        support.stop()
        await bus.close()
    broker = cluster.brokers[where]
    receipts = broker.cli("audit", "receipts", session)
    assert "signature OK" in receipts.stdout, receipts.stdout
    verified = broker.cli("audit", "verify")
    assert "audit chain OK" in verified.stdout, verified.stdout


async def test_the_agents_process_restarts_and_the_session_goes_on_there(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The agent dials broker-1 only (no front door): broker-1 stops (SIGTERM) and comes back on the
    same port with the same node id; the agent resumes there, the restarted process adopts the session
    and the operator's process (broker-2) links again to the new incarnation."""
    cluster.enroll(tmp_path / "agent", "C-CL-3", via=0)
    gil = add_operator(cluster.brokers[0], "gil1")
    support = start_support(tmp_path / "agent", "--test-pattern")
    try:
        code = support.support_code()
        async with cluster.client(1) as op:
            session = await viewed_session(op, gil, support, code)
            await frames(op)

            cluster.brokers[0].stop()
            cluster.brokers[0].start()
            while not op.screen.empty():
                op.screen.get_nowait()
            canvas = await frames(op)  # frames again, from the restarted process
            assert canvas.pixels is not None
            state = await op.wait_state(session, lambda s: s.phase == "active")
            assert state.scopes["screen:view"] == "granted"
            await op.end(session)
            await op.wait_state(session, lambda s: s.phase == "ended")
        assert support.proc.wait(30) == 0
    finally:
        support.stop()
