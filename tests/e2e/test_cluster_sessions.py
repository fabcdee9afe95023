"""Sessions across broker processes (issue 15): three real broker processes on one PostgreSQL
database and the NATS server, a real enrolled agent, operators with the helpdesk client, each on a
process of its own. Support codes are single use across the cluster, code-guess lockouts hold on
every process, and every process's operators see the waiting requests of all of them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.cluster.nats_bus import NatsBus
from broker.cluster.signals import ConsentChanged
from helpdesk import HelpdeskClient, HelpdeskError
from helpdesk.canvas import Canvas
from protocol.messages import Chat, InventoryView
from tests.broker.cluster.natsserver import SHARED_NATS_URL
from tests.e2e.cluster import Cluster, cluster_database, input_needs_control, start_cluster
from tests.helpers import add_operator, login, start_support

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    yield from cluster_database()


@pytest.fixture(scope="module")
def cluster(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = start_cluster(database_url, tmp_path_factory.mktemp("cluster"))
    try:
        yield running
    finally:
        running.stop()


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
    cluster.enroll(tmp_path / "agent", "C-CL-1", via=0)  # the agent is held by broker-1
    accounts = [add_operator(cluster.brokers[0], name) for name in ("alice1", "bob1", "carol1")]
    support = start_support(tmp_path / "agent", "--test-pattern")
    try:
        code = support.support_code()
        async with cluster.client(1) as bob, cluster.client(2) as carol:
            await login(bob, accounts[1])
            await login(carol, accounts[2])
            # The request held by broker-1 is waiting in the queue of broker-2 and broker-3 too.
            await _queued(bob, "C-CL-1")
            await _queued(carol, "C-CL-1")
            async with cluster.client(0) as alice:
                await login(alice, accounts[0])
                claimed = await alice.claim(code=code)
                assert claimed.contract_id == "C-CL-1"
                for other in (bob, carol):
                    with pytest.raises(HelpdeskError) as refused:
                        await other.claim(code=code)
                    assert refused.value.code == "code_invalid"
                # Claimed: gone from every process's queue.
                await _queued(bob, "C-CL-1", present=False)
                await _queued(carol, "C-CL-1", present=False)
                await alice.end(claimed.session_id)
    finally:
        support.stop()


async def test_code_guess_lockout_holds_on_every_process(cluster: Cluster) -> None:
    mallory = add_operator(cluster.brokers[0], "mallory1")
    async with cluster.client(1) as on_two, cluster.client(2) as on_three:
        await login(on_two, mallory)
        assert on_two.login_info is not None
        await on_three.auth(on_two.login_info.token)  # the same login on another process (no TOTP replay)
        # Ten wrong codes in a row on broker-2 (no request is waiting: every code is wrong) ...
        for guess in range(10):
            with pytest.raises(HelpdeskError) as wrong:
                await on_two.claim(code=f"{guess:06d}")
            assert wrong.value.code == "code_invalid"
        # ... and broker-3 refuses the eleventh: the lockout is the cluster's, not one process's.
        with pytest.raises(HelpdeskError) as locked:
            await on_three.claim(code="123456")
        assert locked.value.code == "account_locked"
        assert locked.value.retry_after is not None
        assert locked.value.retry_after > 800


async def _keyframe(op: HelpdeskClient) -> Canvas:
    canvas = Canvas()
    while canvas.keyframes == 0:
        canvas.apply(await asyncio.wait_for(op.screen.get(), 30))
    return canvas


async def test_b_operator_on_another_process_runs_a_whole_session(cluster: Cluster, tmp_path: Path) -> None:
    """The agent on broker-1, the operator on broker-2: the session crosses the node-to-node link;
    broker-1 owns it (consent, the scope check of every input, the audit)."""
    cluster.enroll(tmp_path / "agent", "C-CL-2", via=0)
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
        async with cluster.client(1) as op:
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
            canvas = await _keyframe(op)
            assert canvas.pixels is not None

            # Input without control: refused by the agent's process, never applied.
            await input_needs_control(op, support, session, 10, 20)
            for _ in range(100):
                if len(consent) >= 2:
                    break
                await asyncio.sleep(0.1)
            assert [(c.node, c.session_id, sorted(c.granted)) for c in consent[:2]] == [
                ("broker-1", session, ["inventory:os", "screen:view"]),
                ("broker-1", session, ["input:control", "inventory:os", "screen:view"]),
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
    broker = cluster.brokers[0]
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
            await login(op, gil)
            session = (await op.claim(code=code, scopes=["screen:view"])).session_id
            support.wait_for("View your screen")
            await op.watch(session)
            support.type("1")
            await op.wait_state(session, lambda s: s.scopes.get("screen:view") == "granted")
            await _keyframe(op)

            cluster.brokers[0].stop()
            cluster.brokers[0].start()
            while not op.screen.empty():
                op.screen.get_nowait()
            canvas = await _keyframe(op)  # frames again, from the restarted process
            assert canvas.pixels is not None
            state = await op.wait_state(session, lambda s: s.phase == "active")
            assert state.scopes["screen:view"] == "granted"
            await op.end(session)
            await op.wait_state(session, lambda s: s.phase == "ended")
        assert support.proc.wait(30) == 0
    finally:
        support.stop()
