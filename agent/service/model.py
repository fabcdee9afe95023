"""What every OS's service setup shares: names, the command lines, and the result of an action."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

SERVICE_NAME: Final = "isp-remote-support-agent"
"""systemd unit (template ``…@.service``), Windows service name, launchd label suffix."""
DISPLAY_NAME: Final = "ISP Remote Support Agent"
DISPLAY_NAME_JA: Final = "リモートサポート（エージェント）"
DESKTOP_NAME: Final = "isp-remote-support"
"""The desktop app's autostart entry / Run value / LaunchAgent label suffix."""
LAUNCHD_PREFIX: Final = "jp.example.isp-remote-support"
DESCRIPTION: Final = (
    "Keeps this PC connected to the ISP's remote-support broker (outbound WSS only). "
    "Nothing is seen or controlled without the subscriber's consent on screen (Art. 31(1)(iv))."
)


def agent_command(executable: str | None = None) -> tuple[str, ...]:
    """How to start the agent from a service: the ``isp-agent`` console script beside this
    interpreter when there is one (a venv, the .deb's /usr/bin), else ``python -m agent``."""
    python = Path(executable or sys.executable)
    for name in ("isp-agent", "isp-agent.exe"):
        script = python.parent / name
        if script.is_file():
            return (str(script),)
    return (str(python), "-m", "agent")


def desktop_command(executable: str | None = None) -> tuple[str, ...]:
    """How to start the desktop app at login (``--autostart``: quietly nothing when not enrolled)."""
    python = Path(executable or sys.executable)
    for name in ("isp-agent-desktop", "isp-agent-desktop.exe"):
        script = python.parent / name
        if script.is_file():
            return (str(script), "--autostart")
    return (str(python), "-m", "agent", "desktop", "--autostart")


@dataclass(frozen=True, slots=True)
class Layout:
    """Everything an install needs to know; built once, rendered per OS."""

    user: str
    """The subscriber's account: the service runs as this user (Linux, macOS)."""
    agent: tuple[str, ...]
    """Command line of the agent (``agent run`` is appended)."""
    desktop: tuple[str, ...]
    """Command line of the desktop app at login."""
    data_dir: Path | None = None
    """An explicit ``--data-dir`` for the service (Windows: the service's account is not the
    subscriber's, so it is fixed at install); None = the user's default."""

    def run_argv(self) -> tuple[str, ...]:
        extra = ("--data-dir", str(self.data_dir)) if self.data_dir is not None else ()
        return (*self.agent, *extra, "run")


@dataclass(slots=True)
class Report:
    """What an install, uninstall or status did or found, line by line (shown to the user)."""

    lines: list[str] = field(default_factory=list)
    ok: bool = True

    def add(self, line: str) -> None:
        self.lines.append(line)

    def fail(self, line: str) -> None:
        self.ok = False
        self.lines.append(line)


def quote_exec(argv: Sequence[str]) -> str:
    """A command line for systemd ``ExecStart=`` and XDG ``Exec=``: arguments with spaces or
    quotes in double quotes, backslash and double quote escaped (both specs accept this)."""
    out = []
    for arg in argv:
        if arg and not any(c in arg for c in " \t\"\\'$%`"):
            out.append(arg)
        else:
            escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`")
            out.append(f'"{escaped}"'.replace("%", "%%"))
    return " ".join(out)
