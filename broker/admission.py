"""Who may connect: enrollment, an agent's admission, and the audit of refusals (split from
:mod:`broker.server`, which mixes :class:`Admission` into its ``Broker``).

A connection whose frames wait while its admission is read from the database (issue 14):

An agent's connection is admitted by its certificate record and its contract's status, two reads
that are awaited now that storage is asynchronous. The WebSocket handler must exist at once, so
:class:`HeldLink` is the handler meanwhile: it keeps the frames that arrive (a hello, a status: a
few: reading is paused meanwhile), and when the admission task is done it hands the connection to
the real handler, resumes reading and replays them in order. Nothing is answered before then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from protocol import CLOSE_TRY_AGAIN, Event, Link, Received
from protocol.errors import ErrorCode
from protocol.messages import Enroll, Error
from wire import AsyncConnection, LinkPump, LinkRunner, WireConnection
from wire.server import Handler

from .admission_reads import AdmissionReads
from .background import BackgroundWriter
from .config import BrokerConfig
from .enrollment import enroll
from .errors import BrokerError, RefusedError
from .pki import Pki
from .policy import AuditThrottle
from .storage import Storage
from .store import CertificateRecord, SubscriberStatus

if TYPE_CHECKING:
    from .cluster_host import SharedAddressLimit
    from .metrics import BrokerMetrics

log = logging.getLogger("broker")

MAX_HELD = 4096
"""Frames kept while the admission is read. Reading is paused meanwhile, so only what one read of
the socket already held arrives (the TLS read buffer, 2 KiB by default: a hundred tiny frames at
most); more closes the connection."""


DEFERRED_LOG_EVERY = 100
"""An admission the database could not answer is logged once per this many (a storm makes thousands)."""
DEFERRED_RETRY_AFTER = 5.0
"""The ``retry_after`` of such a refusal; the agent's own backoff decides when it dials again."""


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
        conn.pause_reading()  # until admitted: a client that does not wait is simply not read
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
        self.conn.resume_reading()
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

    def ping_received(self) -> None:
        """A heartbeat before admission: the real handler's link starts its idle clock when it
        takes over, a moment later, so there is nothing to note."""

    def resume_writing(self) -> None:
        pass

    def connection_lost(self) -> None:
        self._lost = True
        self._held.clear()
        if not self._task.done():
            self._task.cancel()

    async def wait(self) -> None:
        """For tests: until the admission is done."""
        await asyncio.wait({self._task})
        if not self._task.cancelled():
            self._task.result()  # its exception, if any


class Admission:
    """The enrollment path and the agent admission checks of :class:`broker.server.Broker`."""

    clock: Callable[[], float]
    config: BrokerConfig
    pki: Pki
    storage: Storage
    background: BackgroundWriter
    _refusal_audits: AuditThrottle
    _enroll_attempts: SharedAddressLimit
    metrics: BrokerMetrics
    _deferred_admissions = 0
    _admission_reads: AdmissionReads | None = None

    def _link(self, expect: str) -> Link:
        raise NotImplementedError

    async def _enrollment(self, stream: AsyncConnection) -> None:
        try:
            await self._enroll(stream)
        except Exception:  # one connection's bug never takes the broker down
            log.exception("enrollment handler failed")
            with contextlib.suppress(Exception):
                await stream.close(1011, ErrorCode.INTERNAL.value)

    def _audit_refusal(self, action: str, subject: str, code: ErrorCode, peer: str, **extra: Any) -> None:
        """Every refusal is audited, but a client repeating the same one gets one entry a minute
        (with the count), so it cannot grow the log without bound."""
        now = self.clock()
        metrics = getattr(self, "metrics", None)
        if metrics is not None:
            metrics.count_refusal(code)
        count = self._refusal_audits.note(f"{action}|{subject}|{code.value}|{peer}", now)
        if count is None:
            return
        details: dict[str, Any] = {"code": code.value, "peer": peer, **extra}
        if count > 1:
            details["count"] = count
        self.background.submit(
            lambda storage: storage.audit.append(
                actor="broker", action=action, subject=subject, details=details, now=now
            ),
            action,
        )

    def _audit_connection_refusals(self, refused: dict[str, int]) -> None:
        """Connections refused before TLS by the per-address cap (wire.gate): one entry a minute at
        most, with a count per address."""
        details = {"reason": "too_many_unauthenticated", "count": sum(refused.values()), "addresses": refused}
        node, now = self.config.node, self.clock()
        self.background.submit(
            lambda storage: storage.audit.append(
                actor="broker", action="connection.refused", subject=node, details=details, now=now
            ),
            "connection.refused",
        )

    async def _enroll(self, ws: AsyncConnection) -> None:
        peer = ws.peer
        runner = LinkRunner(ws, self._link("enroll"), clock=self.clock, binary=False)

        async def on_event(event: Event) -> None:
            if isinstance(event, Received) and isinstance(event.message, Enroll):
                request = event.message
                now = self.clock()
                try:
                    if (retry := await self._enroll_attempts.hit(peer, now)) is not None:
                        raise RefusedError(
                            "too many enrollment attempts from this address",
                            code=ErrorCode.RATE_LIMITED,
                            retry_after=retry,
                        )
                    reply = await enroll(self.storage, self.pki.ca, request, now=now)
                except BrokerError as exc:
                    # A storage failure cannot be audited either (the same store); it is logged.
                    if exc.code is not ErrorCode.STORAGE_UNAVAILABLE:
                        self._audit_refusal("enroll.refused", request.contract_id, exc.code, peer)
                    elif (metrics := getattr(self, "metrics", None)) is not None:
                        metrics.count_refusal(exc.code)  # counted, though it cannot be audited
                    await runner.send(
                        Error(
                            id=request.id,
                            code=exc.code.value,
                            message=exc.message,
                            retry_after=exc.retry_after,
                        )
                    )
                    return
                log.info("enrolled %s serial %s", request.contract_id, reply.serial)
                await runner.send(reply)
                await runner.close(1000, "enrolled")
            elif isinstance(event, Received):
                if (metrics := getattr(self, "metrics", None)) is not None:
                    metrics.count_refusal(ErrorCode.UNEXPECTED_MESSAGE)
                await runner.send(Error(code=ErrorCode.UNEXPECTED_MESSAGE.value, message="expected enroll"))

        await runner.run(on_event)

    async def _admit_agent(self, serial: str | None, peer: str) -> CertificateRecord:
        """The agent's certificate record; an audited ``RefusedError`` when it may not connect."""
        if serial is None:
            raise self._agent_refused(
                "-", ErrorCode.CERT_REQUIRED, "a client certificate is required on /agent", peer
            )
        reads = self._admission_reads
        if reads is None:  # the first admission, after start() opened the storage
            reads = self._admission_reads = AdmissionReads(self.storage.certificates.with_subscribers)
        found = await reads.get(serial)
        if found is None:
            raise self._agent_refused(
                "-",
                ErrorCode.CERT_UNKNOWN,
                "this certificate is not known to the broker",
                peer,
                serial=serial,
            )
        record, subscriber = found
        if record.revoked_at is not None:
            raise self._agent_refused(
                record.contract_id,
                ErrorCode.CERT_REVOKED,
                "this certificate has been revoked",
                peer,
                serial=serial,
            )
        if record.not_after <= self.clock():
            # TLS checked the validity at the full handshake; a resumed one (broker.ticketkeys)
            # does not look at it again, so the record decides, as for revocation.
            raise self._agent_refused(
                record.contract_id,
                ErrorCode.CERT_EXPIRED,
                "this certificate has expired",
                peer,
                serial=serial,
            )
        if subscriber is None or subscriber.status is SubscriberStatus.TERMINATED:
            raise self._agent_refused(
                record.contract_id,
                ErrorCode.SUBSCRIBER_TERMINATED,
                "the contract is terminated",
                peer,
                serial=serial,
            )
        return record

    def _refused_link(self, ws: WireConnection, error: Error, close_code: int) -> LinkPump:
        """An agent not admitted: one ``error`` before any hello, then a close whose reason is the
        error's code."""
        self.metrics.count_handshake("agent", ok=False)
        pump = LinkPump(ws, self._link("agent"), lambda event: None, clock=self.clock)
        pump.send(error)
        pump.close(close_code, error.code)
        return pump

    def _admission_deferred(self, ws: WireConnection, exc: Exception) -> LinkPump:
        """The database did not answer the admission's read (a storm on a slow database): the agent
        hears ``storage_unavailable`` and a 1013 close, and reconnects with its backoff. One log line
        per :data:`DEFERRED_LOG_EVERY`, not a traceback per connection."""
        self.metrics.count_refusal(ErrorCode.STORAGE_UNAVAILABLE)  # counted; it cannot be audited
        self._deferred_admissions += 1
        if self._deferred_admissions % DEFERRED_LOG_EVERY == 1:
            log.error(
                "agent admission deferred: the database did not answer (%s); %d so far",
                type(exc).__name__,
                self._deferred_admissions,
            )
        error = Error(
            code=ErrorCode.STORAGE_UNAVAILABLE.value,
            message="the broker cannot check this certificate right now; try again later",
            retry_after=DEFERRED_RETRY_AFTER,
        )
        return self._refused_link(ws, error, CLOSE_TRY_AGAIN)

    def _agent_refused(
        self, subject: str, code: ErrorCode, message: str, peer: str, **extra: Any
    ) -> RefusedError:
        self._audit_refusal("agent.refused", subject, code, peer, **extra)
        return RefusedError(message, code=code)
