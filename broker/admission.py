"""A connection whose frames wait while its admission is read from the database (issue 14).

An agent's connection is admitted by its certificate record and its contract's status, two reads
that are awaited now that storage is asynchronous. The WebSocket handler must exist at once, so
:class:`HeldLink` is the handler meanwhile: it keeps the frames that arrive (a hello, a status: a
few; more than ``max_held`` closes the connection), and when the admission task is done it hands
the connection to the real handler and replays them in order. Nothing is answered before then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from wire import WireConnection
from wire.server import Handler

log = logging.getLogger("broker.admission")

MAX_HELD = 32
"""Frames kept while the admission is read (an agent sends one hello, then waits)."""


class HeldLink:
    """The handler until ``admit`` returns the real one (or raises: the connection is closed)."""

    def __init__(
        self,
        conn: WireConnection,
        admit: Coroutine[Any, Any, Handler],
        *,
        tasks: set[asyncio.Task[None]],
        max_held: int = MAX_HELD,
    ) -> None:
        self.conn = conn
        self.max_held = max_held
        self._held: list[tuple[bool, str | bytes]] = []
        self._lost = False
        self._task = asyncio.get_running_loop().create_task(self._run(admit))
        tasks.add(self._task)
        self._task.add_done_callback(tasks.discard)

    async def _run(self, admit: Coroutine[Any, Any, Handler]) -> None:
        try:
            handler = await admit
        except Exception:  # one connection's bug (or a storage failure) never takes the broker down
            log.exception("admission failed")
            self.conn.close(1011, "internal")
            return
        if self._lost:
            handler.connection_lost()
            return
        self.conn.handler = handler
        held, self._held = self._held, []
        for is_text, frame in held:
            if self.conn.handler is not handler:  # the handler closed the connection meanwhile
                break
            deliver: Callable[[Any], None] = handler.text_received if is_text else handler.binary_received
            deliver(frame)

    def text_received(self, text: str) -> None:
        self._hold(True, text)

    def binary_received(self, data: bytes) -> None:
        self._hold(False, data)

    def _hold(self, is_text: bool, frame: str | bytes) -> None:
        if len(self._held) >= self.max_held:
            self.conn.close(1008, "too many messages before admission")
            return
        self._held.append((is_text, frame))

    def resume_writing(self) -> None:
        pass

    def connection_lost(self) -> None:
        self._lost = True
        self._held.clear()
        if not self._task.done():
            self._task.cancel()

    async def wait(self) -> None:
        """For tests: until the admission is done."""
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
