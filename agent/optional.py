"""Optional parts of the agent: a clear message with a stable code instead of an ImportError.

The agent's screen sharing needs the ``agent`` extra (mss, pynput, Pillow, numpy; pyproject.toml);
every documented install has it (``pip install "isp-remote-support[agent]"``, the .deb, the Windows
and macOS bundles). An install without it (``pip install isp-remote-support``: broker or helpdesk
only) must still tell the subscriber what is missing in plain words, never print a traceback
(STYLE: no traceback reaches a user). The code ``missing_dependency`` is stable: the desktop app,
the service and the tests look for it.
"""

from __future__ import annotations

from typing import Final

from .errors import AgentError, AgentErrorCode

MISSING_DEPENDENCY: Final = AgentErrorCode.MISSING_DEPENDENCY

EXTRA_OF: Final[dict[str, str]] = {
    "numpy": "agent",
    "PIL": "agent",
    "mss": "agent",
    "pynput": "agent",
    "Xlib": "agent",
    "evdev": "agent",
    "tkinter": "tk",
    "_tkinter": "tk",
    "win32serviceutil": "pywin32",
    "win32service": "pywin32",
    "win32event": "pywin32",
    "servicemanager": "pywin32",
}
"""Top-level module → what provides it: an extra of this project, Tk, or pywin32."""

_HOW: Final[dict[str, tuple[str, str]]] = {
    "agent": (
        '画面共有に必要な部品（{module}）が入っていません。"isp-remote-support[agent]" を入れ直してください'
        "（当社の配布するインストーラーには含まれています）。",
        'A part needed for screen sharing ({module}) is not installed. Reinstall "isp-remote-support[agent]"'
        " (the installers the ISP provides include it).",
    ),
    "tk": (
        "画面表示の部品 Tk（{module}）が入っていません。Debian/Ubuntu では python3-tk を入れてください。",
        "The window toolkit Tk ({module}) is not installed. On Debian/Ubuntu install python3-tk.",
    ),
    "pywin32": (
        "Windows サービスの部品 pywin32（{module}）が入っていません。",
        "The Windows service support pywin32 ({module}) is not installed.",
    ),
}


class MissingDependency(AgentError):
    """An optional module this command needs is not installed."""

    code = MISSING_DEPENDENCY

    def __init__(self, module: str) -> None:
        super().__init__(f"missing module {module}")
        self.module = module

    def text(self, lang: str) -> str:
        ja, en = _HOW[EXTRA_OF.get(self.module, "agent")]
        return (ja if lang.lower().startswith("ja") else en).format(module=self.module)


def missing_dependency(exc: ModuleNotFoundError) -> MissingDependency | None:
    """The :class:`MissingDependency` for an optional module, or None for anything else (a real bug
    must still show as one)."""
    top = (exc.name or "").split(".")[0]
    return MissingDependency(top) if top in EXTRA_OF else None
