"""The host of the session core: reads facts before events, runs the core's commands, arms one timer.

:class:`SessionHost` owns a :class:`broker.core.SessionCore`, the peers (``broker.peers.SenderPeer``,
reached through the connection records' ``peer``), the one ``loop.call_at`` timer for
``core.next_timer()``, and the asynchronous storage (:mod:`broker.storage`). Nothing here touches
the store on the event loop synchronously:

* facts an event needs (the subscriber's status and recent requests, the agent's certificate for a
  consent receipt, a colleague's account) are read in a task, and the ECDSA check of a receipt runs
  in a thread; while such a read is under way, later messages of the same connection wait behind it
  (per-connection order is kept: a consent decision is applied before the screen it allowed);
* every write (audit entries, session rows, receipts, inventory) goes through ONE ordered writer
  task, so the audit chain keeps the order of the events;
* reads someone waits for (the router login reveal, a supervisor's audit page, verify) are tasks.

Observers: :attr:`SessionHost.observers` is the one place to watch the command stream. Each
observer is called with every command, in order, before it runs (recording and file transfer
subscribe here). An observer must not block and must not raise; an exception is logged and ignored.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from protocol.errors import ErrorCode
from protocol.messages import (
    Claim,
    ConsentDecision,
    Error,
    Invite,
    Message,
    Queue,
    SupportRequest,
    Transfer,
)
from wire.tasks import STOP_TIMEOUT, stop_task

from .core import (
    AgentDisconnected,
    AgentError,
    AgentFrame,
    AgentMessage,
    AgentPeer,
    Audit,
    BrowseAudit,
    Command,
    ConsentDecided,
    Event,
    ForwardFrame,
    FrameDelivered,
    InventoryStored,
    OperatorAttached,
    OperatorDetached,
    OperatorMessage,
    OperatorPeer,
    PersistReceipt,
    PersistSessionEnd,
    PersistSessionStart,
    PersonAsked,
    ReadCredentials,
    RequestKeyframe,
    SaveInventory,
    SendToAgent,
    SendToOperator,
    Session,
    SessionCore,
    Shutdown,
    VoidCode,
)
from .datakeys import DataKeyring
from .errors import BrokerError
from .host_metrics import RelayMetrics
from .metrics import BrokerMetrics
from .receipts import verify_receipt
from .relay import ScreenPush
from .session_cluster import ClusterReads, QueueSignals
from .session_links import SessionLinks
from .session_records import SessionRecords, VerifyAudit
from .storage import Storage
from .storage.guards import CodeRules, SharedLimits, SupportCodes

log = logging.getLogger("broker.sessions")

__all__ = ["MAX_BACKLOG", "Observer", "SessionHost"]

MAX_BACKLOG = 256
"""Messages of one connection held while a read for an earlier one is under way; screen updates
beyond it are dropped (the agent sends a keyframe when asked), control messages are kept."""

Observer = Callable[[Command], None]
Lookup = Callable[[], Awaitable[Event | None]]
_Item = Event | Lookup
_WRITES = (Audit, PersistSessionStart, PersistSessionEnd, PersistReceipt, SaveInventory, VoidCode)
"""Commands the ordered writer runs, one after another."""


T = TypeVar("T")


class SessionHost(ClusterReads):
    """Runs a :class:`SessionCore` for the broker (see the module docstring)."""

    def __init__(
        self,
        core: SessionCore,
        storage: Storage,
        *,
        keyring: DataKeyring,
        clock: Callable[[], float],
        verify_audit: VerifyAudit | None = None,
        node: str = "node-1",
        code_rules: CodeRules | None = None,
        metrics: BrokerMetrics | None = None,
    ) -> None:
        self.core = core
        self.relayed = RelayMetrics(metrics)
        """Relay bytes and drops, storage latency (broker/host_metrics.py)."""
        self.node = node
        """This process's name in the support-code rows (which process holds the request)."""
        self.codes = SupportCodes(storage.db, rules=code_rules)
        """Support codes, claims and code-guess lockouts on the shared database (docs/cluster.md §2)."""
        self.limits = SharedLimits(storage.db)
        """The 第18条⑤ window per contract, shared by every process."""
        self.links: SessionLinks | None = None
        """Set by the server with a link listener: operators' traffic to sessions held elsewhere."""
        self.signals: QueueSignals | None = None
        """Set by the server when it runs in a cluster: the queue changed (``SessionRequested``)."""
        self.storage = storage
        self.keyring = keyring
        self.clock = clock
        self.verify_audit = verify_audit
        """What the console's "verify" runs (the server adds the signed checkpoints)."""
        self.observers: list[Observer] = []
        """Called with every command, in order, before it runs (see the module docstring)."""
        self._writes: asyncio.Queue[Command | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._backlogs: dict[object, deque[_Item]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._certificates: dict[str, str] = {}
        self.records = SessionRecords(storage, keyring=keyring, verify_audit=verify_audit, node=node)
        """The storage side: writes of the ordered writer, reads of tasks (broker/session_records.py)."""

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def close(self, *, handoff: bool = False, timeout: float = STOP_TIMEOUT) -> None:
        """End every session (their summaries are written), then let the writer finish, for at most
        ``timeout`` seconds (a database that does not answer). ``handoff`` (a cluster): claimed
        sessions stay open for another process to adopt (:class:`Shutdown`)."""
        self.feed(Shutdown(handoff=handoff))
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._writer is not None:
            self._writes.put_nowait(None)  # the queue is unbounded
            await stop_task(self._writer, grace=timeout, what="session record writer")
            if self._writer.cancelled():
                log.error(
                    "stopping without every session record: the database did not answer in %g s", timeout
                )
            self._writer = None

    async def flush(self) -> None:
        """Wait until every write queued so far is done (tests, shutdown)."""
        await self._writes.join()

    # -- what the server calls --------------------------------------------------------------------

    @property
    def sessions(self) -> dict[str, Session]:
        return self.core.sessions

    def queue(self, request_id: str | None = None) -> Queue:
        return self.core.queue(request_id)

    def support_request(self, agent: AgentPeer, msg: SupportRequest) -> None:
        if msg.resume is not None:
            if msg.resume in self.core.sessions or self.signals is None:
                # One process (no cluster): a session it does not hold is gone (not_found, issue 12).
                # The contract is read first: one suspended meanwhile does not resume (第18条).
                self._from(agent, lambda: self._resumed(agent, msg))
            else:  # held by a process of the cluster that died or stopped: the database has it
                self._from(agent, lambda: self._adopt(agent, msg))
            return

        self._from(agent, lambda: self._requested(agent, msg))

    def agent_message(self, agent: AgentPeer, msg: Message) -> None:
        if isinstance(msg, SupportRequest):
            self.support_request(agent, msg)
        elif isinstance(msg, ConsentDecision):
            self._from(agent, lambda: self._verify(agent, msg))
        elif isinstance(msg, Error):
            self._from(agent, AgentError(agent=agent, message=msg))
        else:
            self._from(agent, AgentMessage(agent=agent, message=msg))

    def agent_binary(self, agent: AgentPeer, data: bytes) -> None:
        self._from(agent, AgentFrame(agent=agent, data=data))

    def agent_disconnected(self, agent: AgentPeer) -> None:
        self._from(agent, AgentDisconnected(agent=agent))

    def operator_attached(self, op: OperatorPeer) -> None:
        self._from(op, OperatorAttached(operator=op))

    def operator_detached(self, op: OperatorPeer) -> None:
        """At once, not behind a read of that connection: the server clears the login right after
        (broker/operator_links.py), and no frame may be routed to it any more."""
        if self.links is not None:
            self.links.detached(op)
        self.feed(OperatorDetached(operator=op))

    def operator_message(self, op: OperatorPeer, msg: Message) -> None:
        links = self.links
        if links is not None:
            wanted = getattr(msg, "session_id", None)
            if isinstance(wanted, str) and wanted not in self.core.sessions and wanted not in links.remote:
                self._from(op, lambda: self._locate(op, wanted, msg))
                return
            node = links.holder(wanted)
            if node is not None:  # the agent is on another process: it owns the session
                session_id = str(getattr(msg, "session_id", ""))
                self._from(op, lambda: self._forwarded(links.forward(op, node, session_id, msg)))
                return
        if isinstance(msg, Invite | Transfer):
            colleague = msg.colleague

            async def look_up() -> Event:
                with self.relayed.storage("read"):
                    record = await self.storage.operators.get(colleague)
                display = record.display_name if record is not None else ""
                return PersonAsked(operator=op, message=msg, known=record is not None, display_name=display)

            self._from(op, look_up)
        elif isinstance(msg, Claim) and msg.code is not None and self.signals is not None:
            # A cluster: the database decides (single use on every process, shared lockouts). One
            # process keeps its in-memory guard: a claim never waits for a locked SQLite file (issue 12).
            self._from(op, lambda: self._claim_code(op, msg))
        else:
            self._from(op, OperatorMessage(operator=op, message=msg))

    # -- feeding the core -------------------------------------------------------------------------

    def feed(self, event: Event) -> None:
        """One event into the core now; its commands run at once."""
        session = event.agent.session if isinstance(event, AgentFrame) else None
        refused = session.refused_updates if session is not None else 0
        self.run(self.core.handle(event, self.clock()))
        if session is not None and session.refused_updates != refused:
            self.relayed.no_consent.inc()  # refused by its session: not active, screen:view not granted
        self._arm()

    def _from(self, source: object, item: _Item) -> None:
        """An event (or a read that makes one) from one connection, in that connection's order."""
        backlog = self._backlogs.get(source)
        if backlog is None:
            if not callable(item):
                self.feed(item)
                return
            backlog = self._backlogs[source] = deque()
            backlog.append(item)
            self._spawn(self._drain(source, backlog))
            return
        if len(backlog) >= MAX_BACKLOG and isinstance(item, AgentFrame):
            self.relayed.queue_full.inc()
            return  # a screen update behind a slow read: dropped (a keyframe follows on request)
        backlog.append(item)

    async def _drain(self, source: object, backlog: deque[_Item]) -> None:
        try:
            while backlog:
                item = backlog.popleft()
                event = await item() if callable(item) else item
                if event is not None:
                    self.feed(event)
        except Exception:
            log.exception("a read for the session core failed")
        finally:
            self._backlogs.pop(source, None)

    async def _verify(self, agent: AgentPeer, msg: ConsentDecision) -> Event:
        """The receipt checked against the agent's certificate (ECDSA in a thread, DESIGN §4)."""
        pem = self._certificates.get(agent.serial)
        if pem is None:
            with self.relayed.storage("read"):
                record = await self.storage.certificates.get(agent.serial)
            if record is None:
                refusal = Error(code=ErrorCode.CERT_UNKNOWN.value, message="unknown certificate")
                return ConsentDecided(agent=agent, message=msg, receipt=None, refusal=refusal)
            pem = self._certificates[agent.serial] = record.cert_pem
        try:
            receipt = await asyncio.to_thread(verify_receipt, msg.receipt, msg.signature, pem)
        except BrokerError as exc:
            refusal = Error(code=exc.code.value, message=exc.message)
            return ConsentDecided(agent=agent, message=msg, receipt=None, refusal=refusal)
        return ConsentDecided(agent=agent, message=msg, receipt=receipt)

    # -- running commands -------------------------------------------------------------------------

    def run(self, commands: list[Command]) -> None:
        for command in commands:
            for observer in self.observers:
                try:
                    observer(command)
                except Exception:
                    log.exception("a session observer failed")
            if isinstance(command, SendToAgent | RequestKeyframe):
                command.agent.peer.send(command.message)
                if isinstance(command.message, Error):
                    self.relayed.metrics.count_refusal(command.message.code)
            elif isinstance(command, SendToOperator):
                command.operator.peer.send(command.message)
                if isinstance(command.message, Error):
                    self.relayed.metrics.count_refusal(command.message.code)
            elif isinstance(command, ForwardFrame):
                self._forward(command)
            elif isinstance(command, _WRITES):
                self._writes.put_nowait(command)
                self._queue_changed(command)
            elif isinstance(command, ReadCredentials):
                self._spawn(self._read_credentials(command))
            elif isinstance(command, BrowseAudit):
                self._spawn(self._browse(command))

    def _forward(self, command: ForwardFrame) -> None:
        delivered, behind = 0, False
        for viewer in command.viewers:
            result = viewer.peer.send_screen(command.data, keyframe=command.keyframe)
            if result is not ScreenPush.DROPPED:
                delivered += len(command.data)
            behind = behind or result is ScreenPush.BEHIND
            if result is not ScreenPush.QUEUED:
                self.relayed.screen(result)
        if delivered:
            self.relayed.to_operator.inc(delivered)
        self.feed(FrameDelivered(session_id=command.session_id, delivered_bytes=delivered, behind=behind))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the one timer ----------------------------------------------------------------------------

    def _arm(self) -> None:
        when = self.core.next_timer()
        if when == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(loop.time() + max(0.0, when - self.clock()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self.run(self.core.handle_timer(self.clock()))
        except Exception:  # a bug in one session must not stop the timers of all others
            log.exception("session timer failed")
        self._arm()

    # -- the ordered writer -----------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            command = await self._writes.get()
            try:
                if command is None:
                    return
                if isinstance(command, VoidCode):
                    with self.relayed.storage("write"):
                        await self.codes.void_session(command.session_id, now=command.at)
                    continue
                with self.relayed.storage("write"):
                    inventory_id = await self.records.write(command)
                if isinstance(command, SaveInventory) and inventory_id is not None:
                    self.feed(InventoryStored(session_id=command.session_id, inventory_id=inventory_id))
            except Exception:
                log.exception("a session record could not be written")
            finally:
                self._writes.task_done()

    # -- reads someone waits for ------------------------------------------------------------------

    async def _read_credentials(self, command: ReadCredentials) -> None:
        await self.flush()  # the inventory of this session may still be on its way to the store
        inventory_id = command.inventory_id
        if inventory_id is None:
            session = self.core.sessions.get(command.session_id)
            inventory_id = session.inventory_id if session is not None else None
        with self.relayed.storage("read"):
            read = await self.records.read_credentials(command, inventory_id)
        self.feed(read)

    async def _browse(self, command: BrowseAudit) -> None:
        await self.flush()
        with self.relayed.storage("read"):
            page = await self.records.browse(command)
        command.operator.peer.send(page)
