"""In-order handling of one connection's messages when a few of them must wait for a thread.

An operator's input events, chat and claims are handled as they arrive, in the callback that read
them: no task to wake, so operator input reaches the agent in the same event-loop turn
(docs/PERFORMANCE.md, latency). A login or a password change runs argon2id in a worker thread;
while it does, the messages behind it wait here, in order, and are handled when it is done.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from protocol.errors import ErrorCode

from .errors import BrokerError

log = logging.getLogger("broker.ordered")

T = TypeVar("T")


class BacklogFull(BrokerError):
    """More messages arrived during one slow step than ``max_backlog`` (answered ``rate_limited``)."""

    code = ErrorCode.RATE_LIMITED


class OrderedDispatch(Generic[T]):
    """Feed messages with :meth:`push`; ``is_slow(m)`` picks the ones ``slow`` handles in a task.

    max_backlog:
        Messages held while a slow step runs (64: a login takes tens of milliseconds, a person does
        not type that fast); one more raises :class:`BacklogFull` and the caller closes the link.
    """

    def __init__(
        self,
        fast: Callable[[T], None],
        slow: Callable[[T], Coroutine[Any, Any, None]],
        is_slow: Callable[[T], bool],
        *,
        on_crash: Callable[[], None],
        max_backlog: int = 64,
    ) -> None:
        self.fast = fast
        self.slow = slow
        self.is_slow = is_slow
        self.on_crash = on_crash
        self.max_backlog = max_backlog
        self._backlog: deque[T] = deque()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def busy(self) -> bool:
        return self._task is not None

    def push(self, message: T) -> None:
        if self._closed:
            return
        if self._task is not None:
            if len(self._backlog) >= self.max_backlog:
                raise BacklogFull(f"{len(self._backlog)} messages waiting")
            self._backlog.append(message)
            return
        self._run(message)
        self._drain()

    def close(self) -> None:
        """The connection is gone: drop what waits and cancel the slow step."""
        self._closed = True
        self._backlog.clear()
        if self._task is not None:
            self._task.cancel()

    def _run(self, message: T) -> None:
        if self.is_slow(message):
            self._task = asyncio.get_running_loop().create_task(self.slow(message))
            self._task.add_done_callback(self._done)
        else:
            self.fast(message)

    def _drain(self) -> None:
        while self._backlog and self._task is None and not self._closed:
            self._run(self._backlog.popleft())

    def _done(self, task: asyncio.Task[None]) -> None:
        self._task = None
        if task.cancelled():
            return
        if task.exception() is not None:
            log.error("a slow step failed", exc_info=task.exception())
            self.close()
            self.on_crash()
            return
        try:
            self._drain()
        except Exception:
            log.exception("handling a message failed")
            self.close()
            self.on_crash()
