"""The benchmark harness's smallest configuration runs end to end and reports every figure.

Not a performance test: nothing here checks a time, only that each figure is there and sane
(counts add up, rates are positive, the baselines were measured in the same run).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.bench.run import run_bench

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    result = run_bench("bench", "--smoke", "--json", str(out / "r.json"), "--markdown", str(out / "P.md"))
    assert "baseline" in result.stdout  # the printed table
    markdown = (out / "P.md").read_text()
    assert "| figure | broker | baseline | ratio | target | met |" in markdown
    data: dict[str, Any] = json.loads((out / "r.json").read_text())
    return data


def test_machine_is_described(report: dict[str, Any]) -> None:
    machine = report["machine"]
    assert machine["logical_cores"] >= 1
    assert machine["cpu_model"]


def test_idle_agents_beside_echo_baseline(report: dict[str, Any]) -> None:
    for key in ("broker_tuned", "echo_tuned"):
        (row,) = report["idle"][key]
        assert row["agents"] == 20
        assert row["connected"] == 20
        assert row["kib_per_agent"] > 0
        assert row["idle_cpu_fraction"] >= 0


def test_reconnect_storm(report: dict[str, Any]) -> None:
    storm = report["reconnect_storm"]
    assert storm["agents"] == 20
    assert storm["reconnected"] >= 20
    assert storm["gave_up"] == 0
    assert storm["all_back_seconds_from_kill"] is not None


def test_relay_throughput_has_every_baseline(report: dict[str, Any]) -> None:
    servers = {r["server"] for r in report["relay"]}
    assert {"broker", "bare relay", "raw TLS"} <= servers
    for row in report["relay"]:
        assert row["messages"] > 0
        assert row["mb_per_s"] > 0
        assert row["messages"] <= 200


def test_latency_through_broker_and_bare_relay(report: dict[str, Any]) -> None:
    servers = {r["server"] for r in report["latency"]}
    assert servers == {"broker", "bare relay"}
    for row in report["latency"]:
        for kind in ("update", "input"):
            assert row[kind]["n"] > 0
            assert 0 < row[kind]["p50_ms"] <= row[kind]["p99_ms"]


def test_enrollment(report: dict[str, Any]) -> None:
    enroll = report["enrollment"]
    assert enroll["enrollments"] == 4
    assert enroll["enrollment_failures"] == 0
    assert enroll["csr_signs_per_s"] > 0
    assert enroll["baseline_connects_per_s"] > 0


def test_tuning_module_sets_the_tls_read_buffer() -> None:
    import asyncio.sslproto

    from broker import tuning

    old = tuning.set_tls_read_buffer(16 * 1024)
    try:
        assert asyncio.sslproto.SSLProtocol.max_size == 16 * 1024
        with pytest.raises(ValueError, match="TLS read buffer"):
            tuning.set_tls_read_buffer(100)
    finally:
        tuning.set_tls_read_buffer(old)


def test_agents_are_spread_over_load_processes_exactly() -> None:
    from bench.harness import spread

    assert spread(3000, [2500, 500]) == [2500, 500]
    assert spread(6000, [2500, 2500, 1000]) == [2500, 2500, 1000]
    assert spread(1000, [2500, 2500, 2500, 2500]) == [250, 250, 250, 250]
    assert spread(5001, [2500, 2500, 1000]) == [2001, 2000, 1000]
    assert sum(spread(7, [3, 3, 3])) == 7
