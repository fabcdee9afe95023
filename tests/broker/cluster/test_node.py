"""ClusterNode: the server's one handle on the cluster. Two nodes on an in-process hub and on the real
NATS server exchange cuts and presence; a silent node's agents are marked offline in a real database
(a SQLite file and PostgreSQL); the admin CLI's one-shot publisher reaches a broker's cut handler."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from broker.cluster.bus import BusState, LocalBus, LocalHub
from broker.cluster.link import ClusterCA, dial
from broker.cluster.node import ClusterConfig, ClusterNode, NodeCounts, cut_code, publish_cut_once
from broker.cluster.signals import ConsentChanged, CutAgent, InvalidSignal, SessionRequested
from broker.storage import Storage
from protocol.errors import ErrorCode
from tests.broker.storage.conftest import postgres_database, storage, storage_url  # noqa: F401
from tests.broker.storage.test_contract_records import enrolled

from .natsserver import PrivateNats, require_shared_nats, unique_prefix


def fast(**kw: Any) -> ClusterConfig:
    """Heartbeats every 50 ms, silence after 300 ms (the defaults are 5 s and 15 s)."""
    return ClusterConfig(heartbeat_interval=0.05, silence=0.3, **kw)


async def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll a condition (hang guard, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def local_pair(**kw: Any) -> tuple[ClusterNode, ClusterNode]:
    hub = LocalHub()
    a = ClusterNode(fast(), bus=LocalBus("node-a", hub=hub), **kw)
    b = ClusterNode(fast(), bus=LocalBus("node-b", hub=hub), **kw)
    return a, b


@pytest.fixture
async def nats_pair() -> AsyncIterator[tuple[ClusterNode, ClusterNode]]:
    url = require_shared_nats()
    prefix = unique_prefix()
    a = ClusterNode(fast(node_id="node-a", nats_url=url, prefix=prefix))
    b = ClusterNode(fast(node_id="node-b", nats_url=url, prefix=prefix))
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def start_both(a: ClusterNode, b: ClusterNode) -> None:
    await a.start()
    await b.start()
    await wait_for(lambda: a.ready and b.ready, 5, "both buses ready")
    # Each has heard the other's heartbeat: both subscriptions are on the server.
    await wait_for(lambda: len(a.nodes()) == 2 and len(b.nodes()) == 2, 5, "both nodes known")


async def test_a_cut_published_on_one_node_reaches_every_node_in_process() -> None:
    a, b = local_pair()
    cuts: dict[str, list[CutAgent]] = {"a": [], "b": []}
    a.on_cut(cuts["a"].append)
    b.on_cut(cuts["b"].append)
    await start_both(a, b)
    try:
        assert await a.publish_cut(serials=("C0FFEE",), reason="revoked")
        assert await b.publish_cut(contract_id="C-9", reason="terminated")
        await wait_for(lambda: len(cuts["a"]) == 2 and len(cuts["b"]) == 2, 5, "cuts on both nodes")
        # The sender's own handler runs too: an agent held by the revoking node is cut the same way.
        assert [(c.node, c.serials, c.contract_id) for c in cuts["b"]] == [
            ("node-a", ("C0FFEE",), None),
            ("node-b", (), "C-9"),
        ]
        assert [cut_code(c) for c in cuts["a"]] == [ErrorCode.CERT_REVOKED, ErrorCode.SUBSCRIBER_TERMINATED]
        with pytest.raises(InvalidSignal):
            await a.publish_cut()  # nothing to cut
        with pytest.raises(InvalidSignal):
            await a.publish_cut(serials=("not hex!",))
    finally:
        await a.close()
        await b.close()


async def test_presence_heartbeat_counts_and_holder() -> None:
    hub = LocalHub()
    a = ClusterNode(fast(), bus=LocalBus("node-a", hub=hub), counts=lambda: NodeCounts(3, 1, 2))
    b = ClusterNode(fast(), bus=LocalBus("node-b", hub=hub))
    await start_both(a, b)
    try:
        assert b.holder("AB12") is None
        assert await a.agent_online("AB12", "C-1", True)
        await wait_for(lambda: b.holder("AB12") == "node-a", 5, "b learns who holds AB12")
        assert a.holder("AB12") == "node-a"
        seen_by_b = {n.node: n for n in b.nodes()}
        assert (seen_by_b["node-a"].agents, seen_by_b["node-a"].operators, seen_by_b["node-a"].sessions) == (
            3,
            1,
            2,
        )
        # The agent moves to b (a's "offline" arrives late): b is the holder for both.
        assert await b.agent_online("AB12", "C-1", True)
        assert await a.agent_online("AB12", "C-1", False)
        await wait_for(lambda: a.holder("AB12") == "node-b", 5, "a learns the move")
        await asyncio.sleep(0.05)
        assert b.holder("AB12") == "node-b"
    finally:
        await a.close()
        await b.close()
    assert not await a.agent_online("AB12", "C-1", True)  # closed: not sent, not raised


async def test_session_signals_reach_the_other_node() -> None:
    a, b = local_pair()
    requested: list[SessionRequested] = []
    consent: list[ConsentChanged] = []
    b.on_session_requested(requested.append)
    b.on_consent_changed(consent.append)
    await start_both(a, b)
    try:
        assert await a.session_requested("sess-1", "C-1")
        assert await a.consent_changed("sess-1", ("screen:view", "input:control"))
        await wait_for(lambda: requested and consent, 5, "session signals")
        assert (requested[0].session_id, requested[0].contract_id) == ("sess-1", "C-1")
        assert consent[0].granted == ("screen:view", "input:control")
    finally:
        await a.close()
        await b.close()


async def test_a_silent_node_s_agents_are_marked_offline_in_the_database(storage: Storage) -> None:  # noqa: F811
    """Node B holds an agent (its presence row says so) and stops heartbeating, as a killed process
    would: node A marks B's agents offline in the database (SQLite file and PostgreSQL)."""
    t0 = time.time()
    await enrolled(storage, "C-1", "aa", at=t0)
    await enrolled(storage, "C-1", "bb", at=t0)
    await storage.presence.set_online("aa", online=True, now=t0, peer="127.0.0.1", node="node-a")
    await storage.presence.set_online("bb", online=True, now=t0, peer="127.0.0.2", node="node-b")
    a, b = local_pair(storage=storage)
    gone: list[list[str]] = []
    a.on_gone(gone.append)
    await start_both(a, b)
    try:
        # start() marks the node's own old rows offline (a restarted process with a stable node id).
        online = {p.serial: p.online for p in await storage.presence.list_agents()}
        assert online == {"aa": False, "bb": False}
        await storage.presence.set_online("bb", online=True, now=t0 + 1, peer="127.0.0.2", node="node-b")
        await b.watch.close()  # b falls silent (its bus stays up: only the heartbeats stop)
        await wait_for(lambda: gone == [["node-b"]], 5, "node-b gone")
        online = {p.serial: p.online for p in await storage.presence.list_agents()}
        assert online == {"aa": False, "bb": False}
        assert [n.node for n in a.nodes()] == ["node-a"]
    finally:
        await a.close()
        await b.close()


async def test_over_nats_a_cut_on_one_node_cuts_on_the_other(
    nats_pair: tuple[ClusterNode, ClusterNode],
) -> None:
    a, b = nats_pair
    arrived: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def cut(signal: CutAgent) -> None:
        if signal.serials == ("C0FFEE",) and not arrived.done():
            arrived.set_result(time.monotonic())

    b.on_cut(cut)
    await start_both(a, b)
    sent = time.monotonic()
    assert await a.publish_cut(serials=("C0FFEE",))
    latency = await asyncio.wait_for(arrived, 5) - sent
    print(f"ClusterNode cut A→B over NATS: {latency * 1000:.2f} ms")
    assert latency < 1.0  # the issue's bound for revoke on one process → cut on another
    assert await a.agent_online("BEEF", "C-1", True)
    await wait_for(lambda: b.holder("BEEF") == "node-a", 5, "presence over NATS")


async def test_the_admin_cli_s_one_shot_publisher_reaches_a_broker(
    nats_pair: tuple[ClusterNode, ClusterNode],
) -> None:
    a, b = nats_pair
    got: list[CutAgent] = []
    b.on_cut(got.append)
    await start_both(a, b)
    prefix = a.config.prefix
    assert await publish_cut_once(a.config.nats_url, contract_id="C-7", reason="suspended", prefix=prefix)
    await wait_for(lambda: len(got) == 1, 5, "the CLI's cut")
    assert got[0].node.startswith("cli-")
    assert cut_code(got[0]) is ErrorCode.SUBSCRIBER_SUSPENDED
    # Without NATS (embedded single process) there is nothing to publish through: the poll cuts.
    assert not await publish_cut_once(None, serials=("AB",))


async def test_the_one_shot_publisher_gives_up_when_nats_does_not_answer(tmp_path: Path) -> None:
    server = PrivateNats(tmp_path)  # never started: nothing answers on its port
    assert not await publish_cut_once(server.url, serials=("AB",), prefix=unique_prefix(), timeout=0.5)


async def test_recovered_hook_runs_after_nats_comes_back(tmp_path: Path) -> None:
    server = PrivateNats(tmp_path)
    server.start()
    node = ClusterNode(ClusterConfig(node_id="node-a", nats_url=server.url, prefix=unique_prefix()))
    recovered: list[bool] = []

    async def reread() -> None:
        recovered.append(True)

    node.on_recovered(reread)
    try:
        await node.start()
        await wait_for(lambda: node.ready, 5, "connected")
        server.stop()
        await wait_for(lambda: node.state is BusState.LOST, 10, "lost")
        assert recovered == []
        server.start()
        await wait_for(lambda: recovered == [True], 15, "the recovered hook")
    finally:
        await node.close()
        server.stop()


async def test_the_link_listener_is_announced_in_the_heartbeat() -> None:
    now = datetime.now(UTC)
    ca = ClusterCA.create(now=now)
    frames: list[tuple[str, bytes]] = []
    hub = LocalHub()
    a = ClusterNode(
        fast(link_listen=("127.0.0.1", 0), link_credentials=ca.issue("node-a", host="127.0.0.1", now=now)),
        bus=LocalBus("node-a", hub=hub),
        on_link_frame=lambda link, frame: frames.append((link.peer or "", frame.payload)),
    )
    b = ClusterNode(fast(), bus=LocalBus("node-b", hub=hub))
    await start_both(a, b)
    try:
        address = b.address("node-a")
        assert address is not None
        assert address == a.link_address
        host, port = address.rsplit(":", 1)
        link = await dial(
            ca.issue("node-b", host="127.0.0.1", now=now), "node-a", host, int(port), lambda *_: None
        )
        link.send_text("sess-1", b'{"type":"ping"}')
        await wait_for(lambda: frames, 5, "a frame over the link")
        assert frames == [("node-b", b'{"type":"ping"}')]
        link.close()
    finally:
        await a.close()
        await b.close()
    with pytest.raises(ValueError, match="credentials"):
        ClusterNode(ClusterConfig(link_listen=("127.0.0.1", 0)), bus=LocalBus("x"))
