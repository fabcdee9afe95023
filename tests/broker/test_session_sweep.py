"""The sweep of orphaned sessions (broker/session_sweep.py, docs/cluster.md §6a) on a real PostgreSQL
database: two "processes" (two storages on one schema, two sweeps) and an adopting one, on fake
clocks. A claimed session whose holder died and whose agent did not come back ends exactly once,
with the end record of a grace expiry, and the audit chain stays valid; a live holder, an agent back
on a live node, a grace not yet passed, a bus that is not ready and an adoption all keep it open."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from broker.session_sweep import SessionSweep, Swept
from broker.storage import Storage, open_storage
from tests.broker.storage.conftest import new_schema_url, temporary_database
from tests.broker.storage.test_contract_records import T0, enrolled

GRACE = 30.0


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    yield from temporary_database("broker_sweep")


@pytest.fixture
async def two(database: str) -> AsyncIterator[tuple[Storage, Storage]]:
    """Two processes' storages on one schema of a real PostgreSQL database."""
    url = new_schema_url(database)
    first = await open_storage(url)
    second = await open_storage(url)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


class Clocks:
    def __init__(self) -> None:
        self.wall = T0 + 100
        self.mono = 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def sweeper(
    storage: Storage, node: str, clocks: Clocks, live: set[str], swept: list[Swept], *, ready: bool = True
) -> SessionSweep:
    return SessionSweep(
        storage,
        node=node,
        live_nodes=lambda: live,
        ready=lambda: ready,
        grace=GRACE,
        on_swept=swept.append,
        settle=15.0,
        clock=lambda: clocks.wall,
        monotonic=lambda: clocks.mono,
    )


async def held_by(storage: Storage, session_id: str, node: str, *, serial: str = "aa") -> None:
    """A session claimed on ``node`` whose agent was last seen on it at T0 + 100 (then ``node`` died:
    its presence rows marked offline by the others)."""
    await enrolled(storage, "C-1", serial)
    await storage.sessions.opened(
        session_id, contract_id="C-1", serial=serial, operator="alice", now=T0 + 50, node=node
    )
    await storage.presence.set_online(serial, online=True, now=T0 + 100, peer="198.51.100.7", node=node)
    await storage.presence.mark_node_offline(node, now=T0 + 115)


async def test_an_orphaned_session_ends_once_with_the_grace_expiry_record(
    two: tuple[Storage, Storage],
) -> None:
    a, c = two
    await held_by(a, "s1", "broker-2")
    clocks, swept = Clocks(), list[Swept]()
    live = {"broker-1", "broker-3"}
    sweeps = [sweeper(a, "broker-1", clocks, live, swept), sweeper(c, "broker-3", clocks, live, swept)]

    assert [await s.sweep() for s in sweeps] == [[], []]  # the bus just became ready: settling
    clocks.advance(20)
    assert [await s.sweep() for s in sweeps] == [[], []]  # orphaned, seen now for the first time
    assert (await a.sessions.get("s1")).ended_at is None  # type: ignore[union-attr]
    clocks.advance(GRACE)
    results = await asyncio.gather(*(s.sweep() for s in sweeps))  # both at once: one ends it

    assert sorted(len(r) for r in results) == [0, 1]
    assert [s.session_id for s in swept] == ["s1"]
    assert swept[0].held_by == "broker-2"
    row = await c.sessions.get("s1")
    assert row is not None
    assert (row.ended_at, row.ended_by, row.reason) == (clocks.wall, "broker", "agent_lost")
    ends = [e for e in await a.audit.entries(subject="s1") if e.action == "session.end"]
    assert len(ends) == 1
    details = ends[0].details
    assert (details["reason"], details["ended_by"]) == ("agent_lost", "broker")
    assert (details["held_by"], details["contract"], details["operator"]) == ("broker-2", "C-1", "alice")
    assert details["swept_by"] in ("broker-1", "broker-3")
    report = await c.audit.verify()
    assert report.ok, report.problems
    # the next sweeps find nothing, and the adoption of the ended session is refused
    clocks.advance(60)
    assert [await s.sweep() for s in sweeps] == [[], []]
    assert not await c.sessions.adopted("s1", node="broker-3")


async def test_what_keeps_a_session_open(two: tuple[Storage, Storage]) -> None:
    a, c = two
    await held_by(a, "alive", "broker-1", serial="a1")  # its holder is alive (in its own grace)
    await held_by(a, "back", "broker-2", serial="a2")  # its agent is back, on a live node
    await a.presence.set_online("a2", online=True, now=T0 + 140, peer="198.51.100.8", node="broker-3")
    await held_by(a, "moved", "broker-2", serial="a3")  # adopted between two sweeps
    clocks, swept = Clocks(), list[Swept]()
    live = {"broker-1", "broker-3"}
    sweep = sweeper(c, "broker-3", clocks, live, swept)
    halted = sweeper(c, "broker-3", clocks, live, swept, ready=False)
    await sweep.sweep()
    await halted.sweep()
    clocks.advance(20)
    await sweep.sweep()
    await halted.sweep()
    assert await a.sessions.adopted("moved", node="broker-3")
    clocks.advance(GRACE)
    await sweep.sweep()
    await halted.sweep()
    clocks.advance(3600)
    await sweep.sweep()
    await halted.sweep()
    assert swept == []
    for session_id in ("alive", "back", "moved"):
        row = await c.sessions.get(session_id)
        assert row is not None, session_id
        assert row.ended_at is None, session_id
    assert (await c.sessions.get("moved")).node == "broker-3"  # type: ignore[union-attr]


async def test_an_agent_seen_recently_is_given_its_grace(two: tuple[Storage, Storage]) -> None:
    """The wall-clock half of the rule: the agent was seen (presence ``last_seen``) less than the
    grace ago, so even a sweeper that has watched the row long enough waits."""
    a, c = two
    await held_by(a, "s1", "broker-2")
    clocks, swept = Clocks(), list[Swept]()
    clocks.mono -= 100  # this sweeper has been up (and saw the row) long before
    sweep = sweeper(c, "broker-3", clocks, {"broker-3"}, swept)
    clocks.wall = T0 + 100  # the agent was seen just now
    await sweep.sweep()
    clocks.mono += 20
    await sweep.sweep()
    clocks.mono += GRACE + 5
    clocks.wall = T0 + 100 + GRACE - 1  # its grace has not passed on the wall clock
    assert await sweep.sweep() == []
    clocks.wall = T0 + 100 + GRACE
    assert [s.session_id for s in await sweep.sweep()] == ["s1"]
