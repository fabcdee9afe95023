"""The record of a session to continue after a restart: 0600, recent and well-formed only."""

from __future__ import annotations

import stat
from pathlib import Path

from agent.resume import RESUME_FILE, RESUME_MAX_AGE, clear_resumable, load_resumable, save_resumable


def test_saved_0600_and_loaded_back(tmp_path: Path) -> None:
    save_resumable(tmp_path, "sabc", "Alice", now=1000.0)
    assert stat.S_IMODE((tmp_path / RESUME_FILE).stat().st_mode) == 0o600
    found = load_resumable(tmp_path, now=1000.0 + RESUME_MAX_AGE)
    assert found is not None
    assert (found.session_id, found.operator) == ("sabc", "Alice")
    clear_resumable(tmp_path)
    assert load_resumable(tmp_path) is None


def test_an_old_or_broken_record_is_ignored_and_removed(tmp_path: Path) -> None:
    save_resumable(tmp_path, "sabc", "Alice", now=1000.0)
    assert load_resumable(tmp_path, now=1000.0 + RESUME_MAX_AGE + 1) is None
    assert not (tmp_path / RESUME_FILE).exists()
    (tmp_path / RESUME_FILE).write_text("{not json")
    assert load_resumable(tmp_path) is None
    assert not (tmp_path / RESUME_FILE).exists()
