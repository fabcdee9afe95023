"""The agent's .deb on this machine: built from the repository (scripts/build-deb), installed with
the real ``dpkg -i``, its unit checked with ``systemd-analyze verify``, the service enabled for a
subscriber and reported by ``isp-agent service status``, then ``dpkg -r`` and ``dpkg --purge``
with every file the package installed checked to be gone.

Needs root (CI runs as root) and Debian's python3, python3-venv, python3-tk, dpkg-dev and systemd
(``scripts/bootstrap --system`` installs them); skipped otherwise. Creates and deletes a throw-away
account ``isp-deb-test`` to be the subscriber.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packaging.conftest import ROOT, clean_env

pytestmark = [pytest.mark.packaging, pytest.mark.deb]

PACKAGE = "isp-remote-support-agent"
USER = "isp-deb-test"
UNIT = Path("/usr/lib/systemd/system/isp-remote-support-agent@.service")
AUTOSTART = Path("/etc/xdg/autostart/isp-remote-support.desktop")
WANTS = Path(f"/etc/systemd/system/multi-user.target.wants/isp-remote-support-agent@{USER}.service")
CONFFILES = [str(AUTOSTART)]
"""What ``dpkg -r`` keeps by Debian policy (a conffile); ``--purge`` removes it."""


def sh(
    *cmd: str, timeout: float = 120, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(**(env or {})),
        check=False,
        cwd="/",
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result


def installed() -> bool:
    result = sh("dpkg-query", "-W", "-f=${Status}", PACKAGE, check=False)
    return "installed" in result.stdout or "config-files" in result.stdout


def left_over(files: list[str]) -> list[str]:
    """Files (not directories, which other packages share) of ``files`` still on disk."""
    return sorted(f for f in files if os.path.lexists(f) and not os.path.isdir(f))


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("installs a .deb: needs root on Debian (CI runs as root)")
    missing = [t for t in ("dpkg-deb", "systemd-analyze", "/usr/bin/python3") if shutil.which(t) is None]
    tk = sh("/usr/bin/python3", "-c", "import tkinter, venv", check=False)
    if missing or tk.returncode != 0:
        pytest.skip(f"needs {missing or 'python3-tk, python3-venv'} (scripts/bootstrap --system)")
    out = tmp_path_factory.mktemp("deb")
    result = sh(
        str(ROOT / "scripts" / "build-deb"), "--out", str(out),
        timeout=900, env={"DEB_COMPRESS": "gzip", "BUILD_PYTHON": sys.executable},
    )  # fmt: skip
    return Path(result.stdout.strip().splitlines()[-1])


def test_deb_installs_verifies_reports_and_removes_without_leftovers(deb: Path, tmp_path: Path) -> None:
    if installed():
        sh("dpkg", "--purge", PACKAGE)
    created_user = sh("id", USER, check=False).returncode != 0
    if created_user:
        sh("useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", USER)
    try:
        sh("dpkg", "-i", str(deb), timeout=300)
        files = sh("dpkg", "-L", PACKAGE).stdout.splitlines()
        for path in ("/usr/bin/isp-agent", "/usr/bin/isp-agent-desktop", str(UNIT), str(AUTOSTART)):
            assert path in files, path
            assert Path(path).exists(), path
        assert any(f.startswith("/opt/isp-remote-support/lib/agent/") for f in files)

        verify = sh("systemd-analyze", "verify", str(UNIT), check=False)
        assert verify.returncode == 0, verify.stderr
        assert str(UNIT) not in verify.stderr, verify.stderr
        assert "ExecStart=/usr/bin/isp-agent run" in UNIT.read_text()
        assert "TryExec=/usr/bin/isp-agent-desktop" in AUTOSTART.read_text()

        home: dict[str, str] = {"HOME": str(tmp_path), "DISPLAY": "", "WAYLAND_DISPLAY": ""}
        assert "request-support" in sh("isp-agent", "--help", env=home).stdout
        preview = sh(
            "isp-agent", "--lang", "ja", "inventory", "--preview", "--router-target", "127.0.0.1:9", env=home
        )
        assert "何も送信していません" in preview.stdout
        code = "import sys; sys.path.insert(0, '/opt/isp-remote-support/lib'); import tkinter, numpy, agent"
        sh("/usr/bin/python3", "-IS", "-c", code)

        before = sh("isp-agent", "--lang", "en", "service", "status", "--user", USER, check=False, env=home)
        assert before.returncode == 3, before.stdout
        assert f"isp-remote-support-agent@{USER}.service disabled" in before.stdout
        sh("isp-agent", "--lang", "en", "service", "install", "--user", USER, env=home)
        assert WANTS.is_symlink()
        status = sh("isp-agent", "--lang", "en", "service", "status", "--user", USER, env=home)
        assert f"unit: {UNIT}" in status.stdout
        assert f"isp-remote-support-agent@{USER}.service enabled" in status.stdout

        sh("dpkg", "-r", PACKAGE, timeout=300)
        assert not os.path.lexists(WANTS), "prerm disables every instance"
        assert left_over(files) == CONFFILES
        assert not Path("/opt/isp-remote-support").exists()
        sh("dpkg", "--purge", PACKAGE, timeout=300)
        assert left_over(files) == []
        print(f"{len(files)} paths installed by {PACKAGE}; none left after dpkg --purge")
    finally:
        if installed():
            sh("dpkg", "--purge", PACKAGE, check=False, timeout=300)
        if created_user:
            sh("userdel", USER, check=False)
