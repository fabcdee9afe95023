"""Running the OS's own read-only tools (sw_vers, diskutil, sysctl, xdg-settings, dpkg-query, PowerShell).

Why an injected runner: the macOS and Windows collectors are real code for those systems but must be
testable on Linux against recorded output (別紙5 items must be read the way the OS reports them, never
guessed). A runner is "args in, stdout out"; failure is one exception type so collectors turn it into an
unavailable item with a reason.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from typing import Final, Protocol

from agent.errors import AgentError, AgentErrorCode

__all__ = ["DEFAULT_TIMEOUT", "CommandError", "CommandRunner", "run_command"]

DEFAULT_TIMEOUT: Final = 5.0
_MAX_OUTPUT: Final = 1 << 20


class CommandError(AgentError):
    """A command could not be run, timed out, or exited non-zero; the message is fit to show an operator."""

    code = AgentErrorCode.COMMAND_FAILED


class CommandRunner(Protocol):
    """Runs ``args`` (no shell) and returns its standard output, or raises ``CommandError``."""

    def __call__(self, args: Sequence[str]) -> str: ...


def run_command(args: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Run a read-only system tool without a shell; C locale so output formats are stable to parse."""
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    try:
        proc = subprocess.run(
            list(args),
            capture_output=True,
            timeout=timeout,
            check=False,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise CommandError(f"{args[0]} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"{args[0]} timed out after {timeout:g} s") from exc
    except OSError as exc:
        raise CommandError(f"{args[0]} could not run: {exc.strerror or exc}") from exc
    out = proc.stdout[:_MAX_OUTPUT].decode("utf-8", errors="replace")
    if proc.returncode != 0:
        err = proc.stderr[:300].decode("utf-8", errors="replace").strip()
        raise CommandError(f"{args[0]} exited with status {proc.returncode}" + (f": {err}" if err else ""))
    return out
