"""``agent service install|uninstall|status``: the Linux unit and autostart entry for real (files,
``systemctl --root``, ``systemd-analyze verify``), Windows and macOS as data."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
import sys
from pathlib import Path, PureWindowsPath

import pytest

from agent.service import linux, macos, windows
from agent.service.model import Layout, agent_command, quote_exec
from tests.helpers import ROOT, child_env

PROGRAM_FILES = r"C:\Program Files\ISP Remote Support"
WIN_LAYOUT = Layout(
    user="taro",
    agent=(rf"{PROGRAM_FILES}\isp-agent.exe",),
    desktop=(rf"{PROGRAM_FILES}\isp-agent-desktop.exe", "--autostart"),
    data_dir=Path(r"C:\ProgramData\ISP Remote Support\agent"),
)
MAC_LAYOUT = Layout(
    user="hanako",
    agent=("/Applications/ISP Remote Support.app/Contents/MacOS/isp-agent",),
    desktop=("/Applications/ISP Remote Support.app/Contents/MacOS/isp-agent-desktop", "--autostart"),
)


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def service(
    root: Path, action: str, *extra: str, data_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    pre = ["--data-dir", str(data_dir)] if data_dir else []
    return subprocess.run(
        [sys.executable, "-m", "agent", "--lang", "en", *pre, "service", action, "--root", str(root), *extra],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def os_root(tmp_path: Path) -> Path:
    """A directory shaped like an OS root: the directories a Debian system already has."""
    root = tmp_path / "root"
    for d in ("etc/systemd/system/multi-user.target.wants", "etc/xdg/autostart", "usr/lib/systemd/system"):
        (root / d).mkdir(parents=True)
        (root / d / "other.placeholder").touch()  # others' files: systemctl keeps a non-empty dir
    return root


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("needs systemd-analyze (apt-get install systemd)")
    return subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux service")
def test_linux_install_verify_status_uninstall_leaves_only_the_kept_data(tmp_path: Path) -> None:
    root = os_root(tmp_path)
    before = tree(root)
    data = tmp_path / "agent-data"
    data.mkdir()
    (data / "agent.json").write_text("{}")

    installed = service(root, "install", "--user", "taro", data_dir=data)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    unit = root / "etc/systemd/system/isp-remote-support-agent@.service"
    autostart = root / "etc/xdg/autostart/isp-remote-support.desktop"
    wants = root / "etc/systemd/system/multi-user.target.wants/isp-remote-support-agent@taro.service"
    assert unit.is_file()
    assert autostart.is_file()
    assert wants.is_symlink()
    text = unit.read_text()
    assert "User=%i" in text
    assert f"--data-dir {data} run" in text
    assert "Exec=" in autostart.read_text()
    checked = verify(unit)
    assert checked.returncode == 0, checked.stderr
    assert str(unit) not in checked.stderr, checked.stderr  # no warning about our unit

    status = service(root, "status", "--user", "taro")
    assert status.returncode == 0, status.stdout
    assert "isp-remote-support-agent@taro.service enabled" in status.stdout

    removed = service(root, "uninstall", data_dir=data)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert tree(root) == before, "uninstall must leave nothing behind"
    assert (data / "agent.json").exists(), "the enrollment is kept unless --purge-data"
    assert "kept" in removed.stdout
    assert service(root, "status", "--user", "taro").returncode == 3

    service(root, "install", "--user", "taro", data_dir=data)
    purged = service(root, "uninstall", "--purge-data", data_dir=data)
    assert purged.returncode == 0, purged.stdout
    assert not data.exists()
    assert tree(root) == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux service")
def test_linux_install_refuses_root_as_the_subscriber(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not as root"):
        linux.check_user("root")
    with pytest.raises(ValueError, match="system account"):
        linux.check_user(
            "nobody"
        )  # systemd-analyze verify: "Special user nobody configured, this is not safe!"
    with pytest.raises(ValueError, match="no such user"):
        linux.check_user("no-such-user-x9")


def test_unit_exec_line_quotes_paths_with_spaces() -> None:
    layout = Layout(user="u", agent=("/opt/ISP Support/bin/isp-agent",), desktop=("x",))
    assert 'ExecStart="/opt/ISP Support/bin/isp-agent" run' in linux.unit_text(layout)
    assert quote_exec(["a", "50%"]) == 'a "50%%"'


def test_agent_command_prefers_the_console_script_beside_the_interpreter(tmp_path: Path) -> None:
    python = tmp_path / "bin" / "python3"
    python.parent.mkdir()
    python.touch()
    assert agent_command(str(python)) == (str(python), "-m", "agent")
    (python.parent / "isp-agent").touch()
    assert agent_command(str(python)) == (str(python.parent / "isp-agent"),)


# -- Windows as data -------------------------------------------------------------------------------


def test_windows_service_descriptor_and_command_lines() -> None:
    desc = windows.descriptor(WIN_LAYOUT)
    assert desc.name == "isp-remote-support-agent"
    assert desc.account == "LocalSystem"
    assert desc.start == "delayed-auto"
    assert desc.command_line == (
        rf'"{PROGRAM_FILES}\isp-agent.exe" --data-dir "C:\ProgramData\ISP Remote Support\agent" run'
    )
    frozen = windows.descriptor(WIN_LAYOUT, service_exe=rf"{PROGRAM_FILES}\isp-agent-service.exe")
    assert frozen.command_line.startswith(rf'"{PROGRAM_FILES}\isp-agent-service.exe" --data-dir ')
    sc = windows.sc_commands(desc)
    assert ["sc.exe", "config", "isp-remote-support-agent", "start=", "delayed-auto"] in sc
    assert sc[-1][-1] == "restart/10000/restart/60000//"
    assert windows.uninstall_commands() == [
        ["sc.exe", "stop", "isp-remote-support-agent"],
        ["sc.exe", "delete", "isp-remote-support-agent"],
    ]


def test_windows_run_key_for_the_desktop_app() -> None:
    entries = windows.registry_entries(WIN_LAYOUT)
    assert entries == {
        r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Run\ISPRemoteSupport": (
            rf'"{PROGRAM_FILES}\isp-agent-desktop.exe" --autostart'
        )
    }


@pytest.mark.parametrize(
    ("arg", "quoted"),
    [
        ("plain", "plain"),
        ("with space", '"with space"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("C:\\dir x\\", '"C:\\dir x\\\\"'),  # a trailing backslash doubles before the closing quote
        ("", '""'),
    ],
)
def test_windows_argument_quoting_follows_commandlinetoargvw(arg: str, quoted: str) -> None:
    assert windows.quote(arg) == quoted


def test_windows_default_data_dir_is_machine_wide() -> None:
    assert PureWindowsPath(r"C:\ProgramData") in windows.DATA_DIR.parents


# -- macOS as data ---------------------------------------------------------------------------------


def test_macos_launch_daemon_and_agent_plists() -> None:
    daemon = plistlib.loads(macos.daemon_plist(MAC_LAYOUT))
    assert daemon["Label"] == "jp.example.isp-remote-support.agent"
    assert daemon["ProgramArguments"] == [*MAC_LAYOUT.agent, "run"]
    assert daemon["UserName"] == "hanako"
    assert daemon["RunAtLoad"] is True
    assert daemon["KeepAlive"] == {"SuccessfulExit": False, "NetworkState": True}
    desktop = plistlib.loads(macos.agent_plist(MAC_LAYOUT))
    assert desktop["ProgramArguments"][-1] == "--autostart"
    assert desktop["LimitLoadToSessionType"] == ["Aqua"]
    assert macos.install_commands(Path("/")) == [
        [
            "launchctl",
            "bootstrap",
            "system",
            "/Library/LaunchDaemons/jp.example.isp-remote-support.agent.plist",
        ]
    ]
    assert macos.uninstall_commands() == [
        ["launchctl", "bootout", "system/jp.example.isp-remote-support.agent"]
    ]


@pytest.mark.skipif(sys.platform == "darwin", reason="writes the real /Library on macOS")
def test_macos_files_install_and_uninstall_leave_nothing(tmp_path: Path) -> None:
    (tmp_path / "Library/LaunchDaemons").mkdir(parents=True)
    (tmp_path / "Library/LaunchAgents").mkdir(parents=True)
    (tmp_path / "Library/Logs").mkdir(parents=True)
    before = tree(tmp_path)
    report = macos.install(MAC_LAYOUT, root=tmp_path)
    assert report.ok
    assert (tmp_path / macos.DAEMON_PLIST).stat().st_mode & 0o777 == 0o644
    assert macos.status(root=tmp_path).ok
    macos.uninstall(root=tmp_path)
    assert tree(tmp_path) == before
