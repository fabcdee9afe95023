"""bench/shared_limits.py runs and reports the in-memory baseline beside the shared limit."""

from __future__ import annotations

from bench.shared_limits import main


async def test_shared_limits_bench_reports_every_backend_it_ran() -> None:
    result = await main(20, None)
    assert result["n"] == 20
    for backend in ("in_memory", "sqlite"):
        summary = result[backend]
        assert isinstance(summary, dict)
        assert summary["median_ms"] > 0
        assert summary["p99_ms"] >= summary["median_ms"]
    assert "postgresql" not in result
