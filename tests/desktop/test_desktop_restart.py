"""The desktop window and a restart of the PC at the operator's request (issue 16).

The subscriber ticks 「パソコンの再起動」 in the consent window with the keyboard; the operator
restarts; the agent's restart command (``ISP_AGENT_REBOOT_COMMAND``, standing in for the OS
restart) sends SIGTERM to the window's process, as a shutting-down desktop does. The window
started again at login (``--autostart``) asks 続けますか？; 続ける continues the same session with
the same operator, no new code and nothing granted.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from helpdesk import HelpdeskClient
from tests.desktop.test_desktop_x11 import focus_window, other_window, shows, start_desktop
from tests.helpers import (
    BrokerProcess,
    add_operator,
    child_env,
    login,
    run_agent,
    wait_until,
)
from tests.x11 import xdotool

pytestmark = [pytest.mark.x11, pytest.mark.e2e]

REBOOT_SCRIPT = "import os, signal\nos.kill(os.getppid(), signal.SIGTERM)\n"


async def test_the_window_restarts_the_pc_and_continues_after_the_subscriber_confirms(
    broker: BrokerProcess, display: str, tmp_path: Path
) -> None:
    data = tmp_path / "agent"
    assert run_agent(data, *broker.add_subscriber("C-4101"), stdin="y\n").returncode == 0
    account = add_operator(broker, "sato")
    script = tmp_path / "reboot.py"
    script.write_text(REBOOT_SCRIPT)
    env = child_env(DISPLAY=display, LANG="ja_JP.UTF-8")
    first, out = start_desktop(
        data, display, env={**env, "ISP_AGENT_REBOOT_COMMAND": f"{sys.executable} {script}"}
    )
    again = None
    try:
        async with HelpdeskClient(broker.url, cafile=broker.data_dir / "ca.pem") as op:
            await login(op, account)
            await shows(out, "screen=idle")
            main = focus_window(display)
            xdotool(display, "key", "Return")
            code = (await shows(out, r"screen=code code=(\d{6})")).group(1)
            session = (await op.claim(code=code, scopes=("system:restart",))).session_id
            await shows(out, "screen=claimed")
            dialog = await asyncio.to_thread(wait_until, lambda: other_window(display, main), what="consent")
            xdotool(display, "windowfocus", "--sync", dialog)
            for key in ("Tab", "space", "Tab", "space"):  # tick パソコンの再起動, then 許可
                xdotool(display, "key", key)
            await op.watch(session)
            await op.wait_state(session, lambda s: s.scopes.get("system:restart") == "granted")
            await op.restart(session)
            await op.wait_state(session, lambda s: s.restart_until is not None)
            first.wait(30)
            assert (data / "desktop-session.json").exists()
            again, out2 = start_desktop(data, display, "--autostart", env=env)  # the next login
            await shows(out2, r"screen=resume_ask operator=Sato_\(helpdesk\)")
            focus_window(display)
            xdotool(display, "key", "Return")  # the focused 続ける
            await shows(out2, "screen=claimed operator=Sato_")
            back = await op.wait_state(session, lambda s: s.restart_until is None and s.phase == "active")
            assert back.operator == "Sato (helpdesk)"
            assert "granted" not in back.scopes.values()
            assert "screen=code" not in out2.text(), "no new support code"
            await op.end(session, "done")
            await shows(out2, "screen=ended")
    finally:
        for proc in (first, again):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(15)
