"""``AgentBrokerPair``: the agent's core and the broker's session core joined in memory, one fake clock.

Like h11's ``ConnectionPair`` (STYLE.md), but for our two session cores: nothing is mocked in
between. Every control message the agent core ``Send``\\ s is encoded with :func:`protocol.encode`
and decoded with :func:`protocol.decode` before the broker core sees it, and every ``SendToAgent``
/ ``RequestKeyframe`` of the broker goes back the same way, so the wire format is exercised both
ways. Screen frames are bytes (:mod:`protocol.screen`) that reach the operators through the broker's
``ForwardFrame``. Receipts are signed with a real key whose certificate a real CA issued, and the
broker side checks them (:class:`tests.broker.core.driver.CoreDriver`, the host without sockets).

One clock: :attr:`AgentBrokerPair.now`. :meth:`AgentBrokerPair.advance` fires both cores' timers in
time order (the earlier first; at a tie the broker first), delivering what each one sends before
the next timer. No sockets, no threads, no sleeping.

Operators are :class:`OperatorEndpoint`\\ s: a logged-in connection that is just a queue of what the
broker sent it (decoded from the wire) and the screen frames it received.

The subscriber's side: :meth:`AgentBrokerPair.answer` (the consent window), :meth:`answer_person`,
:meth:`withdraw`, :meth:`grant`, :meth:`chat`, :meth:`end`, :meth:`collected` (the inventory
collectors' result); :meth:`frame` is the capture loop's next frame, sent only while the agent's
own record lets frames flow (as the adapter does); :meth:`force_frame` and :meth:`force_to_agent`
play a hostile agent and a lying broker. See docs/testing.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from cryptography.hazmat.primitives import serialization

from agent.core import AgentCore, CoreConfig, Resume, actions, inputs
from agent.receipts import sign_receipt
from broker.core import AgentDisconnected, AgentFrame, AgentPeer, OperatorPeer, SessionCore, SessionRules
from broker.core import Subscriber as ContractStatus
from broker.policy import CodeAttemptGuard, parse_hours
from broker.relay import ScreenPush
from certs import CertificateAuthority, build_csr, generate_private_key, serial_hex
from protocol import decode, encode
from protocol.messages import (
    Claim,
    Claimed,
    ConsentDecision,
    Error,
    InventoryItem,
    Message,
    SessionState,
    SupportCodeIssued,
)
from protocol.receipts import ConsentReceipt, parse_receipt
from protocol.screen import Encoding, Rect, ScreenUpdate, encode_update
from tests.broker.core.driver import AuditRecord, CoreDriver

__all__ = ["CONTRACT", "T0", "AgentBrokerPair", "OperatorEndpoint", "claimed", "cores_agree"]

T0 = 1_800_000_000.0
CONTRACT = "C-1"
M = TypeVar("M", bound=Message)
A = TypeVar("A")
_MAX_STEPS = 10_000
"""Bound on deliveries and timer firings per call: two cores answering each other forever is a bug."""


def _wire(message: Message) -> tuple[Message, int]:
    """The message as the other side decodes it, and its size on the wire."""
    data = encode(message)
    return decode(data), len(data)


@dataclass(eq=False)
class _WirePeer:
    """A broker-side connection handle: what the broker sends goes through the codec into ``inbox``."""

    inbox: list[Message] = field(default_factory=list)
    screens: list[bytes] = field(default_factory=list)
    wire_bytes: int = 0
    push: ScreenPush = ScreenPush.QUEUED

    def send(self, message: Message) -> None:
        decoded, size = _wire(message)
        self.wire_bytes += size
        self.inbox.append(decoded)

    def send_screen(self, frame: bytes, *, keyframe: bool) -> ScreenPush:
        self.screens.append(bytes(frame))
        return self.push


class OperatorEndpoint:
    """One logged-in operator connection: sends through the codec, receives into a queue."""

    def __init__(self, pair: AgentBrokerPair, peer: OperatorPeer) -> None:
        self.pair = pair
        self.peer = peer
        self._conn: _WirePeer = peer.peer  # type: ignore[assignment]

    @property
    def name(self) -> str:
        return self.peer.name or ""

    @property
    def inbox(self) -> list[Message]:
        return self._conn.inbox

    @property
    def screens(self) -> list[bytes]:
        """Screen frames the broker forwarded to this connection, as bytes."""
        return self._conn.screens

    def send(self, message: Message) -> list[Message]:
        """One message to the broker (through the codec); what this connection received in answer."""
        before = len(self.inbox)
        decoded, _ = _wire(message)
        self.pair.broker.operator_message(self.peer, decoded, self.pair.now)
        self.pair.pump()
        return self.inbox[before:]

    def last(self, kind: type[M]) -> M:
        return next(m for m in reversed(self.inbox) if isinstance(m, kind))

    def of(self, kind: type[M]) -> list[M]:
        return [m for m in self.inbox if isinstance(m, kind)]

    def state(self) -> SessionState:
        return self.last(SessionState)

    def detach(self) -> None:
        self.pair.broker.operator_detached(self.peer, self.pair.now)
        self.pair.pump()


class AgentBrokerPair:
    """One subscriber's agent core and the broker's session core, joined in memory (module doc)."""

    def __init__(
        self,
        *,
        rules: SessionRules | None = None,
        grace: float = 0.0,
        lang: str = "en",
        capture: int | None = 1,
        now: float = T0,
    ) -> None:
        self.now = now
        when = datetime.fromtimestamp(now, UTC)
        ca = CertificateAuthority.create(common_name="Pair CA", now=when)
        self.key = generate_private_key()
        cert = ca.sign_client_csr(
            build_csr(self.key, common_name=CONTRACT), expected_common_name=CONTRACT, now=when
        )
        self.serial = serial_hex(cert)
        self._rules = rules
        self._cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        self.broker = self._new_broker()
        self._config = CoreConfig(
            serial=self.serial, sign=lambda r: sign_receipt(r, self.key), lang=lang, grace=grace
        )
        self.agent = AgentCore(self._config)
        self._process_start = 0
        """Index in :attr:`actions` where the current agent process began (see :meth:`reboot`)."""
        self._answered: set[str] = set()
        self.actions: list[actions.Action] = []
        """Everything the agent core asked its adapter to do, in order."""
        self.finished: int | None = None
        """The agent's exit code once it finished."""
        self.link: AgentPeer | None = None
        self._link_wire: _WirePeer | None = None
        self._to_broker: list[Message] = []
        self._received: list[Message] = []
        self._wires: list[_WirePeer] = []
        self._seq = 0
        self._capture = capture
        self.expect_refusals = False
        """Set by a test that plays a hostile or lying party: refusals and ignored messages expected."""
        self.frozen = False
        """The agent's process hangs (:meth:`freeze`): no timers, nothing read or sent."""

    # -- the clock ------------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move the one clock forward, firing both cores' timers in time order."""
        end = self.now + seconds
        for _ in range(_MAX_STEPS):
            due_broker = self.broker.core.next_timer()
            due_agent = None if self.finished is not None or self.frozen else self.agent.next_timer()
            due = min((t for t in (due_broker, due_agent) if t is not None), default=None)
            if due is None or due > end:
                break
            self.now = max(self.now, due)
            if due_broker is not None and due_broker <= self.now:
                self.broker.advance(self.now)
            elif due_agent is not None:
                self._agent_did(self.agent.handle_timer(self.now))
            self.pump()
        else:
            raise AssertionError("timers kept firing: the cores are in a loop")
        self.now = end
        self.broker.advance(end)

    # -- the connection -------------------------------------------------------------------------

    def connect(self) -> None:
        """The agent's connection is up (a new one each time): its support request or resume."""
        wire = _WirePeer()
        self._link_wire = wire
        self._wires.append(wire)
        self.link = AgentPeer(peer=wire, serial=self.serial, contract_id=CONTRACT, machine_name="pc-1")
        self.do(inputs.Connected())
        if self._capture is not None and self.agent.capture is None:
            self.do(inputs.CaptureReady(monitor=self._capture))

    def drop(self) -> None:
        """The connection breaks: whatever was in flight is lost, both cores learn it."""
        self._to_broker.clear()
        if self._link_wire is not None:
            self._link_wire.inbox.clear()
        if self.link is not None:
            link, self.link = self.link, None
            self.broker.agent_disconnected(link, self.now)
        if self.finished is None:
            self._agent_did(self.agent.handle(inputs.Disconnected(), self.now))
        self.pump()

    def request(self) -> str:
        """Connect and ask for support: the code the subscriber reads out on the phone."""
        self.connect()
        return self.code()

    def code(self) -> str:
        """The last support code the agent received."""
        issued = [m for m in self._received if isinstance(m, SupportCodeIssued)]
        return issued[-1].code

    @property
    def session_id(self) -> str:
        assert self.agent.session_id is not None
        return self.agent.session_id

    def reboot(self, *, confirmed: bool = True) -> None:
        """The PC restarts after the agent's ``Reboot``: the connection drops, and a new agent
        process resumes the saved session (``SaveResume``) once the subscriber answered "続けますか？"
        (``confirmed``), then connects."""
        [save] = self.of(actions.SaveResume)[-1:]
        self.drop()
        self.agent = AgentCore(self._config)
        self.finished = None
        self._process_start = len(self.actions)
        self._answered.clear()
        resume = Resume(session_id=save.session_id, operator=save.operator, confirmed=confirmed)
        self._agent_did(self.agent.resume(resume))
        self.connect()

    def _new_broker(self) -> CoreDriver:
        broker = CoreDriver(
            SessionCore(hours=parse_hours("00:00-00:00"), code_guard=CodeAttemptGuard(), rules=self._rules),
            now=self.now,
        )
        broker.subscribers[CONTRACT] = ContractStatus(status="active")
        broker.certificates[self.serial] = self._cert_pem
        return broker

    def restart_broker(self) -> None:
        """The broker process restarts: a fresh session core (sessions lived in its memory), the
        same contracts and certificates; operators must log in again (:meth:`operator`)."""
        self.broker = self._new_broker()

    def freeze(self) -> None:
        """The agent's process hangs with its connection open: messages wait, its timers do not fire."""
        self.frozen = True

    def thaw(self) -> None:
        """The agent runs again: its overdue timers fire, then it reads what waited."""
        self.expect_refusals = False
        """Set by a test that plays a hostile or lying party: refusals and ignored messages expected."""
        self.frozen = False
        self.advance(0)
        self.pump()

    # -- operators ------------------------------------------------------------------------------

    def operator(
        self, name: str = "op", *, display_name: str = "Op", role: str = "operator"
    ) -> OperatorEndpoint:
        """A logged-in operator connection (an account of that name exists for invitations)."""
        self.broker.add_operator(name, display_name=display_name)
        peer = OperatorPeer(
            peer=_WirePeer(), address="127.0.0.1", name=name, display_name=display_name, role=role
        )
        self.broker.operator_attached(peer, self.now)
        self.pump()
        return OperatorEndpoint(self, peer)

    # -- the subscriber -------------------------------------------------------------------------

    def do(self, event: inputs.Input) -> list[actions.Action]:
        """One input of the agent's adapter (an answer, ``/withdraw``, a chat line…) at ``now``."""
        before = len(self.actions)
        self._agent_did(self.agent.handle(event, self.now))
        self.pump()
        return self.actions[before:]

    def question(self, person: bool = False) -> str:
        """The id of the last consent question put to the subscriber that is still open (to answer it)."""
        kind: type[actions.AskConsent | actions.AskPerson] = (
            actions.AskPerson if person else actions.AskConsent
        )
        since = self.actions[self._process_start :]
        closed = self._answered | {x.question for x in since if isinstance(x, actions.CloseQuestion)}
        asked = [x.question for x in since if isinstance(x, kind) and x.question not in closed]
        assert asked, "no question is open"
        self._answered.add(asked[-1])
        return asked[-1]

    def answer(self, *scopes: str, control_confirmed: bool = False) -> list[actions.Action]:
        """The subscriber ticks ``scopes`` in the open question (control also needs the typed yes)."""
        return self.do(
            inputs.Answered(
                question=self.question(), chosen=frozenset(scopes), control_confirmed=control_confirmed
            )
        )

    def answer_person(self, allowed: bool | None) -> list[actions.Action]:
        return self.do(inputs.PersonAnswered(question=self.question(person=True), allowed=allowed))

    def withdraw(self, *scopes: str) -> list[actions.Action]:
        return self.do(inputs.Withdrawn(scopes=frozenset(scopes)))

    def grant(self, *scopes: str) -> list[actions.Action]:
        return self.do(inputs.Granted(scopes=frozenset(scopes)))

    def chat(self, text: str) -> list[actions.Action]:
        return self.do(inputs.Typed(text=text))

    def end(self, reason: str = "ended by the subscriber") -> list[actions.Action]:
        return self.do(inputs.EndRequested(reason=reason))

    def collected(self, items: Iterable[InventoryItem], **router: str) -> list[actions.Action]:
        """The collectors of the last ``CollectInventory`` found ``items`` (router login optional)."""
        return self.do(inputs.InventoryCollected(items=tuple(items), **router))

    # -- screen frames --------------------------------------------------------------------------

    def frame(self, *, keyframe: bool = False) -> bytes | None:
        """The capture loop's next frame: sent only while the agent's core lets frames flow
        (sharing started, ``permits("screen_update")``), as the adapter does; None if not sent."""
        if self.agent.sharing is None or not self.agent.permits("screen_update"):
            return None
        return self.force_frame(keyframe=keyframe)

    def force_frame(self, *, keyframe: bool = False) -> bytes:
        """A frame on the agent's connection whatever the agent's record says (a hostile agent)."""
        assert self.link is not None
        self._seq += 1
        rect = Rect(x=0, y=0, w=2, h=2, encoding=Encoding.PNG, payload=b"px%d" % self._seq)
        data = encode_update(
            ScreenUpdate(seq=self._seq, width=64, height=48, rects=(rect,), keyframe=keyframe)
        )
        self.broker.feed(AgentFrame(agent=self.link, data=data), self.now)
        self.pump()
        return data

    # -- hostile or lying parties ---------------------------------------------------------------

    def force_to_agent(self, message: Message) -> list[actions.Action]:
        """A message built by hand reaches the agent core as if the broker had sent it."""
        before = len(self.actions)
        decoded, _ = _wire(message)
        self._agent_did(self.agent.receive(decoded, self.now))
        self.pump()
        return self.actions[before:]

    # -- looking --------------------------------------------------------------------------------

    @property
    def to_agent_bytes(self) -> int:
        """Control bytes the broker put on the agent's connections (encoded, as on the wire)."""
        return sum(wire.wire_bytes for wire in self._wires)

    def of(self, kind: type[A]) -> list[A]:
        """The agent's actions of one class so far."""
        return [x for x in self.actions if isinstance(x, kind)]

    def sent_by_agent(self, kind: type[M]) -> list[M]:
        return [x.message for x in self.of(actions.Send) if isinstance(x.message, kind)]

    def refusals_to_agent(self) -> list[Error]:
        """``error`` messages the broker sent the agent (refusals of what the agent sent)."""
        return [m for m in self._received if isinstance(m, Error)]

    def receipts(self) -> list[ConsentReceipt]:
        return [parse_receipt(m.receipt) for m in self.sent_by_agent(ConsentDecision)]

    def agent_granted(self) -> frozenset[str]:
        record = self.agent.record
        return frozenset() if record is None else frozenset(record.granted)

    def broker_granted(self) -> frozenset[str]:
        sessions = self.broker.sessions
        return frozenset() if self.session_id not in sessions else sessions[self.session_id].granted

    def audit(self, action: str | None = None) -> list[AuditRecord]:
        return [e for e in self.broker.audit if action is None or e.action == action]

    # -- delivery -------------------------------------------------------------------------------

    def pump(self) -> None:
        """Deliver everything in flight, both ways (each direction in order, what the broker sent
        first), until both sides are quiet; then close the connection of an agent that finished."""
        for _ in range(_MAX_STEPS):
            wire = self._link_wire
            if wire is not None and wire.inbox and not self.frozen:
                message = wire.inbox.pop(0)
                self._received.append(message)
                if self.finished is None:
                    self._agent_did(self.agent.receive(message, self.now))
            elif self._to_broker and self.link is not None:
                self._to_broker_core(self.link, self._to_broker.pop(0))
            else:
                break
        else:
            raise AssertionError("the cores kept answering each other")
        if self.finished is not None and self.link is not None:
            link, self.link = self.link, None  # the agent exited: its connection closes
            self.broker.feed(AgentDisconnected(agent=link), self.now)

    def _to_broker_core(self, link: AgentPeer, message: Message) -> None:
        """One message of the agent reaches the broker (``tests/pair_cluster.py`` adopts a resume)."""
        self.broker.agent_message(link, message, self.now)

    def _agent_did(self, out: list[actions.Action]) -> None:
        for action in out:
            self.actions.append(action)
            if isinstance(action, actions.Send) and self.link is not None:
                decoded, _ = _wire(action.message)
                self._to_broker.append(decoded)
            elif isinstance(action, actions.Finish):
                self.finished = action.exit_code


_OPENED: list[AgentBrokerPair] = []


def claimed(*scopes: str, **kw: object) -> tuple[AgentBrokerPair, OperatorEndpoint]:
    """A pair whose subscriber read the code out and whose operator ("op") claimed with ``scopes``."""
    pair = AgentBrokerPair(**kw)  # type: ignore[arg-type]
    _OPENED.append(pair)
    op = pair.operator()
    code = pair.request()
    answers = [m for m in op.send(Claim(id="c1", code=code, scopes=scopes)) if isinstance(m, Claimed)]
    assert [m.session_id for m in answers] == [pair.session_id]
    return pair, op


def cores_agree() -> Iterator[None]:
    """For an autouse fixture: after the test, in every session :func:`claimed` opened, the agent's
    core never had to ignore the broker and neither side refused the other, unless the test plays
    a hostile or lying party (``pair.expect_refusals = True``)."""
    _OPENED.clear()
    yield
    for pair in _OPENED:
        if not pair.expect_refusals:
            ignored = [(x.what, x.scopes) for x in pair.of(actions.Ignored)]
            assert not ignored, f"the agent ignored the broker: {ignored}"
            refused = pair.sent_by_agent(Error)
            assert not refused, f"the agent refused the broker: {refused}"
            refused = pair.refusals_to_agent()
            assert not refused, f"the broker refused the agent: {refused}"
    _OPENED.clear()
