"""Records nobody waits for, written in order by one task (issue 12 item 7, issue 14).

An agent's presence (connect, disconnect, last seen, machine name) and the audit entries of refused
connections only *record* what happened: no reply waits for them. They are queued here and written
by a single task over :class:`broker.storage.Storage`, in the order they were submitted (so
``agent.connect`` precedes its ``agent.disconnect`` in the chain). The storage itself never blocks
the event loop; this queue only keeps the callbacks that produce these records synchronous and
ordered.

The queue is bounded (``max_pending`` records): when the database stays locked for long under a
flood of connections, further records are dropped and counted in the log rather than held without
bound.

Presence changes (:meth:`BackgroundWriter.submit_presence`) that queue up behind a write are written
together, up to ``max_batch`` in one transaction (``Presence.set_online_many``): after a broker
process dies, thousands of agents reconnect to the others within seconds, and each connect was one
durable transaction of its own (a commit, and a read and write of the audit head).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext

from wire.tasks import stop_task

from .storage import Storage, StorageBusy
from .storage.db import ConstraintViolated
from .store import PresenceChange

log = logging.getLogger("broker.background")

Write = Callable[[Storage], Awaitable[object]]

DEFAULT_MAX_PENDING = 100_000
"""Records queued while the database is unavailable (about 100 bytes each)."""

DEFAULT_MAX_BATCH = 256
"""Presence changes written in one transaction at most."""


class PresenceBatch:
    """Queued presence changes written in one transaction, in order."""

    __slots__ = ("changes",)

    def __init__(self, change: PresenceChange) -> None:
        self.changes = [change]

    def __len__(self) -> int:
        return len(self.changes)

    async def __call__(self, storage: Storage) -> None:
        try:
            await storage.presence.set_online_many(self.changes)
        except ConstraintViolated:
            if len(self.changes) == 1:
                raise
            # One change the database refuses (its certificate row is gone) must not cost the others.
            log.warning("a batch of %d presence changes was refused; writing them one by one", len(self))
            for change in self.changes:
                try:
                    await storage.presence.set_online_many([change])
                except ConstraintViolated as exc:
                    log.error("presence change of agent %s refused: %s", change.serial, exc)


class BackgroundWriter:
    """One task, writes done in the order they were submitted."""

    def __init__(
        self,
        storage: Storage,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_batch: int = DEFAULT_MAX_BATCH,
        busy_retry_for: float = 120.0,
        busy_retry_pause: float = 0.2,
        timed: Callable[[], AbstractContextManager[None]] = nullcontext,
    ) -> None:
        """``busy_retry_for``: how long a record waits for a database another process keeps locked
        (each try already waits the storage's busy timeout) before it is dropped and logged."""
        self.storage = storage
        self.timed = timed
        """Around each write (the broker's ``metrics.time_storage("write")``)."""
        self.max_pending = max_pending
        self.max_batch = max_batch
        self._pending = 0  # records queued, a batch counting each of its changes
        self.busy_retry_for = busy_retry_for
        self.busy_retry_pause = busy_retry_pause
        self._queue: deque[tuple[Write, str]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def submit(self, write: Write, what: str) -> None:
        """Queue ``await write(storage)``; never blocks (a full queue drops the record and counts it)."""
        if self._full(what):
            return
        self._queue.append((write, what))
        self._pending += 1
        self._idle.clear()
        self._wake.set()

    def submit_presence(self, change: PresenceChange) -> None:
        """Queue an agent's connect or disconnect; joins the batch at the end of the queue, if any."""
        what = "agent.connect" if change.online else "agent.disconnect"
        if self._full(what):
            return
        if self._queue:
            last, _ = self._queue[-1]
            if isinstance(last, PresenceBatch) and len(last) < self.max_batch:
                last.changes.append(change)
                self._pending += 1
                return
        self._queue.append((PresenceBatch(change), "agent presence"))
        self._pending += 1
        self._idle.clear()
        self._wake.set()

    def _full(self, what: str) -> bool:
        if self._pending < self.max_pending:
            return False
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 1000 == 0:
            log.error("storage is not keeping up: %d records dropped (last: %s)", self.dropped, what)
        return True

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until everything submitted so far is written (tests, shutdown); False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def close(self, timeout: float) -> bool:
        """Finish what is queued (up to ``timeout`` seconds); True when everything was written."""
        done = await self.wait_idle(timeout)
        await stop_task(self._task, what="storage writer")
        return done

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                write, what = self._queue.popleft()
                try:
                    await self._write(write, what)
                finally:
                    self._pending -= len(write) if isinstance(write, PresenceBatch) else 1
            self._idle.set()

    async def _write(self, write: Write, what: str) -> None:
        """One record; a database locked by another process past the busy timeout (``StorageBusy``:
        nothing was written) is retried, in order, for up to ``busy_retry_for`` seconds."""
        deadline = asyncio.get_running_loop().time() + self.busy_retry_for
        while True:
            try:
                with self.timed():
                    await write(self.storage)
                return
            except StorageBusy:
                if asyncio.get_running_loop().time() >= deadline:
                    log.error("background write dropped, the database stayed locked: %s", what)
                    return
                log.warning("the database is locked by another process; retrying: %s", what)
                await asyncio.sleep(self.busy_retry_pause)
            except Exception:  # one failed record (disk full) must not stop the rest
                log.exception("background write failed: %s", what)
                return
