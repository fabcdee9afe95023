"""One ``agent run`` per data directory.

Two would hold two connections with the same certificate: the broker allows that (a support
session runs beside ``run`` on its own connection), but two background agents only double the
heartbeats and confuse the subscriber's "is it running?". The lock is an OS file lock on
``run.lock`` in the data directory, so it is released however the process ends (no stale lock
after a crash or a power cut); the file holds the owner's process id for the message.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from .errors import AgentError

LOCK_FILE = "run.lock"


class AlreadyRunning(AgentError):
    code = "already_running"

    def __init__(self, pid: str) -> None:
        super().__init__(f"the agent is already running (process {pid or '?'})")
        self.pid = pid


def _try_lock(fd: int) -> bool:
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def single_instance(data_dir: Path) -> Iterator[None]:
    """Hold the data directory's run lock for the block; ``AlreadyRunning`` if another process has it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if not _try_lock(fd):
            owner = os.read(fd, 32).decode("ascii", "replace").strip()
            raise AlreadyRunning(owner)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
