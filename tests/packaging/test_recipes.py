"""The Windows and macOS build recipes cannot run here; these tests keep them consistent with the
code they package (service name, arguments, Run value, launchd label) and syntactically valid."""

from __future__ import annotations

import ast
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from agent.service import macos, windows
from agent.service.model import SERVICE_NAME

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
WIX = "{http://wixtoolset.org/schemas/v4/wxs}"
UTIL = "{http://wixtoolset.org/schemas/v4/wxs/util}"


def test_wix_installs_the_service_and_run_value_the_code_describes() -> None:
    tree = ET.parse(PACKAGING / "windows" / "isp-agent.wxs")  # noqa: S314 - our own file
    service = tree.find(f".//{WIX}ServiceInstall")
    assert service is not None
    assert service.get("Name") == SERVICE_NAME
    assert service.get("Account") == "LocalSystem"
    assert service.get("Start") == "auto"
    assert "--data-dir" in (service.get("Arguments") or "")
    config = service.find(f"{WIX}ServiceConfig")
    assert config is not None
    assert config.get("DelayedAutoStart") == "yes"
    recovery = service.find(f"{UTIL}ServiceConfig")
    assert recovery is not None
    assert int(recovery.get("RestartServiceDelayInSeconds") or 0) * 1000 == windows.RESTART_MS[0]
    control = tree.find(f".//{WIX}ServiceControl")
    assert control is not None
    assert control.get("Remove") == "uninstall"
    assert control.get("Stop") == "both"
    runs = [v for v in tree.iter(f"{WIX}RegistryValue") if v.get("Key") == windows.RUN_KEY]
    assert len(runs) == 1
    assert runs[0].get("Root") == "HKLM"
    assert runs[0].get("Name") == windows.RUN_VALUE
    assert "isp-agent-desktop.exe" in (runs[0].get("Value") or "")


def test_pyinstaller_spec_and_entries_parse_and_name_the_programs() -> None:
    spec = (PACKAGING / "pyinstaller" / "isp-agent.spec").read_text()
    ast.parse(spec)
    for name in ("isp-agent", "isp-agent-desktop", "isp-agent-service", "ISP Remote Support.app"):
        assert f'"{name}"' in spec
    for entry in ("entry_agent.py", "entry_desktop.py", "entry_service.py"):
        ast.parse((PACKAGING / "pyinstaller" / entry).read_text())
    app = "/Applications/ISP Remote Support.app/Contents/MacOS/isp-agent"
    assert app in (PACKAGING / "macos" / "postinstall").read_text()
    assert f"system/{macos.DAEMON_LABEL}" in (PACKAGING / "macos" / "preinstall").read_text()


@pytest.mark.parametrize(
    "script",
    ["packaging/debian/build.sh", "packaging/macos/build-pkg.sh", "packaging/macos/uninstall.sh",
     "packaging/macos/postinstall", "packaging/macos/preinstall", "scripts/build-deb"],
)  # fmt: skip
def test_shell_recipes_parse(script: str) -> None:
    shell = "bash" if script.endswith((".sh", "build-deb")) else "sh"
    result = subprocess.run([shell, "-n", str(ROOT / script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_workflow_has_the_three_hosted_jobs() -> None:
    python = shutil.which("python3", path="/usr/bin")
    if python is None:
        pytest.skip("needs Debian's python3 with PyYAML to parse the workflow")
    code = (
        "import sys, yaml; w = yaml.safe_load(open(sys.argv[1])); "
        "print(' '.join(sorted(w['jobs'])), w['jobs']['windows']['runs-on'], w['jobs']['macos']['runs-on'])"
    )
    result = subprocess.run(
        [python, "-c", code, str(ROOT / ".github/workflows/agent-packages.yml")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if "No module named 'yaml'" in result.stderr:
        pytest.skip("needs python3-yaml")
    assert result.stdout.split() == ["linux", "macos", "windows", "windows-latest", "macos-latest"]
