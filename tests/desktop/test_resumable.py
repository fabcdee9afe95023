"""What a restarted window may offer to continue: only a recent, well-formed record; and a fresh
consent state withdraws what the broker still shows as granted (nothing carries over a restart)."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

from agent.consent import ConsentState
from agent.desktop.bridge import RESUME_FILE, RESUME_MAX_AGE, Resumable, load_resumable, save_resumable


def test_saved_session_is_offered_once_recent_and_private(tmp_path: Path) -> None:
    save_resumable(tmp_path, "s-1", "Sato (helpdesk)")
    assert stat.S_IMODE((tmp_path / RESUME_FILE).stat().st_mode) == 0o600
    found = load_resumable(tmp_path)
    assert isinstance(found, Resumable)
    assert (found.session_id, found.operator) == ("s-1", "Sato (helpdesk)")
    assert load_resumable(tmp_path, now=time.time() + RESUME_MAX_AGE + 1) is None
    assert not (tmp_path / RESUME_FILE).exists(), "a stale record is removed"


def test_malformed_records_are_ignored_and_removed(tmp_path: Path) -> None:
    for content in (b"not json", json.dumps({"session_id": "x"}).encode(), b"[]"):
        (tmp_path / RESUME_FILE).write_bytes(content)
        assert load_resumable(tmp_path) is None
        assert not (tmp_path / RESUME_FILE).exists()
    assert load_resumable(tmp_path) is None


def test_fresh_consent_withdraws_what_the_broker_still_shows() -> None:
    state = ConsentState(session_id="s-1", serial="ab12")
    receipt = state.withdraw(["screen:view", "input:control"], time.time())
    assert tuple(receipt.granted) == ()
    assert not state.allows("screen:view")
