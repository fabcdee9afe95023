"""Lines typed into the agent's terminal, read without blocking the event loop (:mod:`agent.prompt`).

``LineReader`` turns a blocking text stream into ``await readline(timeout)``, with the time each line
was read; ``hidden_input`` turns the terminal's echo off while a secret is typed. Nothing here logs
what the subscriber typed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Final, TextIO

__all__ = ["DEFAULT_MAX_LINE", "DEFAULT_MAX_PENDING", "LineReader", "hidden_input"]

DEFAULT_MAX_LINE: Final = 4096
"""Characters kept of one typed line; the rest is dropped (a chat message is at most 2000 anyway)."""


DEFAULT_MAX_PENDING: Final = 256
"""Lines read but not yet awaited; beyond this, new lines are dropped rather than queued without bound."""


@contextlib.contextmanager
def hidden_input(stream: TextIO) -> Iterator[bool]:
    """While a secret is typed (the router password, 別紙5 (11)), the terminal does not echo it.

    Yields whether echo was turned off: only for a POSIX terminal (``termios``); a pipe has no echo
    to turn off, and Windows' console is left as it is. Echo comes back however the block ends.
    The line reader thread goes on reading as before: only the terminal's echo flag changes.
    """
    try:
        import termios

        fd = stream.fileno()
        before = termios.tcgetattr(fd) if os.isatty(fd) else None
    except (ImportError, OSError, ValueError, AttributeError):
        before = None
    if before is None:
        yield False
        return
    quiet = list(before)
    quiet[3] &= ~termios.ECHO  # lflag
    termios.tcsetattr(fd, termios.TCSADRAIN, quiet)
    try:
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, before)


class LineReader:
    """Lines from a blocking text stream (stdin, a pipe), awaited with a timeout.

    A daemon thread reads the stream, started on the first :meth:`readline` and bound to that
    call's event loop; a thread is the one way that works the same for a terminal, a pipe and
    Windows' console. At end of input :meth:`readline` returns ``None`` and :attr:`at_eof` is
    True from then on; a ``None`` with ``at_eof`` False was a timeout. A decoding or read error
    ends the input like EOF (:attr:`error` says which).
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        max_line: int = DEFAULT_MAX_LINE,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self._stream = stream
        self._max_line = max_line
        self._max_pending = max_pending
        self._queue: asyncio.Queue[tuple[float, str | None]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._eof = False
        self._error: BaseException | None = None
        self._dropped = 0

    @property
    def at_eof(self) -> bool:
        """True once the end of input has been returned (every later ``readline`` returns None at once)."""
        return self._eof

    @property
    def error(self) -> BaseException | None:
        """The read error that ended the input early, if any."""
        return self._error

    @property
    def dropped(self) -> int:
        """Lines dropped because more than ``max_pending`` were waiting."""
        return self._dropped

    def _start(self) -> asyncio.Queue[tuple[float, str | None]]:
        loop = asyncio.get_running_loop()
        if self._queue is None:
            self._loop = loop
            self._queue = asyncio.Queue()
            self._thread = threading.Thread(target=self._read, name="agent-line-reader", daemon=True)
            self._thread.start()
        elif self._loop is not loop:
            raise RuntimeError("LineReader is bound to another event loop")
        return self._queue

    def _read(self) -> None:
        assert self._loop is not None
        try:
            while True:
                line = self._stream.readline()
                if not line:
                    break
                self._deliver(line.rstrip("\r\n")[: self._max_line])
        except (OSError, ValueError) as exc:  # ValueError: closed file, UnicodeDecodeError
            self._error = exc
        self._deliver(None)

    def _deliver(self, item: str | None) -> None:
        assert self._loop is not None
        stamp = time.monotonic()  # when the line was read, not when the loop got to it
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening any more
            self._loop.call_soon_threadsafe(self._put, stamp, item)

    def _put(self, stamp: float, item: str | None) -> None:
        assert self._queue is not None
        if item is not None and self._queue.qsize() >= self._max_pending:
            self._dropped += 1
            return
        self._queue.put_nowait((stamp, item))

    async def readline(self, timeout: float | None) -> str | None:
        """The next line without its line ending; None at EOF or after ``timeout`` seconds."""
        return (await self.readline_stamped(timeout))[1]

    async def readline_stamped(self, timeout: float | None) -> tuple[float, str | None]:
        """Like :meth:`readline`, with the ``time.monotonic()`` at which the line was read.

        The session uses the time to ignore lines typed before a question was shown (typed
        ahead, or injected together with the line that opened the question).
        """
        queue = self._start()
        if self._eof:
            return time.monotonic(), None
        try:
            async with asyncio.timeout(timeout):
                stamp, item = await queue.get()
        except TimeoutError:
            return time.monotonic(), None
        if item is None:
            self._eof = True
        return stamp, item
