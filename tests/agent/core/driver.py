"""Drives :class:`agent.core.AgentCore` with a fake clock: feed a broker message or a subscriber
input at ``now``, collect what the core sends, advance the clock through its timers.

No sockets, no sleeping. Receipts are signed with a real ECDSA key (:func:`agent.receipts.sign_receipt`)
so the integrator's ``AgentBrokerPair`` can hand :attr:`AgentDriver.outbox` to the broker's core as
it is. API (see docs/agent-core.md):

- ``AgentDriver(lang="en", grace=0.0, resume=None, now=T0)``; ``.core``, ``.now``, ``.actions``
  (every action so far), ``.outbox`` (messages sent and not yet taken);
- ``receive(msg)`` / ``do(input)``: one message / input at ``now``, returns its actions;
- ``advance(seconds)``: runs every timer due up to ``now + seconds``, in order, returns their actions;
- ``take_sent()``: the outbox, emptied; ``receipts()``: every consent receipt sent so far, parsed;
- ``of(kind)``: the actions of one class so far; ``ask(...)``: code + claim + a consent request,
  returns the question id.
"""

from __future__ import annotations

from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric import ec

from agent.core import AgentCore, CoreConfig, actions, inputs
from agent.core.session import Resume
from agent.receipts import sign_receipt
from protocol.messages import (
    ConsentDecision,
    ConsentRequest,
    Message,
    SessionState,
    SupportCodeIssued,
    SupportRequest,
    Viewer,
)
from protocol.receipts import ConsentReceipt, parse_receipt

__all__ = ["SESSION", "T0", "AgentDriver"]

T0 = 1_800_000_000.0
SESSION = "sess-0001"
A = TypeVar("A")


class AgentDriver:
    def __init__(
        self, *, lang: str = "en", grace: float = 0.0, resume: Resume | None = None, now: float = T0
    ) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.now = now
        self.core = AgentCore(
            CoreConfig(
                serial="0a1b2c",
                sign=lambda receipt: sign_receipt(receipt, self.key),
                lang=lang,
                grace=grace,
            )
        )
        self.actions: list[actions.Action] = []
        self.outbox: list[Message] = []
        self._sent_all: list[Message] = []
        if resume is not None:
            self._record(self.core.resume(resume))

    # -- feeding ----------------------------------------------------------------------------------

    def connect(self) -> SupportRequest:
        """The connection is up: the support request (or resume) the core sends."""
        [sent] = self.do(inputs.Connected())
        assert isinstance(sent, actions.Send)
        assert isinstance(sent.message, SupportRequest)
        return sent.message

    def receive(self, msg: Message) -> list[actions.Action]:
        return self._record(self.core.receive(msg, self.now))

    def do(self, event: inputs.Input) -> list[actions.Action]:
        return self._record(self.core.handle(event, self.now))

    def advance(self, seconds: float) -> list[actions.Action]:
        """Move the clock forward, firing each timer at its own time (bounded)."""
        end = self.now + seconds
        out: list[actions.Action] = []
        for _ in range(1000):
            due = self.core.next_timer()
            if due is None or due > end:
                break
            self.now = max(self.now, due)
            out += self._record(self.core.handle_timer(self.now))
        self.now = end
        return out

    # -- looking ----------------------------------------------------------------------------------

    def take_sent(self) -> list[Message]:
        sent, self.outbox = self.outbox, []
        return sent

    def sent(self) -> list[Message]:
        return list(self._sent_all)

    def receipts(self) -> list[ConsentReceipt]:
        return [parse_receipt(m.receipt) for m in self._sent_all if isinstance(m, ConsentDecision)]

    def of(self, kind: type[A]) -> list[A]:
        return [x for x in self.actions if isinstance(x, kind)]

    # -- common openings --------------------------------------------------------------------------

    def code(self) -> None:
        self.connect()
        self.receive(SupportCodeIssued(id="a1", session_id=SESSION, code="123456", expires_at=self.now + 600))

    def state(self, scopes: dict[str, str] | None = None, **kw: object) -> list[actions.Action]:
        fields: dict[str, object] = {
            "phase": "active",
            "operator": "Alice",
            "viewers": (Viewer(name="Alice", role="operator"),),
        }
        fields.update(kw)
        return self.receive(SessionState(session_id=SESSION, contract_id="c1", scopes=scopes or {}, **fields))  # type: ignore[arg-type]

    def ask(self, *scopes: str, timeout: float = 60.0) -> str:
        """Support code, claim, and a consent request for ``scopes``: the question's id."""
        if self.core.session_id is None:
            self.code()
            self.state(phase="consent")
        out = self.receive(
            ConsentRequest(id="r1", session_id=SESSION, operator="Alice", scopes=scopes, timeout=timeout)
        )
        asks = [x for x in out if isinstance(x, actions.AskConsent | actions.AskPerson)]
        assert len(asks) == 1
        return asks[0].question

    def _record(self, out: list[actions.Action]) -> list[actions.Action]:
        self.actions += out
        for action in out:
            if isinstance(action, actions.Send):
                self.outbox.append(action.message)
                self._sent_all.append(action.message)
        return out
