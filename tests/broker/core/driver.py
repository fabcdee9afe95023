"""Drive a :class:`broker.core.SessionCore` in memory with a fake clock, the way the host does.

:class:`CoreDriver` is the host without sockets, store or event loop: it feeds events, runs every
command at once (sends land in :class:`Recorder` peers, frames are forwarded to the viewers'
recorders, writes become :class:`AuditRecord` rows, inventories a dict), answers the core's reads
(receipt check with the real certificate and signature, inventory, credentials, audit page) and fires
the core's timer whenever the clock is moved past it. Nothing sleeps.

It keeps the old ``SessionManager`` call names (``support_request``, ``agent_message``,
``agent_binary``, ``agent_disconnected``, ``operator_attached``, ``operator_detached``,
``operator_message``, ``tick``), each with an optional ``now``; and the pieces an
``AgentBrokerPair`` needs: :meth:`CoreDriver.feed` (any event), :meth:`CoreDriver.advance` (move the
clock, run due timers), :attr:`CoreDriver.commands` (everything the core asked for, in order) and
:attr:`CoreDriver.observers` (called with each command, like the host's hook). To join an agent core,
give the :class:`broker.core.AgentPeer` a peer whose ``send`` hands the message to the agent side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from broker.core import (
    AgentDisconnected,
    AgentError,
    AgentFrame,
    AgentMessage,
    AgentPeer,
    Audit,
    BrowseAudit,
    Command,
    ConsentDecided,
    CredentialsRead,
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
    Subscriber,
    SupportRequested,
)
from broker.errors import BrokerError
from broker.receipts import verify_receipt
from broker.relay import ScreenPush
from protocol.messages import (
    AuditEntries,
    AuditQuery,
    AuditRow,
    ConsentDecision,
    Error,
    InventoryReport,
    Invite,
    Message,
    SupportRequest,
    Transfer,
)

__all__ = ["AuditRecord", "CoreDriver", "Recorder"]


@dataclass(eq=False)
class Recorder:
    """A connection's peer: records what the broker would send."""

    messages: list[Message] = field(default_factory=list)
    screens: list[bytes] = field(default_factory=list)
    push: ScreenPush = ScreenPush.QUEUED
    """What ``send_screen`` answers (BEHIND or DROPPED to play a slow viewer)."""

    def send(self, message: Message) -> None:
        self.messages.append(message)

    def send_screen(self, frame: bytes, *, keyframe: bool) -> ScreenPush:
        self.screens.append(frame)
        return self.push

    def last(self, kind: type[Message]) -> Message:
        return next(m for m in reversed(self.messages) if isinstance(m, kind))


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    at: float
    actor: str
    action: str
    subject: str
    details: dict[str, Any]


@dataclass
class _Account:
    name: str
    display_name: str


class CoreDriver:
    def __init__(self, core: SessionCore, *, now: float = 0.0) -> None:
        self.core = core
        self.now = now
        self.commands: list[Command] = []
        self.observers: list[Callable[[Command], None]] = []
        self.audit: list[AuditRecord] = []
        self.subscribers: dict[str, Subscriber] = {}
        """Contracts as the store would have them (missing: no such contract)."""
        self.certificates: dict[str, str] = {}
        """Serial → certificate PEM, for consent receipts."""
        self.accounts: dict[str, _Account] = {}
        self.inventories: dict[int, tuple[str, InventoryReport]] = {}
        self.on_record: list[Callable[[AuditRecord], None]] = []
        """Called with every audit row the driver writes (e.g. to copy it into a real store)."""
        self.rows: dict[str, dict[str, Any]] = {}
        """Session rows (PersistSessionStart / PersistSessionEnd)."""

    # -- the clock and events ---------------------------------------------------------------------

    def advance(self, to: float | None = None) -> None:
        """Move the clock to ``to`` (never back), running every timer that falls due on the way."""
        target = self.now if to is None else max(to, self.now)
        while (when := self.core.next_timer()) is not None and when <= target:
            self.now = max(self.now, when)
            self.run(self.core.handle_timer(self.now))
        self.now = target

    tick = advance

    def feed(self, event: Event, now: float | None = None) -> list[Command]:
        self.advance(now)
        commands = self.core.handle(event, self.now)
        self.run(commands)
        return commands

    # -- the old manager's call names -------------------------------------------------------------

    @property
    def sessions(self) -> dict[str, Session]:
        return self.core.sessions

    def new_id(self) -> str:
        return self.core.new_id()

    def support_request(self, agent: AgentPeer, msg: SupportRequest, now: float | None = None) -> None:
        if msg.resume is not None:  # as the host: the contract read with it (第18条)
            subscriber = self.subscribers.get(agent.contract_id)
            self.feed(
                SupportRequested(agent=agent, message=msg, subscriber=subscriber, recent_requests=0), now
            )
            return
        self.advance(now)
        recent = sum(
            1
            for e in self.audit
            if e.action == "support.request" and e.subject == agent.contract_id and e.at >= self.now - 3600
        )
        self.feed(
            SupportRequested(
                agent=agent,
                message=msg,
                subscriber=self.subscribers.get(agent.contract_id),
                recent_requests=recent,
            )
        )

    def agent_message(self, agent: AgentPeer, msg: Message, now: float | None = None) -> None:
        if isinstance(msg, SupportRequest):
            self.support_request(agent, msg, now)
        elif isinstance(msg, ConsentDecision):
            self.feed(self._verified(agent, msg), now)
        elif isinstance(msg, Error):
            self.feed(AgentError(agent=agent, message=msg), now)
        else:
            self.feed(AgentMessage(agent=agent, message=msg), now)

    def agent_binary(self, agent: AgentPeer, data: bytes, now: float | None = None) -> None:
        self.feed(AgentFrame(agent=agent, data=data), now)

    def agent_disconnected(self, agent: AgentPeer, now: float | None = None) -> None:
        self.feed(AgentDisconnected(agent=agent), now)

    def operator_attached(self, op: OperatorPeer, now: float | None = None) -> None:
        self.feed(OperatorAttached(operator=op), now)

    def operator_detached(self, op: OperatorPeer, now: float | None = None) -> None:
        self.feed(OperatorDetached(operator=op), now)

    def operator_message(self, op: OperatorPeer, msg: Message, now: float | None = None) -> None:
        if isinstance(msg, Invite | Transfer):
            account = self.accounts.get(msg.colleague)
            display = account.display_name if account is not None else ""
            self.feed(
                PersonAsked(operator=op, message=msg, known=account is not None, display_name=display), now
            )
        else:
            self.feed(OperatorMessage(operator=op, message=msg), now)

    # -- a store's worth of answers ---------------------------------------------------------------

    def add_operator(self, name: str, *, display_name: str = "", **_: object) -> None:
        self.accounts[name] = _Account(name, display_name)

    def audit_entries(self, *, subject: str | None = None) -> list[AuditRecord]:
        return [e for e in self.audit if subject is None or e.subject == subject]

    def latest_inventory(self, contract_id: str) -> InventoryReport | None:
        found = [report for contract, report in self.inventories.values() if contract == contract_id]
        return found[-1] if found else None

    def _verified(self, agent: AgentPeer, msg: ConsentDecision) -> ConsentDecided:
        pem = self.certificates.get(agent.serial)
        if pem is None:
            return ConsentDecided(
                agent=agent, message=msg, receipt=None, refusal=Error(code="cert_unknown", message="unknown")
            )
        try:
            receipt = verify_receipt(msg.receipt, msg.signature, pem)
        except BrokerError as exc:
            return ConsentDecided(
                agent=agent,
                message=msg,
                receipt=None,
                refusal=Error(code=exc.code.value, message=exc.message),
            )
        return ConsentDecided(agent=agent, message=msg, receipt=receipt)

    def _append(self, action: str, subject: str, actor: str, details: dict[str, Any], at: float) -> None:
        record = AuditRecord(len(self.audit) + 1, at, actor, action, subject, details)
        self.audit.append(record)
        for hook in self.on_record:
            hook(record)

    # -- running commands, as the host does -------------------------------------------------------

    def run(self, commands: list[Command]) -> None:
        for command in commands:
            self.commands.append(command)
            for observer in self.observers:
                observer(command)
            self._run(command)

    def _run(self, command: Command) -> None:
        if isinstance(command, SendToAgent | RequestKeyframe):
            command.agent.peer.send(command.message)
        elif isinstance(command, SendToOperator):
            command.operator.peer.send(command.message)
        elif isinstance(command, ForwardFrame):
            delivered, behind = 0, False
            for viewer in command.viewers:
                result = viewer.peer.send_screen(command.data, keyframe=command.keyframe)
                delivered += 0 if result is ScreenPush.DROPPED else len(command.data)
                behind = behind or result is ScreenPush.BEHIND
            event = FrameDelivered(session_id=command.session_id, delivered_bytes=delivered, behind=behind)
            self.run(self.core.handle(event, self.now))
        elif isinstance(command, Audit):
            self._append(command.action, command.subject, command.actor, command.details, command.at)
        elif isinstance(command, PersistSessionStart):
            self.rows[command.session_id] = {"operator": command.operator, "started_at": command.at}
        elif isinstance(command, PersistSessionEnd):
            if command.claimed:
                self.rows[command.session_id].update(
                    ended_at=command.at,
                    bytes_to_agent=command.bytes_to_agent,
                    bytes_to_operator=command.bytes_to_operator,
                )
            self._append("session.end", command.session_id, "broker", command.details, command.at)
        elif isinstance(command, PersistReceipt):
            person = {} if command.viewer is None else {"viewer": command.viewer}
            details: dict[str, Any] = {
                "contract": command.contract_id,
                "serial": command.serial,
                "decision": command.decision,
                **person,
                "granted": list(command.granted),
                "denied": list(command.denied),
                "receipt": command.receipt,
                "signature": command.signature,
            }
            self._append(
                "consent.receipt", command.session_id, f"agent:{command.serial}", details, command.at
            )
        elif isinstance(command, SaveInventory):
            inventory_id = len(self.inventories) + 1
            self.inventories[inventory_id] = (command.contract_id, command.report)
            self._append("inventory.received", command.session_id, f"agent:{command.serial}", {}, command.at)
            stored = InventoryStored(session_id=command.session_id, inventory_id=inventory_id)
            self.run(self.core.handle(stored, self.now))
        elif isinstance(command, ReadCredentials):
            found = self.inventories.get(command.inventory_id) if command.inventory_id is not None else None
            report = found[1] if found is not None else None
            account = report.router_account if report is not None else None
            password = report.router_password if report is not None else None
            read = CredentialsRead(
                operator=command.operator,
                request_id=command.request_id,
                session_id=command.session_id,
                account=account,
                password=password,
            )
            self.run(self.core.handle(read, self.now))
        elif isinstance(command, BrowseAudit) and isinstance(command.message, AuditQuery):
            msg = command.message
            rows = tuple(
                AuditRow(
                    seq=e.seq, at=e.at, actor=e.actor, action=e.action, subject=e.subject, details=e.details
                )
                for e in reversed(self.audit_entries(subject=msg.subject))
            )[: msg.limit]
            command.operator.peer.send(AuditEntries(id=msg.id, entries=rows))
