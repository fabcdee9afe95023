"""macOS: a LaunchDaemon for ``agent run`` (as the subscriber, from boot) and a LaunchAgent for the
desktop app at login. Rendered as data (plist bytes, launchctl command lines) and tested as data on
Linux; :func:`install` / :func:`uninstall` act only on macOS (not verified on this machine).
"""

from __future__ import annotations

import plistlib
import subprocess
import sys
from pathlib import Path
from typing import Final

from .model import LAUNCHD_PREFIX, Layout, Report

DAEMON_LABEL: Final = f"{LAUNCHD_PREFIX}.agent"
AGENT_LABEL: Final = f"{LAUNCHD_PREFIX}.desktop"
DAEMON_PLIST: Final = Path("Library/LaunchDaemons") / f"{DAEMON_LABEL}.plist"
AGENT_PLIST: Final = Path("Library/LaunchAgents") / f"{AGENT_LABEL}.plist"
LOG_DIR: Final = Path("Library/Logs/isp-remote-support")
LAUNCHCTL_TIMEOUT: Final = 30.0
ON_MACOS: Final[bool] = sys.platform == "darwin"
"""launchctl runs only on macOS; elsewhere install/uninstall write the files only (package builds, tests)."""


def daemon_plist(layout: Layout) -> bytes:
    """``agent run`` as the subscriber (``UserName``), started at boot, restarted when it fails
    (launchd throttles restarts to one per ``ThrottleInterval`` seconds)."""
    return plistlib.dumps(
        {
            "Label": DAEMON_LABEL,
            "ProgramArguments": list(layout.run_argv()),
            "UserName": layout.user,
            "RunAtLoad": True,
            "KeepAlive": {"SuccessfulExit": False, "NetworkState": True},
            "ThrottleInterval": 10,
            "ProcessType": "Background",
            "StandardOutPath": f"/{LOG_DIR}/agent.log",
            "StandardErrorPath": f"/{LOG_DIR}/agent.log",
        }
    )


def agent_plist(layout: Layout) -> bytes:
    """The desktop app in every Aqua (graphical) login session."""
    return plistlib.dumps(
        {
            "Label": AGENT_LABEL,
            "ProgramArguments": list(layout.desktop),
            "RunAtLoad": True,
            "LimitLoadToSessionType": ["Aqua"],
            "ProcessType": "Interactive",
        }
    )


def install_commands(root: Path = Path("/")) -> list[list[str]]:
    return [["launchctl", "bootstrap", "system", str(root / DAEMON_PLIST)]]


def uninstall_commands() -> list[list[str]]:
    return [["launchctl", "bootout", f"system/{DAEMON_LABEL}"]]


def status_command() -> list[str]:
    return ["launchctl", "print", f"system/{DAEMON_LABEL}"]


def _launchctl(argv: list[str]) -> subprocess.CompletedProcess[str]:
    if not ON_MACOS:
        return subprocess.CompletedProcess(argv, 0, "", "")
    return subprocess.run(argv, capture_output=True, text=True, timeout=LAUNCHCTL_TIMEOUT, check=False)


def install(layout: Layout, *, root: Path = Path("/"), autostart: bool = True) -> Report:
    report = Report()
    files = [(root / DAEMON_PLIST, daemon_plist(layout))]
    if autostart:
        files.append((root / AGENT_PLIST, agent_plist(layout)))
    (root / LOG_DIR).mkdir(parents=True, exist_ok=True)
    for path, data in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o644)  # launchd refuses group/world-writable plists
        report.add(f"written: {path}")
    for argv in install_commands(root):
        result = _launchctl(argv)
        (report.add if result.returncode == 0 else report.fail)(f"{' '.join(argv)}: {result.returncode}")
    return report


def uninstall(*, root: Path = Path("/")) -> Report:
    report = Report()
    for argv in uninstall_commands():
        _launchctl(argv)  # not loaded is fine
    for path in (root / DAEMON_PLIST, root / AGENT_PLIST):
        if path.exists():
            path.unlink()
            report.add(f"removed: {path}")
    logs = root / LOG_DIR
    if logs.is_dir():
        for log in logs.iterdir():
            log.unlink()
        logs.rmdir()
        report.add(f"removed: {logs}")
    return report


def status(*, root: Path = Path("/")) -> Report:
    report = Report()
    plist = root / DAEMON_PLIST
    if not plist.is_file():
        report.fail(f"service: not installed ({plist} missing)")
        return report
    report.add(f"service: {plist}")
    result = _launchctl(status_command())
    report.add(f"loaded: {'yes' if result.returncode == 0 else 'no'}")
    report.add(f"autostart: {root / AGENT_PLIST if (root / AGENT_PLIST).is_file() else 'none'}")
    return report
