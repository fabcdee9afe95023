"""Agents' admission reads, gathered: those that arrive while reads are in flight go in one statement.

Every agent that connects is admitted by one read of its certificate and contract
(:meth:`broker.admission.Admission._admit_agent`). In a reconnect storm thousands arrive within
seconds, and each read holds a pool connection for a whole round trip *and* the turn of the event
loop that takes its answer: with the loop busy with TLS handshakes, a turn takes tens of
milliseconds, so eight connections admitted ~110 agents a second per process and most admissions
queued for the pool (``broker_storage_pool_*`` during a 30,000-agent run, docs/PERFORMANCE.md).

Here, while fewer than ``max_in_flight`` reads are under way an admission starts its own (no wait
when the broker is quiet); otherwise it joins the next read, which takes every admission waiting
then (up to ``max_batch``) when one in flight ends: one statement, one connection, one turn for
all of them (``Certificates.with_subscribers``). A failure of that read fails each of its
admissions alike (each then hears ``storage_unavailable``). An admission whose connection is lost
meanwhile stops waiting; the read goes on for the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from .store import CertificateRecord, Subscriber

Found = tuple[CertificateRecord, Subscriber | None]
ReadMany = Callable[[Sequence[str]], Awaitable[dict[str, Found]]]

#: Reads under way at once: half of a broker's PostgreSQL pool (``DEFAULT_MAX_CONNECTIONS`` 8), so
#: the presence writer, the readiness probe and the session host still find a connection.
DEFAULT_MAX_IN_FLIGHT: Final = 4
#: Admissions in one read at most (one ``= ANY(array)`` statement on PostgreSQL).
DEFAULT_MAX_BATCH: Final = 256


class AdmissionReads:
    """``await reads.get(serial)``: the certificate and contract, or None for an unknown serial."""

    def __init__(
        self,
        read_many: ReadMany,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        if max_in_flight < 1 or max_batch < 1:
            raise ValueError("max_in_flight and max_batch must be at least 1")
        self._read_many = read_many
        self.max_in_flight = max_in_flight
        self.max_batch = max_batch
        self._waiting: dict[str, list[asyncio.Future[Found | None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.reads = 0
        """Statements run so far (for tests and the benchmark: fewer than admissions under load)."""

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def get(self, serial: str) -> Found | None:
        future: asyncio.Future[Found | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(serial, []).append(future)
        if len(self._tasks) < self.max_in_flight:
            self._start()
        return await future

    def _start(self) -> None:
        batch: dict[str, list[asyncio.Future[Found | None]]] = {}
        while self._waiting and len(batch) < self.max_batch:
            serial = next(iter(self._waiting))
            batch[serial] = self._waiting.pop(serial)
        task = asyncio.get_running_loop().create_task(self._read(batch))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._waiting and len(self._tasks) < self.max_in_flight:
            self._start()

    async def _read(self, batch: dict[str, list[asyncio.Future[Found | None]]]) -> None:
        live = [serial for serial, futures in batch.items() if not all(f.done() for f in futures)]
        if not live:  # every one of them was lost while it waited
            return
        self.reads += 1
        futures = [future for waiting in batch.values() for future in waiting]
        try:
            found = await self._read_many(live)
        except asyncio.CancelledError:  # the broker stops: nobody waits on a read that will not end
            for future in futures:
                future.cancel()
            raise
        except Exception as exc:  # the database's failure is each admission's to report
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        for serial, waiting in batch.items():
            for future in waiting:
                if not future.done():
                    future.set_result(found.get(serial))
