"""The subscriber's window driven like a subscriber would, keyboard only, on a real X server:
request support → the support code in large digits → the operator claims it (their name shows,
their chat arrives) → "終了" ends the session at the broker. Screenshots for the README.

Real broker process, real agent enrollment, real Xvfb, real Tk; keys typed with xdotool (XTest).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import pytest

from helpdesk import HelpdeskClient
from protocol.messages import Chat
from tests.browser import SCREENSHOTS
from tests.helpers import (
    PYTHON,
    ROOT,
    BrokerProcess,
    OutputTail,
    add_operator,
    child_env,
    login,
    run_agent,
    wait_until,
)
from tests.x11 import search_windows, xdotool

pytestmark = [pytest.mark.x11, pytest.mark.e2e]

CODE_RE = re.compile(r"screen=code code=(\d{6})")


def screenshot(display: str, name: str) -> None:
    from PIL import ImageGrab

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    ImageGrab.grab(xdisplay=display).save(SCREENSHOTS / name)


def start_desktop(
    data: Path, display: str, *extra: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], OutputTail]:
    """The window as a subscriber starts it (Japanese), printing its ``--trace`` lines."""
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "agent",
            "--data-dir",
            str(data),
            "--lang",
            "ja",
            "desktop",
            "--test-pattern",
            "--trace",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env if env is not None else child_env(DISPLAY=display, LANG="ja_JP.UTF-8"),
        cwd=ROOT,
    )
    assert proc.stdout is not None
    return proc, OutputTail(proc.stdout)


async def shows(out: OutputTail, pattern: str) -> re.Match[str]:
    """Wait until the window's trace matches ``pattern``; fail with everything it printed."""
    try:
        match: re.Match[str] = await asyncio.to_thread(
            wait_until, lambda: re.search(pattern, out.text()), what=pattern
        )
    except AssertionError:
        raise AssertionError(f"waited for {pattern!r}; the window printed:\n{out.text()}") from None
    return match


def other_window(display: str, main: str) -> str | None:
    """A mapped top-level window other than ``main``: the session's consent window."""
    # None also when no window is mapped at all for an instant (xdotool then exits 1).
    found = search_windows(display, "--onlyvisible", "--name", ".")
    return next((w for w in found if w != main), None)


def focus_window(display: str) -> str:
    window = xdotool(display, "search", "--sync", "--name", "Remote Support").split()[0]
    xdotool(display, "windowfocus", "--sync", window)
    return window


async def test_request_code_claim_chat_end_with_the_keyboard(
    broker: BrokerProcess, display: str, tmp_path: Path
) -> None:
    data = tmp_path / "agent"
    enrolled = run_agent(data, *broker.add_subscriber("C-3001"), stdin="y\n")
    assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
    account = add_operator(broker, "sato")
    proc, out = start_desktop(data, display)
    try:
        await shows(out, "screen=idle")
        focus_window(display)
        xdotool(display, "key", "ctrl+plus")  # larger text, from the keyboard
        await shows(out, "screen=zoom scale=1.25")
        xdotool(display, "key", "ctrl+0")
        await shows(out, "screen=zoom scale=1.0")
        screenshot(display, "desktop-idle.png")
        xdotool(display, "key", "Return")  # the focused big button: サポートを依頼する
        match = await shows(out, CODE_RE.pattern)
        code = match.group(1)
        await asyncio.sleep(0.3)  # let Tk draw the digits before the picture
        screenshot(display, "desktop-code.png")

        async with HelpdeskClient(broker.url, cafile=broker.data_dir / "ca.pem") as op:
            await login(op, account)
            claimed = await op.claim(code=code, scopes=())  # the code the subscriber read out
            await shows(out, "screen=claimed")
            assert "operator=Sato_(helpdesk)" in out.text()
            # The session's own consent window asks (agent/prompt.py); Escape there is "deny all".
            main = focus_window(display)
            dialog = await asyncio.to_thread(wait_until, lambda: other_window(display, main), what="consent")
            xdotool(display, "windowfocus", "--sync", dialog)
            xdotool(display, "key", "Escape")
            await op.chat(claimed.session_id, "こんにちは、佐藤です")
            focus_window(display)
            xdotool(display, "key", "Tab")  # 終了 → the message field
            xdotool(display, "type", "--delay", "5", "thanks")
            xdotool(display, "key", "Return")
            said = await asyncio.wait_for(op.events.get(), 15)
            while not (isinstance(said, Chat) and said.sender == "subscriber"):
                said = await asyncio.wait_for(op.events.get(), 15)
            assert said.text == "thanks"
            await asyncio.sleep(1.0)
            screenshot(display, "desktop-session.png")
            for _ in range(2):  # the message field → 送信 → 終了
                xdotool(display, "key", "Tab")
            xdotool(display, "key", "Return")
            await shows(out, "screen=ended")
        assert "screen=ended exit=0 error=-" in out.text()
        assert "こんにちは" not in out.text(), "the trace never carries chat text"
        audit = broker.cli("audit", "log", "--subject", claimed.session_id).stdout
        assert "ended" in audit, audit
        screenshot(display, "desktop-ended.png")
    finally:
        proc.terminate()
        proc.wait(15)


async def test_enroll_from_the_helpdesk_file_with_the_keyboard(
    broker: BrokerProcess, display: str, tmp_path: Path
) -> None:
    enroll_file = tmp_path / "C-3002.isp-enroll"
    broker.cli("subscriber", "add", "C-3002", "--enroll-file", str(enroll_file))
    data = tmp_path / "agent"
    proc, out = start_desktop(data, display)
    try:
        await shows(out, "screen=enroll")
        focus_window(display)
        xdotool(display, "type", "--delay", "5", str(enroll_file))  # the focused field
        xdotool(display, "key", "Return")
        await shows(out, "screen=confirm")  # 第31条1項④: the subscriber accepts the certificate
        await asyncio.sleep(0.3)
        screenshot(display, "desktop-enroll-confirm.png")
        assert not (data / "agent.json").exists(), "nothing is stored before the subscriber says yes"
        xdotool(display, "key", "Return")  # the focused はい button
        await shows(out, "screen=idle")
        status = run_agent(data, "status")
        assert "contract: C-3002" in status.stdout, status.stdout + status.stderr
    finally:
        proc.terminate()
        proc.wait(15)
    # At the next login (XDG autostart, Run key, LaunchAgent): ready, minimized.
    login_proc, login_out = start_desktop(data, display, "--autostart")
    try:
        await shows(login_out, "screen=idle")
        await shows(login_out, "screen=minimized")
    finally:
        login_proc.terminate()
        login_proc.wait(15)


async def test_a_bad_enrollment_file_is_refused_in_plain_words(display: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.isp-enroll"
    bad.write_text('{"format": "isp-remote-support-enroll/1", "broker": "http://evil.example"}')
    proc, out = start_desktop(tmp_path / "agent", display)
    try:
        await shows(out, "screen=enroll")
        focus_window(display)
        xdotool(display, "type", "--delay", "5", str(bad))
        xdotool(display, "key", "Return")
        await shows(out, "screen=enroll error=.*bad_enroll_file")
        assert not (tmp_path / "agent" / "agent.json").exists()
    finally:
        proc.terminate()
        proc.wait(15)


def indicator_window(display: str) -> str | None:
    found = search_windows(display, "--onlyvisible", "--name", "Remote support in progress")
    return found[0] if found else None


async def test_the_window_shows_the_indicator_while_watched_and_its_end_button_ends(
    broker: BrokerProcess, display: str, tmp_path: Path
) -> None:
    """request support → code → consent (view, with the keyboard) → the "being watched" indicator
    → its 終了 button, pressed by the subscriber, ends the session (issue 16 with issue 11's rules)."""
    data = tmp_path / "agent"
    assert run_agent(data, *broker.add_subscriber("C-3002"), stdin="y\n").returncode == 0
    account = add_operator(broker, "sato")
    proc, out = start_desktop(data, display)
    try:
        await shows(out, "screen=idle")
        main = focus_window(display)
        xdotool(display, "key", "Return")
        code = (await shows(out, CODE_RE.pattern)).group(1)
        async with HelpdeskClient(broker.url, cafile=broker.data_dir / "ca.pem") as op:
            await login(op, account)
            session = (await op.claim(code=code, scopes=("screen:view",))).session_id
            await shows(out, "screen=claimed")
            assert indicator_window(display) is None, "nobody sees the screen before the yes"
            dialog = await asyncio.to_thread(wait_until, lambda: other_window(display, main), what="consent")
            xdotool(display, "windowfocus", "--sync", dialog)
            for key in ("Tab", "space", "Tab", "space"):  # tick 画面を見る, then 許可
                xdotool(display, "key", key)
            await op.watch(session)
            await op.wait_state(session, lambda s: s.scopes.get("screen:view") == "granted")
            window = await asyncio.to_thread(
                wait_until, lambda: indicator_window(display), what="the being-watched indicator"
            )
            await asyncio.sleep(0.5)  # let Tk draw it before the picture
            screenshot(display, "desktop-indicator.png")
            xdotool(display, "windowfocus", "--sync", window)
            for key in ("Tab", "Tab", "space"):  # 操作をやめてもらう → 終了, pressed
                xdotool(display, "key", key)
            ended = await op.wait_state(session, lambda s: s.phase == "ended")
            assert ended.ended_by == "subscriber"
            await shows(out, "screen=ended")
        await asyncio.to_thread(
            wait_until, lambda: indicator_window(display) is None, timeout=10, what="indicator gone"
        )
    finally:
        proc.terminate()
        proc.wait(15)
