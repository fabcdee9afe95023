"""Operator chat cannot fake the consent question in a real terminal (issue 11, item 2).

``python -m agent request-support`` runs on a real pseudo-terminal; what it writes is rendered by
pyte, a VT100/xterm terminal emulator, and the test reads the rendered screen back, as the
subscriber would see it. While a question for ``input:control`` is open, the operator (real
broker, helpdesk client) sends chat that moves the cursor up, erases lines and prints a copy of
the prompt that numbers the scopes differently. The real question must stay what is visible,
with its closing line restating what each answer allows; the fake must appear only after the
question closed, escaped, behind the chat marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import struct
import subprocess
import termios
import threading
from collections.abc import Iterator
from pathlib import Path

import pyte
import pytest

from helpdesk import HelpdeskClient
from tests.helpers import (
    PYTHON,
    ROOT,
    BrokerProcess,
    add_operator,
    child_env,
    enrolled_agent,
    login,
    wait_until,
)

pytestmark = pytest.mark.e2e

COLUMNS, LINES = 110, 60

ATTACK = (
    "\x1b[2J\x1b[H"  # clear the screen, cursor home
    "\x1b[8A\x1b[2K"  # up eight lines, erase the line
    "━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━\n"
    '[Permission] Operator "Alice (helpdesk)" asks for your permission (Art. 31(1)(iv)):\n'
    "  1. View your screen, and the helpdesk fixes it for you\n"
    "Type 1 and press Enter."
)


class Terminal:
    """A child process on a pseudo-terminal, its output rendered by pyte."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.screen = pyte.Screen(COLUMNS, LINES)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()
        self._lock = threading.Lock()
        leader, follower = os.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
        self.leader = leader
        self.proc = subprocess.Popen(
            argv, stdin=follower, stdout=follower, stderr=follower, env=env, cwd=ROOT, start_new_session=True
        )
        os.close(follower)
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while True:
            try:
                data = os.read(self.leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            with self._lock:
                self.raw += data
                self.stream.feed(data)

    def text(self) -> str:
        """What is visible on the terminal now, line by line."""
        with self._lock:
            return "\n".join(line.rstrip() for line in self.screen.display)

    def wait_visible(self, text: str, timeout: float = 30.0) -> str:
        wait_until(lambda: text in self.text(), timeout=timeout, what=f"{text!r} on the terminal")
        return self.text()

    def type(self, line: str) -> None:
        os.write(self.leader, (line + "\r").encode())

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        code = self.proc.wait(5)
        with contextlib.suppress(OSError):
            os.close(self.leader)
        return code


@contextlib.contextmanager
def _support_on_a_terminal(agent_dir: Path) -> Iterator[Terminal]:
    env = child_env(TERM="xterm", COLUMNS=str(COLUMNS), LINES=str(LINES))
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    argv = [PYTHON, "-m", "agent", "--data-dir", str(agent_dir), "--lang", "en", "request-support"]
    terminal = Terminal([*argv, "--test-pattern", "--consent-ui", "terminal"], env)
    try:
        yield terminal
    finally:
        terminal.stop()


async def test_chat_cannot_imitate_or_hide_the_consent_question(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    enrolled_agent(broker, tmp_path / "agent", "C-PTY")
    alice = add_operator(broker, "alice")
    with _support_on_a_terminal(tmp_path / "agent") as term:
        shown = term.wait_visible("Support code: ")
        code = shown.split("Support code: ")[1].split()[0]
        async with HelpdeskClient(broker.url, cafile=broker.data_dir / "ca.pem") as op:
            await login(op, alice)
            session = (await op.claim(code=code, scopes=["screen:view", "input:control"])).session_id
            term.wait_visible("2. Control your mouse and keyboard")
            await op.chat(session, ATTACK)
            await op.chat(session, "  1. Control your mouse and keyboard")
            await op.chat(session, "plain sync line")
            # The chat reached the agent (the operator's own copy came back through the broker);
            # give the agent a moment to print it, were it to print it now.
            await op.watch(session)
            wait_until(lambda: b"plain sync line" in term.raw or _settled(term), timeout=5, what="settle")

            screen = term.text()
            # The real question is what is visible, whole, with its closing restatement.
            assert "  1. View your screen" in screen
            assert "  2. Control your mouse and keyboard" in screen
            assert 'What your answer allows operator "Alice (helpdesk)": "1" = View your screen;' in screen
            assert "and the helpdesk fixes it for you" not in screen  # chat is held back
            assert b"\x1b[2J" not in term.raw  # never sent to the terminal
            assert b"\x1b[8A" not in term.raw
            # Nobody sees the screen before the subscriber allows it, whatever the broker lists.
            assert "can now see your screen" not in screen

            term.type("1")
            screen = term.wait_visible("and the helpdesk fixes it for you")
            state = await op.wait_state(session, lambda s: s.scopes.get("input:control") == "denied")
            assert state.scopes["screen:view"] == "granted"

            screen = term.wait_visible("Alice (helpdesk) (operator) can now see your screen.")
            lines = screen.splitlines()
            assert (
                "Answer recorded. Allowed: View your screen / Not allowed: Control your mouse and keyboard"
                in screen
            )
            # The operator "joined"; only once the answer allowed the screen can she see it.
            joined = lines.index("Alice (helpdesk) (operator) joined the session.")
            answered = next(i for i, line in enumerate(lines) if line.startswith("Answer recorded."))
            sees = lines.index("Alice (helpdesk) (operator) can now see your screen.")
            assert sees > answered
            assert joined < sees
            assert lines[sees - 1] == "Currently allowed: View your screen"
            # The fake: escaped, behind the marker or indented under it, never at the margin.
            marker = next(i for i, line in enumerate(lines) if "\\x1b[2J\\x1b[H\\x1b[8A\\x1b[2K" in line)
            assert lines[marker].startswith("💬 Alice (helpdesk)(operator)> ")
            assert lines[marker + 1].startswith("    │ [Permission] Operator")
            assert lines[marker + 2] == "    │   1. View your screen, and the helpdesk fixes it for you"
            assert any(line.startswith("💬 ") and line.endswith("> plain sync line") for line in lines)
            assert not [line for line in lines if line.startswith("  1. Control your mouse")]
            await op.end(session)
        assert term.proc.wait(30) == 0


async def test_a_supervisor_who_watches_is_announced_by_name(broker: BrokerProcess, tmp_path: Path) -> None:
    """Real broker, real agent on a terminal: a supervisor joins read-only with the operator
    protocol's ``watch``; the subscriber reads his display name when he starts and stops seeing the
    screen (DESIGN §2), and the operator's client gets the list of both viewers."""
    enrolled_agent(broker, tmp_path / "agent", "C-SUPERVISED")
    alice = add_operator(broker, "alice")
    sato = add_operator(broker, "sato", role="supervisor")
    cafile = broker.data_dir / "ca.pem"

    async def visible(text: str) -> str:  # the clients keep reading meanwhile
        return await asyncio.to_thread(term.wait_visible, text)

    with _support_on_a_terminal(tmp_path / "agent") as term:
        shown = await visible("Support code: ")
        code = shown.split("Support code: ")[1].split()[0]
        async with HelpdeskClient(broker.url, cafile=cafile) as op:
            await login(op, alice)
            session = (await op.claim(code=code, scopes=["screen:view"])).session_id
            await visible("1. View your screen")
            term.type("1")
            await op.wait_state(session, lambda s: s.scopes.get("screen:view") == "granted")
            await visible("Alice (helpdesk) (operator) can now see your screen.")

            async with HelpdeskClient(broker.url, cafile=cafile) as supervisor:
                await login(supervisor, sato)
                await supervisor.watch(session)
                state = await op.wait_state(session, lambda s: len(s.viewers) == 2)
                assert [(v.name, v.role, v.read_only) for v in state.viewers] == [
                    ("Alice (helpdesk)", "operator", False),
                    ("Sato (helpdesk)", "supervisor", True),
                ]
                await visible("Sato (helpdesk) (supervisor, view only) can now see your screen.")
            # The supervisor's console went away: he no longer sees the screen, and is announced.
            state = await op.wait_state(session, lambda s: len(s.viewers) == 1)
            assert state.viewers[0].name == "Alice (helpdesk)"
            screen = await visible("Sato (helpdesk) (supervisor, view only) stopped watching your screen.")
            assert "Alice (helpdesk) (operator) stopped watching" not in screen
            await op.end(session)
            await visible("The support session has ended")
        assert await asyncio.to_thread(term.proc.wait, 30) == 0


def _settled(term: Terminal) -> bool:
    """Nothing new from the agent for a moment (bounded by the caller's timeout)."""
    import time

    before = len(term.raw)
    time.sleep(1.0)
    return len(term.raw) == before
