"""``bench.cluster_idle`` runs end to end at a tiny scale: several broker processes on one port,
one killed with SIGKILL, every agent back on the others, the echo and bare TLS baselines measured
(not a speed test: nothing here checks a time or a ratio, only that each figure was measured)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from bench.cluster_fixtures import ADMIN_URL
from tests.bench.run import last_json, run_bench

pytestmark = pytest.mark.e2e

TINY = ("--agents", "30", "--brokers", "2", "--per-process", "15", "--window", "1", "--max-settle", "4")


def _run(*args: str) -> dict[str, Any]:
    return last_json(
        run_bench(
            "bench.cluster_idle", *TINY, "--handshake-seconds", "1", "--max-minutes", "4", *args, timeout=300
        )
    )


def _check_storm(data: dict[str, Any]) -> None:
    storm = data["storm"]
    killed = int(storm["killed_node"][1:]) - 1
    assert storm["dropped"] > 0
    assert storm["all_back_s"] is not None, storm
    assert storm["reconnected"] == storm["dropped"]
    assert storm["gave_up"] == 0
    # Every reconnecting agent offered the TLS session of its first connection, as the agent does.
    assert storm["offered"] == storm["reconnected"]
    # The killed process holds nothing; the survivor holds every agent.
    assert storm["counts_after"][killed] == 0
    assert sum(storm["counts_after"]) >= 30


def test_cluster_bench_on_sqlite_measures_brokers_storm_and_baselines() -> None:
    data = _run("--profile")
    for server in ("broker", "echo"):
        row = data[server]
        assert row["connected"] == 30
        assert row["drops"] == 0
        assert row["kib_per_agent"] > 0
        assert len(row["per_process"]) == 2
    _check_storm(data)
    # --profile: py-spy recorded the busiest broker in the idle window and a survivor in the storm.
    for phase in (data["broker"], data["storm"]):
        assert "error" not in phase["profile"], phase["profile"]
        assert phase["profile"]["pid"] > 0
    assert data["echo"]["profile"] is None  # only brokers are profiled
    assert data["broker"]["floor_before_cpu_pct"] >= 0
    assert data["tls_bare"]["handshakes"] > 0
    assert data["tls_bare"]["failed"] == 0


def test_cluster_bench_on_postgresql_drops_its_database() -> None:
    data = _run("--database", "postgres", "--no-echo")
    assert data["broker"]["connected"] == 30
    _check_storm(data)
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        left = admin.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'bench_cluster_%'"
        ).fetchall()
    assert left == []
