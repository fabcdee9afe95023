"""The OS restart command lines as data, the override the tests use, and running them (issue 16)."""

from __future__ import annotations

import sys
from pathlib import Path

from agent.session_restart import (
    LINUX_REBOOTS,
    MACOS_REBOOT,
    REBOOT_ENV,
    WINDOWS_REBOOT,
    reboot_commands,
    run_reboot,
)


def test_linux_asks_systemd_then_shutdown() -> None:
    assert reboot_commands("linux", {}) == (("systemctl", "reboot"), ("shutdown", "-r", "+0"))
    assert reboot_commands("linux", {}) == LINUX_REBOOTS


def test_windows_restarts_after_30_seconds_with_a_notice() -> None:
    (command,) = reboot_commands("win32", {})
    assert command == WINDOWS_REBOOT
    assert command[:4] == ("shutdown", "/r", "/t", "30")
    assert "/c" in command  # the subscriber sees why, in Windows' own notice


def test_macos_restarts_like_the_apple_menu() -> None:
    assert reboot_commands("darwin", {}) == (MACOS_REBOOT,)
    assert MACOS_REBOOT == ("osascript", "-e", 'tell application "System Events" to restart')


def test_the_environment_replaces_the_restart_command() -> None:
    env = {REBOOT_ENV: "/usr/bin/python3 '/tmp/a b/reboot.py' marker"}
    assert reboot_commands("linux", env) == (("/usr/bin/python3", "/tmp/a b/reboot.py", "marker"),)
    assert reboot_commands("linux", {REBOOT_ENV: "  "}) == LINUX_REBOOTS


async def test_the_first_command_that_exists_runs_and_its_exit_status_counts(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    ok = (sys.executable, "-c", f"open({str(marker)!r}, 'w').write('x')")
    assert await run_reboot([(str(tmp_path / "no-such-command"),), ok]) is True
    assert marker.exists()
    assert await run_reboot([(sys.executable, "-c", "raise SystemExit(1)")]) is False
    assert await run_reboot([(str(tmp_path / "missing"),)]) is False
