"""The subscriber's desktop app (``isp-agent-desktop``): see :mod:`agent.desktop.app`."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from agent.__main__ import main as agent_main

    return agent_main(["desktop", *(sys.argv[1:] if argv is None else argv)])
