"""``bench.cluster_relay`` runs end to end at a tiny scale: two broker processes on a PostgreSQL
database of their own and NATS, sessions in one process and across the two, both figures of the
issue-15 goal reported (not a speed test: nothing here checks a time or a ratio's value, only that
each figure was measured and the database was dropped)."""

from __future__ import annotations

import psycopg
import pytest

from bench.cluster_fixtures import ADMIN_URL
from tests.bench.run import last_json, run_bench

pytestmark = pytest.mark.e2e


def test_cluster_relay_reports_the_ratio_and_the_added_p99() -> None:
    result = run_bench(
        *("bench.cluster_relay", "--sessions", "3", "--rounds", "1"),
        *("--seconds", "1", "--latency-seconds", "1", "--max-minutes", "3"),
    )
    assert "throughput cross / same" in result.stdout  # the printed table
    data = last_json(result)
    (round_,) = data["rounds"]
    for name in ("same", "cross"):
        moved = round_["throughput"][name]
        assert moved["delivered"] > 0
        assert moved["mb_per_s"] > 0
        paced = round_["latency"][name]
        # every paced update and input of the three sessions arrived and was timed
        assert paced["update"]["n"] == paced["offered"] == paced["target"] == 3 * 30
        assert paced["input"]["n"] == 3 * 30
    # across processes both brokers work; in one process only A does
    assert all(c > 0 for c in round_["throughput"]["cross"]["cpu_pct"])
    summary = data["summary"]
    assert summary["throughput_ratio"] > 0
    assert isinstance(summary["added_update_p99_ms"], float)
    assert isinstance(summary["added_input_p99_ms"], float)
    assert data["broker_error_lines"] == [0, 0]
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        left = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (data["database_name"],)
        ).fetchall()
    assert left == []
