"""TEMPORARY: the old synchronous store interface, over :mod:`broker.storage`, for ``SessionManager``.

``broker/sessions.py`` still calls a synchronous store (``self.store.append_audit(…)``,
``get_subscriber``, ``count_audit``, ``get_certificate``, ``audit_page``, ``get_inventory``; and
``broker.colleagues`` ``get_operator``). It is being rewritten into a pure session core whose host
awaits ``broker.storage.Storage`` directly (docs/storage.md, step 3). Until that lands, this adapter
gives it the same methods over the *same database* the broker uses, so a PostgreSQL broker keeps its
sessions' audit entries in PostgreSQL:

* a second :class:`~broker.storage.Storage` (same URL, same audit chain) runs on an event loop of its
  own, in one thread;
* ``append_audit`` does not wait: entries go into one FIFO queue written by one task there, so their
  order is kept and a locked database does not stall the broker's loop (the seq is not known: 0);
* reads wait for their answer (the old behaviour, but a SQLite read answers while another process
  holds the write lock); the console's audit page and verify first wait for the queued entries
  (at most ``FLUSH_WAIT``).

Remove it when the session host lands: delete this file and the lines marked ``session_store`` in
``broker/server.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from protocol.messages import InventoryReport

from .audit import AuditEntry, ChainReport
from .datakeys import DataKeyring
from .inventory import InventoryVault
from .operators import OperatorRecord
from .storage import AuditChain, Storage, StorageBusy, open_storage
from .store import CertificateRecord, InventoryRecord, Subscriber

log = logging.getLogger("broker.session_store")

T = TypeVar("T")

Entry = tuple[str, str, str, dict[str, Any], float]
"""An audit entry queued: actor, action, subject, details, time."""

#: Tries of one queued audit entry while another process keeps the database locked (each try waits
#: the storage's busy timeout, 10 s).
BUSY_RETRIES = 12

#: Longest a read of the audit log waits for the queued entries before it reads anyway.
FLUSH_WAIT = 1.0

#: Longest a synchronous caller waits for one read (the SQLite busy timeout is 10 s).
CALL_TIMEOUT = 30.0


class SessionStore:
    """The methods ``SessionManager`` calls, each one hop to the adapter's own loop."""

    def __init__(self, url: str | Path, *, chain: AuditChain) -> None:
        self.url = url
        self.chain = chain
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="session-store", daemon=True)
        self._storage: Storage | None = None
        self._queue: asyncio.Queue[tuple[int, Entry]] | None = None
        self._lock = threading.Lock()
        self._unwritten: dict[int, Entry] = {}
        self._numbers = 0
        self._writer: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    def open(self) -> None:
        """Blocking: call it in a worker thread (``asyncio.to_thread``)."""
        self._thread.start()
        self._call(self._open())

    async def _open(self) -> None:
        self._storage = await open_storage(self.url, chain=self.chain)
        self._queue = asyncio.Queue()
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    def close(self, timeout: float = 30.0) -> None:
        """Blocking: write what is queued, close the database, stop the thread."""
        if not self._thread.is_alive():
            return
        try:
            self._call(self._close(), timeout=timeout)
        except Exception:
            log.exception("closing the session store failed")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    async def _close(self) -> None:
        if self._queue is not None:
            await self._queue.join()
        if self._writer is not None:
            self._writer.cancel()
        if self._storage is not None:
            await self._storage.close()

    def _call(self, coro: Coroutine[Any, Any, T], *, timeout: float = CALL_TIMEOUT) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    @property
    def storage(self) -> Storage:
        assert self._storage is not None, "SessionStore.open() first"
        return self._storage

    async def _write_loop(self) -> None:
        assert self._queue is not None
        while True:
            number, (actor, action, subject, details, now) = await self._queue.get()
            try:
                for attempt in range(BUSY_RETRIES):  # another process keeps the database locked
                    try:
                        await self.storage.audit.append(
                            actor=actor, action=action, subject=subject, details=details, now=now
                        )
                        break
                    except StorageBusy:
                        log.warning(
                            "the database is locked; retrying audit entry %s (%d)", action, attempt + 1
                        )
                else:
                    log.error("audit entry %s %s not written: the database stayed locked", action, subject)
            except Exception:
                log.exception("audit entry %s %s not written", action, subject)
            finally:
                with self._lock:
                    del self._unwritten[number]  # only now: count_audit counts it until committed
                self._queue.task_done()

    async def _flushed(self, coro: Coroutine[Any, Any, T]) -> T:
        """``coro`` after the queued audit entries are written, or after ``FLUSH_WAIT`` seconds when
        the database is locked (the read then misses the newest entries rather than stall)."""
        if self._queue is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), FLUSH_WAIT)
        return await coro

    # -- what SessionManager calls ----------------------------------------------------------------

    def append_audit(
        self, *, actor: str, action: str, subject: str, details: dict[str, Any], now: float
    ) -> int:
        entry = (actor, action, subject, dict(details), now)
        with self._lock:
            self._numbers += 1
            number = self._numbers
            self._unwritten[number] = entry
        self._loop.call_soon_threadsafe(self._enqueue, (number, entry))
        return 0

    def _enqueue(self, item: tuple[int, Entry]) -> None:
        assert self._queue is not None
        self._queue.put_nowait(item)

    def get_subscriber(self, contract_id: str) -> Subscriber | None:
        return self._call(self.storage.subscribers.get(contract_id))

    def get_certificate(self, serial: str) -> CertificateRecord | None:
        return self._call(self.storage.certificates.get(serial))

    def get_inventory(self, inventory_id: int) -> InventoryRecord | None:
        return self._call(self.storage.inventory.get(inventory_id))

    def get_operator(self, name: str) -> OperatorRecord | None:
        return self._call(self.storage.operators.get(name))

    def count_audit(self, *, action: str, subject: str, since: float) -> int:
        """Committed entries plus those still queued (the rate limit of 第18条⑤ counts a request at
        once); the queue is not waited for, so a locked database does not stall a support request.
        The queued ones are taken first: an entry committing in between is counted twice, never
        missed."""
        with self._lock:
            queued = sum(
                1
                for _, a, subj, _, at in self._unwritten.values()
                if a == action and subj == subject and at >= since
            )
        return queued + self._call(self.storage.audit.count(action=action, subject=subject, since=since))

    def audit_page(self, *, subject: str | None, limit: int, before_seq: int | None) -> list[AuditEntry]:
        return self._call(
            self._flushed(self.storage.audit.page(subject=subject, limit=limit, before_seq=before_seq))
        )

    def audit_entries(self, *, subject: str | None = None) -> list[AuditEntry]:
        return self._call(self._flushed(self.storage.audit.entries(subject=subject)))

    def verify_audit(self) -> ChainReport:
        return self._call(self._flushed(self.storage.audit.verify()))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Any coroutine over :attr:`storage`, waited for (after the queued audit entries)."""
        return self._call(self._flushed(coro))


class SessionVault(InventoryVault):
    """``InventoryVault`` whose ``save`` SessionManager can call synchronously (through the adapter)."""

    def __init__(self, store: SessionStore, keyring: DataKeyring) -> None:
        super().__init__(keyring)
        self._session_store = store

    def save(self, *, contract_id: str, serial: str, report: InventoryReport, now: float) -> int:
        blobs = self.seal(contract_id=contract_id, report=report)
        return self._session_store.run(
            self._session_store.storage.inventory.save(
                contract_id=contract_id,
                serial=serial,
                session_id=report.session_id,
                items=[item.item for item in report.items],
                items_blob=blobs[0],
                credentials_blob=blobs[1],
                now=now,
            )
        )


__all__ = ["SessionStore", "SessionVault"]
