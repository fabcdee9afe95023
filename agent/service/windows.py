"""Windows: ``agent run`` as a Windows service (pywin32) and the desktop app from the Run key.

Rendered as data (service descriptor, ``sc.exe`` command lines, registry values) and tested as data
on Linux; the installer (packaging/windows/) creates the same service and value. The service runs
as LocalSystem, the account pywin32 services get unless given a password; a per-user account would
need the subscriber's password stored. So its ``--data-dir`` is fixed at install time: the data dir
of the subscriber who runs ``service install`` (elevated, after ``enroll``), or ``%ProgramData%`` for
the MSI, whose enrollment then goes there (``isp-agent --data-dir … enroll``).
The service host class is :mod:`agent.service.winsvc` (imported only on Windows).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import PureWindowsPath
from typing import Any, Final

from .model import DESCRIPTION, DESKTOP_NAME, DISPLAY_NAME, SERVICE_NAME, Layout

RUN_KEY: Final = r"SOFTWARE\Microsoft\Windows\CurrentVersion\Run"
"""Under HKEY_LOCAL_MACHINE: the desktop app starts in every user's session at login."""
RUN_VALUE: Final = "ISPRemoteSupport"
SERVICE_CLASS: Final = "agent.service.winsvc.AgentService"
"""The pywin32 service class (``PythonClass`` of a pythonservice.exe service)."""
RESTART_MS: Final = (10_000, 60_000)
"""Recovery: restart after 10 s, then after 60 s; the failure count resets after a day."""
ON_WINDOWS: Final[bool] = sys.platform == "win32"
DATA_DIR: Final = PureWindowsPath(r"C:\ProgramData\ISP Remote Support\agent")


@dataclass(frozen=True, slots=True)
class ServiceDescriptor:
    name: str
    display_name: str
    description: str
    command_line: str
    """The service's binary path with arguments, as the SCM stores it."""
    start: str = "delayed-auto"
    account: str = "LocalSystem"


def quote(arg: str) -> str:
    """One argument for a Windows command line (CommandLineToArgvW rules)."""
    if arg and not any(c in arg for c in ' \t"'):
        return arg
    out, slashes = ['"'], 0
    for c in arg:
        if c == "\\":
            slashes += 1
            continue
        if c == '"':
            out.append("\\" * (2 * slashes + 1) + '"')
        else:
            out.append("\\" * slashes + c)
        slashes = 0
    out.append("\\" * (2 * slashes) + '"')
    return "".join(out)


def command_line(argv: tuple[str, ...] | list[str]) -> str:
    return " ".join(quote(a) for a in argv)


def descriptor(layout: Layout, *, service_exe: str | None = None) -> ServiceDescriptor:
    """``service_exe``: the frozen ``isp-agent-service.exe`` (PyInstaller bundle), which takes
    the data dir as its argument; else the agent's own command line (pip installs run the pywin32
    host through ``pythonservice.exe``, whose command line pywin32 fills in)."""
    data_dir = str(layout.data_dir or DATA_DIR)
    argv = (
        [service_exe, "--data-dir", data_dir]
        if service_exe
        else [*layout.agent, "--data-dir", data_dir, "run"]
    )
    return ServiceDescriptor(
        name=SERVICE_NAME,
        display_name=DISPLAY_NAME,
        description=DESCRIPTION,
        command_line=command_line(argv),
    )


def sc_commands(desc: ServiceDescriptor) -> list[list[str]]:
    """What ``service install`` runs after creating the service: delayed start at boot and
    restart on failure."""
    first, later = RESTART_MS
    return [
        ["sc.exe", "config", desc.name, "start=", desc.start],
        ["sc.exe", "description", desc.name, desc.description],
        ["sc.exe", "failure", desc.name, "reset=", "86400", "actions=", f"restart/{first}/restart/{later}//"],
    ]


def uninstall_commands() -> list[list[str]]:
    return [["sc.exe", "stop", SERVICE_NAME], ["sc.exe", "delete", SERVICE_NAME]]


def status_command() -> list[str]:
    return ["sc.exe", "query", SERVICE_NAME]


def run_value(layout: Layout) -> tuple[str, str, str, str]:
    """(hive, key, value name, data) of the desktop app's autostart."""
    return ("HKEY_LOCAL_MACHINE", RUN_KEY, RUN_VALUE, command_line(list(layout.desktop)))


def registry_entries(layout: Layout) -> dict[str, str]:
    """Every registry value an install creates (``hive\\key\\name`` → data); uninstall deletes
    exactly these (the SCM's own key goes with ``sc.exe delete``)."""
    hive, key, name, data = run_value(layout)
    return {f"{hive}\\{key}\\{name}": data}


def install(layout: Layout) -> list[str]:  # pragma: no cover - Windows only
    """Create the service with pywin32, set its recovery, write the Run value."""
    if not ON_WINDOWS:
        raise OSError("Windows only")
    import importlib
    import subprocess

    import win32serviceutil

    winreg: Any = importlib.import_module("winreg")

    desc = descriptor(layout)
    win32serviceutil.InstallService(
        SERVICE_CLASS,
        desc.name,
        desc.display_name,
        startType=2,  # SERVICE_AUTO_START; delayed by sc_commands
        description=desc.description,
        exeArgs=command_line(["--data-dir", str(layout.data_dir or DATA_DIR)]),
    )
    done = [f"service: {desc.name}"]
    for argv in sc_commands(desc):
        subprocess.run(argv, capture_output=True, timeout=30, check=False)
    hive, key, name, data = run_value(layout)
    with winreg.CreateKeyEx(winreg.HKEY_LOCAL_MACHINE, key, 0, winreg.KEY_SET_VALUE) as handle:
        winreg.SetValueEx(handle, name, 0, winreg.REG_SZ, data)
    done.append(f"autostart: {hive}\\{key}\\{name}")
    win32serviceutil.StartService(desc.name)
    return done


def uninstall() -> list[str]:  # pragma: no cover - Windows only
    if not ON_WINDOWS:
        raise OSError("Windows only")
    import importlib
    import subprocess

    winreg: Any = importlib.import_module("winreg")
    done = []
    for argv in uninstall_commands():
        subprocess.run(argv, capture_output=True, timeout=30, check=False)
    done.append(f"service: {SERVICE_NAME} deleted")
    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, RUN_KEY, 0, winreg.KEY_SET_VALUE) as handle:
            winreg.DeleteValue(handle, RUN_VALUE)
        done.append(f"autostart: {RUN_VALUE} removed")
    except FileNotFoundError:
        pass
    return done


__all__ = ["DESKTOP_NAME", "ServiceDescriptor", "descriptor", "registry_entries", "run_value", "sc_commands"]
