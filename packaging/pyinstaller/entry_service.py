"""Frozen ``isp-agent-service.exe``: the Windows service host (started by the SCM)."""

from agent.service.winsvc import main

main()
