"""The issue-15 benches run end to end at a tiny scale and report every row (not a speed test:
nothing here checks a time or a ratio, only that each figure was measured, beside its baseline)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.bench.run import last_json, run_bench

pytestmark = pytest.mark.e2e


def _run(*args: str) -> dict[str, Any]:
    return last_json(run_bench(*args))


def test_idle_heartbeat_bench_measures_broker_and_bare_server_under_each_heartbeat() -> None:
    data = _run("bench.idle_heartbeat", "--agents", "40", "--window", "2", "--settle", "1")
    rows = {(r["server"], r["heartbeat"]): r for r in data["rows"]}
    heartbeats = ("frame/300", "json/20", "frame/20", "none")
    assert set(rows) == {(s, h) for s in ("broker", "echo") for h in heartbeats}
    for row in rows.values():
        assert row["agents"] == 40
        assert row["drops"] == 0
    # 40 agents at a 20 s interval: 2 heartbeats a second were asked for; none when switched off.
    assert rows[("broker", "none")]["heartbeats_per_s"] == 0
    assert rows[("echo", "json/20")]["heartbeats_per_s"] > 0


def test_tls_handshake_bench_resumes_every_handshake_when_asked() -> None:
    data = _run("bench.tls_handshakes", "--seconds", "1", "--concurrency", "2")
    rows = {(r["server"], r["resume"]): r for r in data["rows"]}
    assert set(rows) == {("broker", False), ("broker", True), ("bare", False), ("bare", True)}
    for (_, resume), row in rows.items():
        assert row["failed"] == 0
        assert row["handshakes"] > 0
        assert row["reused"] == (row["handshakes"] if resume else 0)
