"""The Windows service host (pywin32): runs the agent's connection until the SCM stops it.

Imported only on Windows (``pythonservice.exe`` loads :class:`AgentService`; the PyInstaller build
of ``isp-agent-service.exe`` calls :func:`main`). Not run on this machine: see docs/install.md.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path
from typing import Any

import servicemanager
import win32service
import win32serviceutil

from agent.connection import AgentClient
from agent.identity import default_data_dir, load_identity

from .model import DESCRIPTION, DISPLAY_NAME, SERVICE_NAME


def data_dir_from(argv: list[str]) -> Path:
    if "--data-dir" in argv and argv.index("--data-dir") + 1 < len(argv):
        return Path(argv[argv.index("--data-dir") + 1])
    return default_data_dir()


class AgentService(win32serviceutil.ServiceFramework):  # type: ignore[misc]
    _svc_name_ = SERVICE_NAME
    _svc_display_name_ = DISPLAY_NAME
    _svc_description_ = DESCRIPTION

    def __init__(self, args: Any) -> None:
        super().__init__(args)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop: asyncio.Event | None = None
        self.ready = threading.Event()

    def SvcStop(self) -> None:  # pywin32's name
        self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
        self.ready.wait(10)
        if self.loop is not None and self.stop is not None:
            self.loop.call_soon_threadsafe(self.stop.set)

    def SvcDoRun(self) -> None:  # pywin32's name
        identity = load_identity(data_dir_from(sys.argv))
        if identity is None:
            servicemanager.LogErrorMsg("isp-remote-support-agent: this PC is not enrolled")
            return
        asyncio.run(self._run(identity))

    async def _run(self, identity: Any) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        self.ready.set()
        await AgentClient(identity).run(self.stop)


def main() -> None:
    if len(sys.argv) == 1 or sys.argv[1] == "--data-dir":
        servicemanager.Initialize()
        servicemanager.PrepareToHostSingle(AgentService)
        servicemanager.StartServiceCtrlDispatcher()
    else:
        win32serviceutil.HandleCommandLine(AgentService)


if __name__ == "__main__":
    main()
