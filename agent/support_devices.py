"""Where a support session gets its screen, its input and its consent UI (``request-support`` setup).

Split from :mod:`agent.support` (which re-exports these names) to keep each module small.
"""

from __future__ import annotations

import logging
import os
import signal
import stat
import sys
from pathlib import Path
from typing import TextIO

from .instance import pid_of_running_session
from .prompt import gui_available
from .sharing import FrameSource, InputSink, TestPatternSource

PID_FILE = "session.pid"


def request_end(data_dir: Path) -> bool:
    """``python -m agent end``: ask the running session (another process) to end; False when none
    runs (a pid file left by a killed session is stale and removed: :mod:`agent.instance`)."""
    pid = pid_of_running_session(data_dir / PID_FILE)
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return False
    return True


def default_devices(
    *, test_pattern: bool, lossless: bool = False, monitor: int = 1, test_monitors: int = 1
) -> tuple[FrameSource | None, InputSink | None]:
    """The real screen and input where there is a display; a test pattern on request; else none
    (a headless PC still gets chat and inventory, DESIGN §2 / issue: no screen).

    ``lossless`` shares the real screen without JPEG; ``monitor`` is the monitor shared first
    (mss numbering, 0 = all; an unknown number falls back to 1). A screen that can be captured
    but not controlled is still shared; input is then dropped (:class:`NoInputSink`).
    ``test_monitors`` is how many monitors the test pattern has.
    """
    if test_pattern:
        return TestPatternSource(animate=True, monitors=test_monitors), None
    log = logging.getLogger("agent.support")
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return None, None
    try:
        from .screen_source import CaptureSource, InjectorSink, NoInputSink

        source = CaptureSource(monitor, lossless=lossless)
    except Exception as exc:  # no usable display: chat and inventory only
        log.info("no screen to share: %s", exc)
        return None, None
    try:
        return source, InjectorSink(source)
    except Exception as exc:
        log.warning("remote control unavailable: %s", exc)
        return source, NoInputSink(type(exc).__name__)


def choose_consent_ui(requested: str, stdin: TextIO) -> frozenset[str]:
    """Where to ask for consent: ``terminal``, ``dialog``, ``both``, or ``auto``.

    ``auto``: in a terminal, the terminal (and a window as well where a display exists); started
    without a terminal (a desktop launcher, stdin on /dev/null), a window; with input from a pipe
    or a file (scripts, tests), the pipe.
    """
    if requested != "auto":
        return frozenset({"terminal", "dialog"} if requested == "both" else {requested})
    window = gui_available()
    try:
        if stdin.isatty():
            return frozenset({"terminal", "dialog"} if window else {"terminal"})
        mode = os.fstat(stdin.fileno()).st_mode
    except (OSError, ValueError):
        return frozenset({"dialog"} if window else {"terminal"})
    if stat.S_ISCHR(mode) and window:  # /dev/null: nobody will type here
        return frozenset({"dialog"})
    return frozenset({"terminal"})


INDICATOR_ENV = "AGENT_INDICATOR"
"""``AGENT_INDICATOR=off`` turns the "being watched" window off: only for automated tests that
compare every pixel of the captured screen. Only whoever starts the agent on the PC can set it."""


def indicator_wanted(env: dict[str, str] | None = None) -> bool:
    """Show the "being watched" indicator wherever a window can be shown (docs/consent.md)."""
    env = dict(os.environ) if env is None else env
    return env.get(INDICATOR_ENV, "").lower() != "off" and gui_available(env)
