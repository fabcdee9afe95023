"""The session host's reads of the shared database (docs/cluster.md §6a), split from
:mod:`broker.session_host` (whose :class:`~broker.session_host.SessionHost` mixes this in).

Every rule stays in the pure core; these only read or write the database *before* an event is fed,
and the event carries the result: the 第18条⑤ window and the support code of a request, a claim by
code, the queue of every process, a session adopted after its process died, the process holding a
session an operator asks about. Also the signals that tell the other processes (``SessionRequested``,
``ConsentChanged``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Protocol

from protocol.errors import ProtocolError
from protocol.messages import Claim, Error, Message, QueueEntry, ScopeStatus, SessionState, SupportRequest
from protocol.receipts import parse_receipt

from .core import (
    AgentMessage,
    AgentPeer,
    Audit,
    ClusterQueue,
    CodeClaimed,
    Command,
    Event,
    OpenQuestion,
    OperatorMessage,
    OperatorPeer,
    PersistReceipt,
    PersistSessionStart,
    SessionAdopted,
    SessionCore,
    SharedRequest,
    Subscriber,
    SupportRequested,
    VoidCode,
)
from .core.agent_side import may_request
from .errors import BrokerError
from .host_metrics import RelayMetrics
from .session_links import SessionLinks
from .session_sweep import Swept
from .storage import Storage
from .storage.guards import SharedLimits, SupportCodes

log = logging.getLogger("broker.sessions")

LOCATE_WAIT = 10.0
"""Seconds an operator's message for an open session waits for its agent to be back on some process
(a reconnect after a stop or crash takes a few seconds; the grace is 30 s)."""
LOCATE_STEPS = 40

__all__ = ["ClusterReads", "QueueSignals", "open_question", "scopes_after"]


def scopes_after(
    receipts: Iterable[tuple[str, tuple[str, ...], tuple[str, ...]]],
) -> tuple[tuple[tuple[str, ScopeStatus], ...], tuple[str, ...]]:
    """Each scope's status and what the last receipt granted, after the stored scope receipts
    ``(decision, granted, denied)`` in order, as the core applies decisions
    (``agent_side.consent_decision``): what an adopted session starts from."""
    scopes: dict[str, ScopeStatus] = {}
    granted: tuple[str, ...] = ()
    for decision, now_granted, denied in receipts:
        for scope in denied:
            scopes[scope] = "timeout" if decision == "timeout" else "denied"
        for scope in set(granted) - set(now_granted):
            scopes[scope] = "withdrawn"
        for scope in now_granted:
            scopes[scope] = "granted"
        granted = tuple(now_granted)
    return tuple(scopes.items()), granted


def open_question(entries: Iterable[tuple[str, dict[str, Any]]]) -> OpenQuestion | None:
    """The scope question a session's audit entries (in order) leave open: the last ``consent.ask``
    that no scope receipt answered (as ``agent_side.consent_decision`` clears it) and no
    ``consent.timeout`` closed. Person questions (invite, transfer) are not carried over."""
    question: OpenQuestion | None = None
    for action, details in entries:
        if action == "consent.ask":
            question = OpenQuestion(
                request_id=str(details.get("request", "")),
                scopes=tuple(str(s) for s in details.get("scopes", ())),
                deadline=float(details.get("deadline", 0.0)),
            )
        elif question is None:
            continue
        elif action == "consent.timeout":
            question = None
        elif action == "consent.receipt" and "viewer" not in details:
            try:
                asked = set(parse_receipt(str(details.get("receipt", ""))).asked)
            except ProtocolError:
                asked = set()
            if details.get("decision") in ("answered", "timeout") or set(question.scopes) <= asked:
                question = None
    return question


class QueueSignals(Protocol):
    """What the host tells the other processes (``broker.cluster.ClusterNode``): the queue changed."""

    async def session_requested(self, session_id: str, contract_id: str) -> bool: ...
    async def consent_changed(self, session_id: str, granted: tuple[str, ...]) -> bool: ...


class ClusterReads:
    """Reads before events and signals after commands (see the module docstring)."""

    core: SessionCore
    storage: Storage
    clock: Callable[[], float]
    node: str
    codes: SupportCodes
    limits: SharedLimits
    links: SessionLinks | None
    signals: QueueSignals | None
    relayed: RelayMetrics

    def feed(self, event: Event) -> None:
        raise NotImplementedError

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        raise NotImplementedError

    async def flush(self) -> None:
        raise NotImplementedError

    async def _requested(self, agent: AgentPeer, msg: SupportRequest) -> Event:
        """A new support request: the contract, then the shared window and a code (docs/cluster.md §2)."""
        with self.relayed.storage("read"):
            subscriber = await self._subscriber(agent.contract_id)
        if self.signals is None:
            # One process (no cluster): the core counts and draws codes itself, as before; the
            # count of the last hour is read from the audit after the writer caught up.
            await self.flush()
            counted_at = self.clock()
            with self.relayed.storage("read"):
                recent = await self.storage.audit.count(
                    action="support.request", subject=agent.contract_id, since=counted_at - 3600
                )
            return SupportRequested(
                agent=agent, message=msg, subscriber=subscriber, recent_requests=recent, counted_at=counted_at
            )
        now = self.clock()
        if may_request(self.core, subscriber, now) is not None:  # refused before any count
            return SupportRequested(agent=agent, message=msg, subscriber=subscriber, recent_requests=0)
        # 第18条⑤ on the shared database: exact across processes (docs/cluster.md §2).
        rules = self.core.rules
        with self.relayed.storage("write"):
            wait = await self.limits.hit(
                f"request:{agent.contract_id}", limit=rules.max_requests_per_hour, window=3600.0, now=now
            )
        if wait is not None:
            shared = SharedRequest(limit_wait=wait)
        else:
            session_id = self.core.new_id()
            with self.relayed.storage("write"):
                code = await self.codes.issue(
                    session_id=session_id,
                    node=self.node,
                    contract_id=agent.contract_id,
                    now=now,
                    ttl=rules.code_ttl,
                )
            shared = SharedRequest(limit_wait=None, session_id=session_id, code=code)
        return SupportRequested(
            agent=agent, message=msg, subscriber=subscriber, recent_requests=0, shared=shared
        )

    async def _locate(self, op: OperatorPeer, session_id: str, msg: Message) -> Event | None:
        """A session this process has not heard of (an operator who reconnected here): the process
        holding its agent, from the session row and the agent's presence row."""
        links = self.links
        record = await self.storage.sessions.get(session_id)
        if links is None or record is None or record.ended_at is not None:
            return OperatorMessage(operator=op, message=msg)  # the core answers (not_found)
        # The agent may be reconnecting right now (its process stopped): its presence row and the
        # adoption follow within moments. Wait for them, bounded (a console would retry anyway).
        for _ in range(LOCATE_STEPS):
            if session_id in self.core.sessions:
                break  # adopted here
            node = await self.storage.presence.holder(record.serial)
            if node is not None and node != self.node:
                links.remote[session_id] = node
                await links.forward(op, node, session_id, msg)
                return None
            await asyncio.sleep(LOCATE_WAIT / LOCATE_STEPS)
        return OperatorMessage(operator=op, message=msg)

    async def _adopt(self, agent: AgentPeer, msg: SupportRequest) -> Event:
        """The session row, its receipts in order and the operator, read before the event."""
        session_id = msg.resume or ""
        with self.relayed.storage("read"):
            record = await self.storage.sessions.get(session_id)
        if record is None or record.ended_at is not None or record.serial != agent.serial:
            return AgentMessage(agent=agent, message=msg)  # the core answers not_found
        with self.relayed.storage("read"):
            receipts = await self.storage.sessions.receipts(session_id)
            account = await self.storage.operators.get(record.operator)
            entries = await self.storage.audit.entries(subject=session_id)
            subscriber = await self._subscriber(agent.contract_id)
        with self.relayed.storage("write"):
            moved = await self.storage.sessions.adopted(session_id, node=self.node)
        if not moved:
            return AgentMessage(agent=agent, message=msg)  # ended meanwhile (swept): not_found
        scopes, granted = scopes_after((r.decision, r.granted, r.denied) for r in receipts)
        return SessionAdopted(
            agent=agent,
            message=msg,
            contract_id=record.contract_id,
            operator=record.operator,
            operator_display=account.display_name if account is not None else record.operator,
            started_at=record.started_at,
            scopes=scopes,
            granted=granted,
            decided=bool(receipts),
            question=open_question((e.action, e.details) for e in entries),
            subscriber=subscriber,
        )

    async def _subscriber(self, contract_id: str) -> Subscriber | None:
        record = await self.storage.subscribers.get(contract_id)
        if record is None:
            return None
        return Subscriber(status=str(record.status.value), suspended_until=record.suspended_until)

    async def _resumed(self, agent: AgentPeer, msg: SupportRequest) -> Event:
        """A resume of a session this process holds, with the contract read first: a contract cut
        (suspended, terminated) while the agent was away ends the session instead (第18条)."""
        with self.relayed.storage("read"):
            subscriber = await self._subscriber(agent.contract_id)
        return SupportRequested(agent=agent, message=msg, subscriber=subscriber, recent_requests=0)

    @staticmethod
    async def _forwarded(sending: Awaitable[None]) -> None:
        await sending

    async def _claim_code(self, op: OperatorPeer, msg: Claim) -> Event | None:
        """The claim decided by the shared database: single use on every process, and the
        code-guess lockout and rate limits counted for all of them (``SupportCodes.claim``)."""
        if op.name is None or msg.code is None:
            return OperatorMessage(operator=op, message=msg)  # the core refuses it as before
        try:
            row = await self.codes.claim(msg.code, operator=op.name, address=op.address, now=self.clock())
        except BrokerError as exc:
            refusal = Error(code=exc.code.value, message=exc.message, retry_after=exc.retry_after)
            return CodeClaimed(operator=op, message=msg, session_id=None, refusal=refusal)
        links = self.links
        if links is not None and row.node != self.node and row.session_id not in self.core.sessions:
            # Claimed for this operator cluster-wide; the process holding the agent attaches them.
            links.remote[row.session_id] = row.node
            claim = Claim(id=msg.id, session_id=row.session_id, scopes=msg.scopes)
            await links.forward(op, row.node, row.session_id, claim)
            return None
        return CodeClaimed(operator=op, message=msg, session_id=row.session_id, node=row.node)

    async def session_signal(self, session_id: str, node: str) -> None:
        """A ``SessionRequested`` from ``node``: the queue changed, or ``node`` adopted a session, or
        ``node`` swept it (its process died and its agent did not come back: our operators are told
        it ended, from its row)."""
        links = self.links
        if links is not None:
            record = None
            if links.watched(session_id) and session_id not in self.core.sessions:
                record = await self.storage.sessions.get(session_id)
            if record is not None and record.ended_at is not None:
                links.ended(
                    SessionState(
                        session_id=session_id,
                        phase="ended",
                        contract_id=record.contract_id,
                        operator=record.operator,
                        ended_by=record.ended_by,
                        reason=record.reason or "",
                    )
                )
            else:
                links.moved(session_id, node)
        await self.refresh_queue()

    async def swept(self, done: Swept) -> None:
        """This process's sweep ended an orphaned session: our operators and the others' hear it."""
        signals = self.signals
        if signals is not None:
            await self._signal(signals.session_requested(done.session_id, done.contract_id))
        await self.session_signal(done.session_id, self.node)

    async def refresh_queue(self) -> None:
        """Read the waiting requests of every process from the database (after a ``SessionRequested``
        signal, or when the bus came back) and let the core push the queue to its operators."""
        rows = await self.codes.waiting(now=self.clock())
        if self.links is not None:
            self.links.waiting({row.session_id: row.node for row in rows if row.node != self.node})
        entries = tuple(
            QueueEntry(
                session_id=row.session_id,
                contract_id=row.contract_id,
                machine_name="",
                created_at=row.issued_at,
                expires_at=row.expires_at,
            )
            for row in rows
            if row.node != self.node
        )
        self.feed(ClusterQueue(entries=entries))

    def _queue_changed(self, command: Command) -> None:
        """Tell the other processes that this one's queue changed (they re-read it)."""
        signals = self.signals
        if signals is None:
            return
        if isinstance(command, Audit) and command.action == "session.adopted":
            # Its operator's process re-links to us (SessionLinks.moved): the sender is the holder.
            session_id = command.subject
            contract_id = str(command.details.get("contract", ""))
        elif isinstance(command, Audit) and command.action == "support.request":
            session_id = str(command.details.get("session", ""))
            contract_id = command.subject
        elif isinstance(command, PersistSessionStart | VoidCode):
            session_id, contract_id = command.session_id, command.contract_id
        elif isinstance(command, PersistReceipt) and command.viewer is None:
            # 第31条1項④: the receipt is on its way to the database; the other processes hear now.
            self._spawn(self._signal(signals.consent_changed(command.session_id, command.granted)))
            return
        else:
            return
        self._spawn(self._signal(signals.session_requested(session_id, contract_id)))

    @staticmethod
    async def _signal(sending: Awaitable[bool]) -> None:
        try:
            await sending
        except Exception:  # a signal is a hint; the database is the state of record
            log.exception("could not send a session signal")
