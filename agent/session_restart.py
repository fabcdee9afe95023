"""Restart of the PC at the operator's request, and continuing the session afterwards (issue 16).

Split from :mod:`agent.support` (a mixin, like :mod:`agent.session_input`). The operator asks
with ``restart_request``; the broker forwards it only while ``system:restart`` is granted, and
this agent checks its own consent record again (DESIGN §2: the agent is the authority). On a
granted request the core (:meth:`agent.core.AgentCore.receive`) answers, and this adapter runs:

1. records the session to resume (:mod:`agent.resume`: session id, operator; 0600),
2. tells the subscriber, announces the restart to the broker (``restart_notice``: the broker then
   keeps the session for ``serve --restart-grace`` instead of the normal grace),
3. withdraws everything granted, with a signed receipt (nothing carries over a restart),
4. asks the OS to restart (:func:`reboot_commands`; ``ISP_AGENT_REBOOT_COMMAND`` replaces it, which
   is how the tests "restart" by killing and starting the agent's processes).

After the restart the desktop window (started at login) or ``agent request-support`` finds the
record and asks 「続けますか？」; only a yes resumes the same session with the same operator and
no new support code; no answer within the resume timeout ends it (:meth:`RestartMixin.start_resume`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from protocol.messages import Message
from protocol.text import safe_text

from .core.actions import SaveResume, Say
from .core.inputs import RebootFailed
from .core.state import Resume
from .i18n import t
from .prompt import is_confirmation
from .resume import Resumable, clear_resumable, save_resumable

if TYPE_CHECKING:
    from .core import AgentCore
    from .core.inputs import Input
    from .identity import Identity
    from .prompt import LineReader

log = logging.getLogger("agent.restart")

REBOOT_ENV = "ISP_AGENT_REBOOT_COMMAND"
"""Environment variable naming a command line that replaces the OS restart (tests, kiosks)."""
REBOOT_COMMAND_WAIT: float = 60.0
"""Seconds the agent waits for the restart command to return before calling it failed."""
RESUME_TIMEOUT: float = 60.0
"""Seconds the subscriber has to confirm continuing an interrupted session; then it ends."""

WINDOWS_REBOOT: tuple[str, ...] = (
    "shutdown",
    "/r",
    "/t",
    "30",
    "/c",
    "リモートサポート: オペレータの依頼により30秒後に再起動します",
)
"""30 s: the subscriber sees Windows' own notice; ``shutdown /a`` cancels it."""
MACOS_REBOOT: tuple[str, ...] = ("osascript", "-e", 'tell application "System Events" to restart')
"""The same as Apple menu > Restart: apps may ask to save, no root needed."""
LINUX_REBOOTS: tuple[tuple[str, ...], ...] = (("systemctl", "reboot"), ("shutdown", "-r", "+0"))
"""systemd-logind lets the user of the active local session restart (polkit); ``shutdown`` for
systems without systemd. Tried in this order."""


def reboot_commands(
    platform: str = sys.platform, env: Mapping[str, str] = os.environ
) -> tuple[tuple[str, ...], ...]:
    """The command lines that restart this PC, first one that runs wins (pure: data, unit-tested)."""
    override = env.get(REBOOT_ENV, "").strip()
    if override:
        return (tuple(shlex.split(override, posix=not platform.startswith("win"))),)
    if platform.startswith("win"):
        return (WINDOWS_REBOOT,)
    if platform == "darwin":
        return (MACOS_REBOOT,)
    return LINUX_REBOOTS


async def run_reboot(commands: Sequence[Sequence[str]], wait: float = REBOOT_COMMAND_WAIT) -> bool:
    """Run the first command that exists; True when it was accepted (exit 0, or still running:
    a restart that takes the agent down with it)."""
    for command in commands:
        try:
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError:
            continue
        try:
            async with asyncio.timeout(wait):
                return await proc.wait() == 0
        except TimeoutError:
            return True
    return False


class RestartMixin:
    """Restart handling of :class:`agent.support.SupportSession` (which sets these)."""

    identity: Identity
    lang: str
    reader: LineReader
    core: AgentCore

    if TYPE_CHECKING:

        def say(self, line: str) -> None: ...
        async def feed(self, event: Input | Message) -> None: ...

    def _save_resume(self, action: SaveResume) -> None:
        """Before the restart: the session to continue afterwards (0600, :mod:`agent.resume`)."""
        save_resumable(self.identity.data_dir, action.session_id, action.operator)

    async def _reboot(self) -> None:
        """Restart the PC; if no command runs, forget the saved session and tell the core."""
        if await run_reboot(reboot_commands()):
            return  # the OS takes the agent down; the saved record is what continues
        clear_resumable(self.identity.data_dir)
        await self.feed(RebootFailed())

    async def ask_resume(self, found: Resumable, timeout: float = RESUME_TIMEOUT) -> bool:
        """「続けますか？」in the terminal: only an explicit はい / yes continues; no answer is no."""
        operator = safe_text(found.operator, max_chars=64)
        self.say(t("support.resume_question", self.lang, operator=operator, seconds=round(timeout)))
        since = time.monotonic()
        deadline = since + timeout
        while (left := deadline - time.monotonic()) > 0:
            stamp, line = await self.reader.readline_stamped(left)
            if line is None:
                break
            if stamp >= since:
                return is_confirmation(line)
        return False

    def start_resume(self, found: Resumable, *, confirmed: bool) -> None:
        """Continue ``found`` (same operator, no new code) with an empty consent record; without
        ``confirmed`` the session is resumed only to be ended (the core decides both)."""
        resume = Resume(session_id=found.session_id, operator=found.operator, confirmed=confirmed)
        for action in self.core.resume(resume):
            if isinstance(action, Say):
                self.say(action.text)
