"""The desktop window: a session the operator ends while the consent window is open. The question
is void, so the consent window closes at once and the session finishes at once (before, the
session's ``asyncio.run`` waited for the window's thread until the question timed out: found with
py-spy). Real broker, real Tk on Xvfb, the operator with the helpdesk client."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from helpdesk import HelpdeskClient
from tests.desktop.test_desktop_x11 import focus_window, other_window, shows, start_desktop
from tests.helpers import BrokerProcess, add_operator, login, run_agent, wait_until
from tests.x11 import xdotool

pytestmark = [pytest.mark.x11, pytest.mark.e2e]

BOUND = 5.0
"""Seconds from the operator's end to the session finished and the consent window gone (the
question's own timeout is 20 s with this broker)."""


async def test_ending_the_session_closes_the_consent_window_at_once(
    broker: BrokerProcess, display: str, tmp_path: Path
) -> None:
    data = tmp_path / "agent"
    enrolled = run_agent(data, *broker.add_subscriber("C-3100"), stdin="y\n")
    assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
    account = add_operator(broker, "sato")
    proc, out = start_desktop(data, display)
    try:
        await shows(out, "screen=idle")
        focus_window(display)
        xdotool(display, "key", "Return")  # サポートを依頼する
        code = (await shows(out, r"screen=code code=(\d{6})")).group(1)
        async with HelpdeskClient(broker.url, cafile=broker.data_dir / "ca.pem") as op:
            await login(op, account)
            claimed = await op.claim(code=code, scopes=["screen:view"])
            main = focus_window(display)
            await asyncio.to_thread(wait_until, lambda: other_window(display, main), what="consent window")
            ended_at = time.monotonic()
            await op.end(claimed.session_id)
            await asyncio.to_thread(
                wait_until, lambda: other_window(display, main) is None, timeout=BOUND, what="window gone"
            )
            await shows(out, "screen=ended")
            took = time.monotonic() - ended_at
        assert took < BOUND, f"the session took {took:.1f} s to finish"
    finally:
        proc.terminate()
        proc.wait(15)
