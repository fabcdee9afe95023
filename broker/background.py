"""Writes that nobody waits for, done on one storage thread instead of the event loop (issue 12, item 7).

SQLite waits up to ``busy_timeout`` for a lock that another process holds (the admin CLI, a backup,
an operator's ad-hoc query). Done on the event loop, one such wait stalled every connection of the
broker: ``/healthz``, operators' pings, screen relay. The writes that only *record* what happened —
an agent's presence (connect, disconnect, last seen, machine name) and the audit entries of refused
connections — are therefore queued here and done in order by a single thread with a connection of
its own; the event loop never waits for them. Writes whose result someone waits for (enrollment,
consent receipts, session events) stay where they are until storage is made asynchronous (issue 14).

The queue is bounded (``max_pending``): when the database stays locked for long under a flood of
connections, further records are dropped and counted in the log rather than held without bound.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from .store import Store

log = logging.getLogger("broker.background")

Write = Callable[[Store], object]

DEFAULT_MAX_PENDING = 100_000
"""Records queued while the database is unavailable (about 100 bytes each)."""


class BackgroundWriter:
    """One thread, one store connection, writes done in the order they were submitted."""

    def __init__(self, open_store: Callable[[], Store], *, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self._open_store = open_store
        self._queue: queue.Queue[tuple[Write, str] | None] = queue.Queue(max_pending)
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="broker-storage", daemon=True)
        self._thread.start()

    def submit(self, write: Write, what: str) -> None:
        """Queue ``write(store)``; never blocks (a full queue drops the record and counts it)."""
        try:
            self._queue.put_nowait((write, what))
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("storage is not keeping up: %d records dropped (last: %s)", self.dropped, what)

    def wait_idle(self, timeout: float) -> bool:
        """Block until everything submitted so far is written (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout: float) -> bool:
        """Finish what is queued (up to ``timeout`` seconds); True when everything was written."""
        if self._thread is None:
            return True
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        store = self._open_store()
        try:
            while (item := self._queue.get()) is not None:
                write, what = item
                try:
                    write(store)
                except Exception:  # one failed record (disk full, lock timeout) must not stop the rest
                    log.exception("background write failed: %s", what)
                finally:
                    self._queue.task_done()
        finally:
            close = getattr(store, "close", None)
            if close is not None:
                close()
