"""The session to continue after the agent went away: a crash, ``kill -9``, or a restart of the PC
the subscriber allowed (issue 16).

While a claimed session runs, ``desktop-session.json`` in the data dir (0600, written atomically)
holds its id, the operator's name and the time; it is removed when the session ends. The desktop
window (at login) or ``agent request-support`` (in a terminal) started again finds it, asks the
subscriber 「続けますか？」, and only on a yes resumes the same session with the same operator and no
new support code. Nothing granted before carries over (第31条1項④): the resumed session starts
with an empty consent record and signs a withdrawal of whatever the broker still shows.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from certs import write_secret_file

__all__ = [
    "RESUME_FILE",
    "RESUME_MAX_AGE",
    "Resumable",
    "clear_resumable",
    "load_resumable",
    "save_resumable",
]

RESUME_FILE: str = "desktop-session.json"
"""In the data dir while a claimed session runs (0600): what a restarted agent may resume."""
RESUME_MAX_AGE: float = 600.0
"""Seconds after which a left-over session is not offered again (the broker's restart grace,
``serve --restart-grace``, is 600 s by default; a normal loss ends after 30 s)."""


@dataclass(frozen=True, slots=True)
class Resumable:
    """A session this PC was in when the agent went away (crash, kill, restart)."""

    session_id: str
    operator: str
    saved_at: float


def save_resumable(data_dir: Path, session_id: str, operator: str, now: float | None = None) -> None:
    record = {"session_id": session_id, "operator": operator, "saved_at": time.time() if now is None else now}
    write_secret_file(data_dir / RESUME_FILE, json.dumps(record).encode())


def clear_resumable(data_dir: Path) -> None:
    (data_dir / RESUME_FILE).unlink(missing_ok=True)


def load_resumable(data_dir: Path, now: float | None = None) -> Resumable | None:
    """The left-over session, if it is recent and well-formed; anything else is ignored (and removed)."""
    path = data_dir / RESUME_FILE
    try:
        record = json.loads(path.read_bytes()[:4096])
        found = Resumable(
            str(record["session_id"])[:64], str(record["operator"])[:64], float(record["saved_at"])
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)
        return None
    if not 0 <= (time.time() if now is None else now) - found.saved_at <= RESUME_MAX_AGE:
        path.unlink(missing_ok=True)
        return None
    return found
