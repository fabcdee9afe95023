"""The subscriber's desktop app (``isp-agent-desktop``): see :mod:`agent.desktop.app`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

GLOBAL_OPTIONS = ("--data-dir", "--lang")
"""``isp-agent`` options that belong before the subcommand; accepted anywhere here (the MSI's Run
value and shortcut pass ``--data-dir`` after ``--autostart``)."""


def agent_argv(argv: Sequence[str]) -> list[str]:
    """``isp-agent-desktop ARGS`` → the ``isp-agent`` command line: global options first, then
    ``desktop`` and the rest."""
    front: list[str] = []
    rest: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in GLOBAL_OPTIONS and i + 1 < len(args):
            front += [arg, args[i + 1]]
            i += 2
            continue
        if arg.split("=", 1)[0] in GLOBAL_OPTIONS and "=" in arg:
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return [*front, "desktop", *rest]


def main(argv: Sequence[str] | None = None) -> int:
    from agent.__main__ import main as agent_main

    return agent_main(agent_argv(sys.argv[1:] if argv is None else argv))
