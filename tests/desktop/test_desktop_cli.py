"""``isp-agent-desktop`` where no window can open, and at login on a PC that is not registered."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import child_env, run_agent


def test_no_display_is_a_code_not_a_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.helpers import ROOT

    env = child_env()
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    result = subprocess.run(
        [sys.executable, "-m", "agent", "--data-dir", str(tmp_path), "desktop"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "[no_display]" in result.stderr
    assert "Traceback" not in result.stderr


def test_autostart_without_enrollment_shows_nothing(tmp_path: Path) -> None:
    result = run_agent(tmp_path, "desktop", "--autostart")
    assert result.returncode == 0
    assert result.stdout == ""
    assert result.stderr == ""


def test_desktop_script_accepts_global_options_anywhere() -> None:
    from agent.desktop import agent_argv

    assert agent_argv(["--autostart", "--data-dir", r"C:\ProgramData\x", "--lang=en"]) == [
        "--data-dir",
        r"C:\ProgramData\x",
        "--lang=en",
        "desktop",
        "--autostart",
    ]
    assert agent_argv([]) == ["desktop"]
