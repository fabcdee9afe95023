"""``python -m bench.glass`` runs end to end in its smallest configuration and reports every figure
(glass-to-glass, capture-only and decode-only floors). Not a performance test: no time is checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.run import run_bench

pytestmark = [pytest.mark.e2e, pytest.mark.x11, pytest.mark.browser]


def test_glass_bench_reports_latency_beside_both_floors(tmp_path: Path) -> None:
    out = tmp_path / "glass.json"
    md = tmp_path / "PERFORMANCE.md"
    md.write_text("# Performance\n\nprose kept\n")
    run_bench("bench.glass", "--samples", "3", "--size", "640x400", "--json", str(out), "--markdown", str(md))
    data = json.loads(out.read_text())
    (r,) = data["results"]
    assert r["size"] == "640x400"
    for figure in ("glass_to_glass", "capture_only", "decode_only"):
        assert r[figure]["n"] == 3
        assert r[figure]["median_ms"] > 0
    text = md.read_text()
    assert "prose kept" in text
    assert "| 640x400 |" in text
