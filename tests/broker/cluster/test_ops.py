"""``/metrics`` and ``/readyz`` answers (OpsEndpoints) over a real SQLite file and a real bus: who may
scrape, readiness from the last probe and the bus as it is, a stale probe is not ready."""

from __future__ import annotations

import asyncio
import http
import json
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from broker.cluster.bus import LocalBus
from broker.cluster.nats_bus import NatsBus
from broker.cluster.ops import OpsEndpoints
from broker.metrics import BrokerMetrics
from broker.storage.sqlite import SQLiteDatabase

from .natsserver import free_port, unique_prefix


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_metrics_only_for_configured_addresses() -> None:
    ops = OpsEndpoints(BrokerMetrics("node-x"))
    status, body, content_type = ops.metrics_answer("127.0.0.1")
    assert status is http.HTTPStatus.OK
    assert content_type.startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert "broker_info" in names
    assert ops.metrics_answer("::1")[0] is http.HTTPStatus.OK
    assert ops.metrics_answer("::ffff:127.0.0.1")[0] is http.HTTPStatus.OK  # dual-stack listener
    assert ops.metrics_answer("192.0.2.10")[0] is http.HTTPStatus.FORBIDDEN
    assert ops.metrics_answer("?")[0] is http.HTTPStatus.FORBIDDEN
    scraper = OpsEndpoints(BrokerMetrics("node-x"), metrics_from=["10.1.0.0/16"])
    assert scraper.metrics_answer("10.1.2.3")[0] is http.HTTPStatus.OK
    assert scraper.metrics_answer("127.0.0.1")[0] is http.HTTPStatus.FORBIDDEN


async def test_readiness_follows_the_database_probe_and_the_bus(tmp_path: Path) -> None:
    clock = Clock()
    metrics = BrokerMetrics("node-x")
    ops = OpsEndpoints(metrics, probe_interval=0.05, clock=clock)
    db = SQLiteDatabase(tmp_path / "broker.sqlite3")
    bus = LocalBus("node-x")
    ops.watch_bus(bus)
    try:
        status, body, _ = ops.readyz_answer(db, bus)  # before the first probe
        assert status is http.HTTPStatus.SERVICE_UNAVAILABLE
        assert json.loads(body)["checks"]["storage"]["detail"] == "not probed yet"
        for _ in range(500):
            if ops.last is not None:
                break
            await asyncio.sleep(0.01)
        status, body, _ = ops.readyz_answer(db, bus)
        answer = json.loads(body)
        assert answer["checks"]["storage"]["ok"] is True
        assert answer["checks"]["bus"] == {"ok": False, "detail": "connecting"}
        assert status is http.HTTPStatus.SERVICE_UNAVAILABLE  # the bus has not started
        await bus.start()
        assert ops.readyz_answer(db, bus)[0] is http.HTTPStatus.OK
        assert ops.readyz_answer(db, None)[0] is http.HTTPStatus.OK  # single process: no bus
        await ops.close()  # the probe stops: its last result grows old
        clock.now += 10
        status, body, _ = ops.readyz_answer(db, bus)
        assert status is http.HTTPStatus.SERVICE_UNAVAILABLE
        assert json.loads(body)["checks"]["storage"]["detail"] == "probe result is stale"
        text = ops.metrics_answer("127.0.0.1")[1].decode()
        assert 'broker_bus_state{state="connected"} 1.0' in text
        assert 'broker_storage_seconds_count{op="probe"}' in text
    finally:
        await ops.close()
        await bus.close()
        await db.close()


async def test_not_ready_while_nats_does_not_answer(tmp_path: Path) -> None:
    ops = OpsEndpoints(BrokerMetrics("node-x"), probe_interval=0.05)
    db = SQLiteDatabase(tmp_path / "broker.sqlite3")
    bus = NatsBus("node-x", url=f"nats://127.0.0.1:{free_port()}", prefix=unique_prefix(), reconnect_wait=0.2)
    await bus.start()
    try:
        ops.start(db)
        for _ in range(500):
            if ops.last is not None:
                break
            await asyncio.sleep(0.01)
        status, body, _ = ops.readyz_answer(db, bus)
        assert status is http.HTTPStatus.SERVICE_UNAVAILABLE
        assert json.loads(body)["checks"] == {
            "storage": json.loads(body)["checks"]["storage"] | {"ok": True},
            "bus": {"ok": False, "detail": "connecting"},
        }
    finally:
        await ops.close()
        await bus.close()
        await db.close()


async def test_closing_stops_the_probe_even_when_a_probe_ends_at_the_same_instant(tmp_path: Path) -> None:
    """A broker's shutdown hung in CI: on Python 3.11 ``asyncio.wait_for`` drops a cancellation that
    arrives as its inner await finishes, so the probe loop went on sleeping and ``close`` waited for
    it forever. Cancel the loop at every point of a probe, many times: each close returns."""
    db = SQLiteDatabase(tmp_path / "broker.sqlite3")
    try:
        ops = OpsEndpoints(BrokerMetrics("node-x"), probe_interval=0.0)
        for attempt in range(300):
            ops.start(db)
            for _ in range(attempt % 7):  # a different point of the probe each time
                await asyncio.sleep(0)
            closing = asyncio.create_task(ops.close())
            done, _ = await asyncio.wait({closing}, timeout=5)
            assert closing in done, f"close still waiting for the probe loop (attempt {attempt})"
    finally:
        for _ in range(1000):  # when it failed: cancel the stray loop until a cancellation holds
            probes = [t for t in asyncio.all_tasks() if t.get_name() == "readiness-probe"]
            if not probes:
                break
            for probe in probes:
                probe.cancel()
            await asyncio.sleep(0.001)
        await db.close()
