"""Metrics render as Prometheus text that Prometheus' own parser reads back; readiness follows the
database and the bus."""

from __future__ import annotations

import asyncio
import gc
import json
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from broker.cluster.bus import LocalBus
from broker.cluster.nats_bus import NatsBus
from broker.cluster.signals import CutAgent
from broker.metrics import BrokerMetrics, probe_storage, readiness, render
from broker.storage import StorageBusy, open_database, open_storage
from broker.storage.postgres import PostgresDatabase
from protocol.errors import ErrorCode
from tests.broker.cluster.natsserver import free_port, unique_prefix
from tests.broker.storage.conftest import new_schema_url, postgres_database  # noqa: F401 (fixture)


def samples(metrics: BrokerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = render(metrics).decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            assert isinstance(s, Sample)
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_every_metric_renders_and_parses_back() -> None:
    m = BrokerMetrics("node-a")
    m.set_connected(agents=1200, operators=7)
    m.set_sessions({"waiting": 3, "active": 2})
    m.count_relay("to_operator", 65_536)
    m.count_relay("to_operator", 1_000)
    m.count_relay("to_agent", 40)
    m.count_drop("stale_frame", 5)
    m.count_handshake("agent", ok=True)
    m.count_handshake("agent", ok=False)
    m.count_refusal(ErrorCode.RATE_LIMITED)
    m.count_refusal("code_invalid")
    m.count_refusal("<script>")  # not a code: counted as internal, no new series
    with m.time_storage("write"):
        pass
    with pytest.raises(RuntimeError), m.time_storage("read"):
        raise RuntimeError("database gone")
    got = samples(m)
    assert got[("broker_info", (("node", "node-a"),))] == 1
    assert got[("broker_agents_connected", ())] == 1200
    assert got[("broker_operators_connected", ())] == 7
    assert got[("broker_sessions", (("phase", "waiting"),))] == 3
    assert got[("broker_sessions", (("phase", "active"),))] == 2
    assert got[("broker_sessions", (("phase", "consent"),))] == 0
    assert got[("broker_relay_bytes_total", (("direction", "to_operator"),))] == 66_536
    assert got[("broker_relay_bytes_total", (("direction", "to_agent"),))] == 40
    assert got[("broker_relay_drops_total", (("reason", "stale_frame"),))] == 5
    assert got[("broker_relay_drops_total", (("reason", "queue_full"),))] == 0
    assert got[("broker_handshakes_total", (("outcome", "ok"), ("path", "agent")))] == 1
    assert got[("broker_handshakes_total", (("outcome", "failed"), ("path", "agent")))] == 1
    assert got[("broker_refusals_total", (("code", "rate_limited"),))] == 1
    assert got[("broker_refusals_total", (("code", "code_invalid"),))] == 1
    assert got[("broker_refusals_total", (("code", "internal"),))] == 1
    assert got[("broker_storage_seconds_count", (("op", "write"),))] == 1
    assert got[("broker_storage_seconds_count", (("op", "read"),))] == 1
    assert got[("broker_storage_errors_total", (("op", "read"),))] == 1
    assert not any("<script>" in str(key) for key in got)
    # A later set replaces the phase counts; a phase that left is 0, not stale.
    m.set_sessions({"active": 1})
    assert samples(m)[("broker_sessions", (("phase", "waiting"),))] == 0
    with pytest.raises(ValueError, match="unknown session phases"):
        m.set_sessions({"hacked": 1})


def test_garbage_collection_time_is_counted_per_generation() -> None:
    m = BrokerMetrics("node-gc")
    before = samples(m)
    junk: list[object] = []
    for _ in range(2_000):  # reference cycles only the cyclic collector frees
        cycle: list[object] = []
        cycle.append(cycle)
        junk.append(cycle)
    del junk, cycle
    gc.collect()  # a full collection, timed by the callback
    after = samples(m)
    full = (("generation", "2"),)
    assert after[("broker_gc_collections_total", full)] >= before[("broker_gc_collections_total", full)] + 1
    assert after[("broker_gc_seconds_total", full)] > before[("broker_gc_seconds_total", full)]
    assert after[("broker_gc_longest_seconds", full)] > 0
    # Two registries in one process read the one timer: the callback is installed once.
    BrokerMetrics("node-gc-2")
    assert sum(type(cb).__name__ == "_Timer" for cb in gc.callbacks) == 1


def test_two_brokers_in_one_process_have_their_own_registries() -> None:
    a, b = BrokerMetrics("a"), BrokerMetrics("b")
    a.set_connected(agents=1, operators=0)
    assert samples(b)[("broker_agents_connected", ())] == 0


async def test_bus_state_and_signals_are_exported() -> None:
    m = BrokerMetrics("local")
    bus = LocalBus("local")
    m.watch_bus(bus)
    assert samples(m)[("broker_bus_state", (("state", "connecting"),))] == 1
    bus.subscribe(CutAgent, lambda s: None)
    await bus.start()
    await bus.publish(CutAgent(node="local", at=1.0, serials=("AB",)))
    await asyncio.sleep(0)
    got = samples(m)
    assert got[("broker_bus_state", (("state", "connected"),))] == 1
    assert got[("broker_bus_state", (("state", "connecting"),))] == 0
    assert got[("broker_bus_signals_published_total", (("kind", "CutAgent"),))] == 1
    assert got[("broker_bus_signals_received_total", (("kind", "CutAgent"),))] == 1
    assert got[("broker_bus_signals_received_total", (("kind", "WakeUp"),))] == 0
    assert got[("broker_bus_losses_total", ())] == 0
    await bus.close()


async def test_ready_when_the_database_answers_and_the_bus_is_connected(tmp_path: Path) -> None:
    storage = await open_storage(tmp_path / "broker.sqlite3")
    bus = LocalBus()
    m = BrokerMetrics("local")
    try:
        not_yet = await readiness(db=storage.db, bus=bus, metrics=m)
        assert not not_yet.ready
        assert not_yet.status == 503
        assert json.loads(not_yet.body())["checks"]["bus"] == {"ok": False, "detail": "connecting"}
        await bus.start()
        ready = await readiness(db=storage.db, bus=bus, metrics=m)
        assert ready.ready
        assert ready.status == 200
        body = json.loads(ready.body())
        assert body["ready"] is True
        assert body["checks"]["storage"]["ok"] is True
        # The embedded default has no bus: storage alone decides.
        assert (await readiness(db=storage.db, bus=None)).ready
        assert samples(m)[("broker_storage_seconds_count", (("op", "probe"),))] == 2
    finally:
        await bus.close()
        await storage.close()


async def test_not_ready_while_nats_does_not_answer(tmp_path: Path) -> None:
    bus = NatsBus("node-a", url=f"nats://127.0.0.1:{free_port()}", prefix=unique_prefix(), reconnect_wait=0.2)
    db = await open_database(tmp_path / "broker.sqlite3")
    try:
        await bus.start()
        result = await readiness(db=db, bus=bus)
        assert not result.ready
        assert [c.ok for c in result.checks] == [True, False]
    finally:
        await bus.close()
        await db.close()


async def test_not_ready_when_postgresql_is_gone(storage_url_pg: str) -> None:
    db = await open_database(storage_url_pg)
    assert (await probe_storage(db)).ok
    await db.close()  # the pool is gone: every transaction fails, as with the server down
    check = await probe_storage(db, timeout=2.0)
    assert not check.ok
    assert check.detail.startswith(("unavailable", "no answer"))
    assert "postgres" not in check.detail.lower()  # no URL, host or user in the detail


async def test_waiting_for_a_database_connection_is_visible(storage_url_pg: str) -> None:
    """An operator sees a pool that is too small or a database that is slow: transactions that
    waited, how long, and those that got no connection (they became storage_unavailable)."""
    db = PostgresDatabase(storage_url_pg, max_connections=1, connect_timeout=0.3)
    await db.open()
    metrics = BrokerMetrics("n1")
    metrics.watch_pool(db)
    try:
        assert samples(metrics)[("broker_storage_pool_connections", (("state", "open"),))] == 1
        holding, release = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with db.read_statement() as tx:
                await tx.fetchone("SELECT 1")
                holding.set()
                await release.wait()

        holder = asyncio.create_task(hold())
        await holding.wait()
        with pytest.raises(StorageBusy):
            async with db.read_statement() as tx:  # the one connection is taken: waits, then gives up
                await tx.fetchone("SELECT 1")
        waiter = asyncio.create_task(probe_storage(db, timeout=5.0))
        await asyncio.sleep(0.1)
        now = samples(metrics)
        assert now[("broker_storage_pool_waiting", ())] >= 1  # the probe (and the one that gave up)
        release.set()
        await holder
        assert (await waiter).ok
        after = samples(metrics)
        assert after[("broker_storage_pool_timeouts_total", ())] == 1
        assert after[("broker_storage_pool_queued_total", ())] == 2
        assert after[("broker_storage_pool_wait_seconds_total", ())] >= 0.3
        assert after[("broker_storage_pool_waiting", ())] == 0
    finally:
        await db.close()


async def test_sqlite_has_no_pool_to_show(tmp_path: Path) -> None:
    db = await open_database(tmp_path / "b.sqlite3")
    metrics = BrokerMetrics("n1")
    metrics.watch_pool(db)
    try:
        assert not [key for key in samples(metrics) if key[0].startswith("broker_storage_pool")]
    finally:
        await db.close()


@pytest.fixture
def storage_url_pg(request: pytest.FixtureRequest) -> str:
    database: str = request.getfixturevalue("postgres_database")
    return new_schema_url(database)
