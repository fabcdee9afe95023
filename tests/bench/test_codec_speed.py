"""``python -m bench.codec_speed`` runs and reports every figure (not a performance test: no time is
checked, only that each figure is there and positive)."""

from __future__ import annotations

from bench.codec_speed import run


def test_codec_speed_reports_every_figure() -> None:
    result = run(rounds=1, number=50)
    assert set(result) == {"input_move", "ping", "claim", "session_state"}
    for figures in result.values():
        assert set(figures) == {"construct_us", "encode_us", "decode_us"}
        assert all(value > 0 for value in figures.values())
