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

from .errors import AgentError, AgentErrorCode

LOCK_FILE = "run.lock"
PID_LOCK_OFFSET = 4096
"""Where the session pid file's Windows lock byte lies (past the process id it holds)."""


class AlreadyRunning(AgentError):
    code = AgentErrorCode.ALREADY_RUNNING

    def __init__(self, pid: str) -> None:
        super().__init__(f"the agent is already running (process {pid or '?'})")
        self.pid = pid


def _try_lock(fd: int, offset: int = 0) -> bool:
    """Take the OS lock on ``fd`` without waiting; False when another process holds it. On Windows
    the lock covers one byte at ``offset`` (mandatory there: a lock past the content keeps the
    content readable); elsewhere it is ``flock`` on the whole file."""
    try:
        if sys.platform == "win32":
            import msvcrt

            os.lseek(fd, offset, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            os.lseek(fd, 0, os.SEEK_SET)
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


class SessionPidFile:
    """``session.pid``: the running ``request-support``'s process id, for ``agent end``.

    Written under an OS file lock held while the session runs (as ``run.lock`` above), so a file
    left behind by a killed session (SIGKILL, a crash, a power cut) is recognised as stale: nobody
    holds its lock. :func:`pid_of_running_session` then removes it and signals nobody, where before
    ``agent end`` sent SIGTERM to whatever process had been given that number since.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> SessionPidFile:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> SessionPidFile:
        """Write this process's id and hold the lock (a no-op when another live session holds it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if not _try_lock(fd, PID_LOCK_OFFSET):  # another live session holds it: leave it to that one
            os.close(fd)
            return self
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the file and let the lock go (the session ended normally)."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


def pid_of_running_session(path: Path) -> int | None:
    """The process id in ``path`` if a live session holds its lock; None otherwise (a stale file
    left by a killed session is removed)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        if _try_lock(fd, PID_LOCK_OFFSET):  # nobody holds it: its session is gone
            path.unlink(missing_ok=True)
            return None
        return int(os.read(fd, 32).decode("ascii", "replace").strip())
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
