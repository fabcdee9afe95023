"""Support-session messages (第31条①, DESIGN §5): the request and its code, consent, input, chat,
restart, the end, and the session's state as both sides see it.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from ..construction import input_problem
from ..errors import InvalidField
from ..limits import MAX_INPUT_TEXT
from .fields import (
    ChatText,
    ContractId,
    Coordinate,
    Id,
    MessageBase,
    Name,
    OperatorName,
    Scope,
    Scopes,
    ScopeStatus,
    SessionId,
    SessionPhase,
    SupportCode,
    Time,
    WireStruct,
)


class SupportRequest(MessageBase, frozen=True, kw_only=True, tag="support_request"):
    """Agent → broker: the subscriber asks for help (第31条①: only their own agent can ask).

    ``resume`` re-attaches a session after the agent's connection dropped (within the grace
    period); the broker accepts it only from the same certificate.
    """

    id: Id
    resume: SessionId | None = None


class SupportCodeIssued(MessageBase, frozen=True, kw_only=True, tag="support_code"):
    """Broker → agent: the 6-digit code the subscriber reads to the operator on the phone."""

    id: Id
    session_id: SessionId
    code: SupportCode
    expires_at: Time


class ConsentRequest(MessageBase, frozen=True, kw_only=True, tag="consent_request"):
    """Broker → agent: the operator (by display name) asks for these scopes, each separately.

    The agent asks the subscriber; default deny, no answer within ``timeout`` seconds = deny.
    """

    id: Id
    session_id: SessionId
    operator: Name
    scopes: Scopes
    timeout: Annotated[float, msgspec.Meta(gt=0, le=600)] = 60.0
    viewer: Name | None = None
    """Set when the question is about a new *person* (an invited colleague, or the colleague the
    session is transferred to): their display name, shown as "<viewer> would like to see your
    screen"; ``scopes`` is then ``("screen:view",)``. The answer is a receipt naming them."""
    viewer_account: OperatorName | None = None
    """That person's operator account name (unique), written into the signed receipt."""
    transfer: bool = False
    """The new person would take the session over (the current operator leaves)."""


class ConsentDecision(MessageBase, frozen=True, kw_only=True, tag="consent_decision"):
    """Agent → broker: a consent receipt and its signature by the agent's certificate key.

    ``receipt`` is the exact signed text (see :mod:`protocol.receipts`), so the broker can store it
    and anyone can verify it offline against the agent's certificate (DESIGN §4).
    """

    id: Id
    session_id: SessionId
    receipt: Annotated[str, msgspec.Meta(min_length=2, max_length=4096)]
    signature: Annotated[str, msgspec.Meta(min_length=8, max_length=256, pattern=r"^[A-Za-z0-9+/=]+\Z")]


class ScopeRequest(MessageBase, frozen=True, kw_only=True, tag="scope_request"):
    """Operator → broker: ask the subscriber for more scopes during a session."""

    id: Id
    session_id: SessionId
    scopes: Scopes


class InputEvent(MessageBase, frozen=True, kw_only=True, tag="input"):
    """Operator → broker → agent: one mouse or keyboard event, in shared-screen pixels.

    Forwarded only while ``input:control`` is granted; the agent checks again before applying.
    Never logged with its key or text (第33条 secrecy of communications).
    """

    session_id: SessionId
    seq: Annotated[int, msgspec.Meta(ge=0, le=2**53)] = 0
    kind: Literal["move", "button", "wheel", "key", "text"]
    x: Coordinate | None = None
    y: Coordinate | None = None
    button: Literal["left", "right", "middle"] | None = None
    action: Literal["down", "up", "click"] | None = None
    """For ``button`` and ``key``: press, release, or both."""
    count: Annotated[int, msgspec.Meta(ge=1, le=3)] = 1
    """Clicks for ``action="click"`` (2 = double click)."""
    dx: Annotated[int, msgspec.Meta(ge=-100, le=100)] = 0
    dy: Annotated[int, msgspec.Meta(ge=-100, le=100)] = 0
    key: Annotated[str, msgspec.Meta(min_length=1, max_length=32)] | None = None
    """A DOM ``KeyboardEvent.key`` name ("Enter", "a") or a pynput key name."""
    code: Annotated[int, msgspec.Meta(ge=1, le=0x1FFFFFFF)] | None = None
    """A platform key code instead of ``key``."""
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_INPUT_TEXT)] | None = None
    """Typed as characters through the keyboard layout; no control characters but tab and newline."""
    monitor: Annotated[int, msgspec.Meta(ge=0, le=16)] = 0

    def __post_init__(self) -> None:
        """The rules between fields, for decoding and construction alike (the agent injects
        exactly this type, ``agent/input/inject.py``)."""
        if self.kind == "move" and self.x is not None and self.y is not None:
            return  # the common case (pointer motion), decoded once per mouse move: kept short
        problem = input_problem(self)
        if problem is not None:
            raise InvalidField(f"input {self.kind}: {problem}")


class ScreenRefresh(MessageBase, frozen=True, kw_only=True, tag="screen_refresh"):
    """Ask the agent for a full frame: a viewer joined, fell behind (``behind``), or asked."""

    session_id: SessionId
    behind: bool = False
    monitor: Annotated[int, msgspec.Meta(ge=0, le=16)] | None = None


class Chat(MessageBase, frozen=True, kw_only=True, tag="chat"):
    """Text between subscriber and operator; the broker fills in ``sender`` and ``time``."""

    session_id: SessionId
    text: ChatText
    sender: Annotated[str, msgspec.Meta(max_length=255)] = ""
    time: Time = 0.0


class SessionEnd(MessageBase, frozen=True, kw_only=True, tag="session_end"):
    """Either side ends the session (the subscriber may at any time, 第31条, DESIGN §2)."""

    id: Id
    session_id: SessionId
    reason: Annotated[str, msgspec.Meta(max_length=255)] = ""


class RestartRequest(MessageBase, frozen=True, kw_only=True, tag="restart_request"):
    """Operator → broker → agent: restart the PC (issue 16). Needs ``system:restart`` granted;
    the broker refuses it otherwise and the agent checks its own consent record again."""

    id: Id
    session_id: SessionId


class RestartNotice(MessageBase, frozen=True, kw_only=True, tag="restart_notice"):
    """Agent → broker: the PC restarts now. The broker keeps the session for its restart grace
    (``serve --restart-grace``) instead of the normal grace, and tells the viewers."""

    id: Id
    session_id: SessionId


class Viewer(WireStruct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One person who can see the subscriber's screen in a session (DESIGN §2: every person who can
    see the screen is known to the subscriber at every moment)."""

    name: Name
    """Display name (from an admin: shown only through :func:`protocol.text.safe_text`)."""
    role: Literal["operator", "supervisor"]
    read_only: bool = False
    """A supervisor's or invited colleague's read-only join: may see, never change the PC."""
    account: Annotated[str, msgspec.Meta(max_length=64)] = ""
    """An invited colleague's operator account name (empty for everyone else): the agent matches
    it with the persons the subscriber allowed by name."""


class SessionState(MessageBase, frozen=True, kw_only=True, tag="session_state"):
    """Broker → both sides whenever anything about a session changes."""

    session_id: SessionId
    phase: SessionPhase
    contract_id: ContractId
    machine_name: Annotated[str, msgspec.Meta(max_length=255)] = ""
    operator: Annotated[str, msgspec.Meta(max_length=255)] = ""
    scopes: dict[Scope, ScopeStatus] = msgspec.field(default_factory=dict)
    ended_by: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    reason: Annotated[str, msgspec.Meta(max_length=255)] = ""
    viewers: Annotated[tuple[Viewer, ...], msgspec.Meta(max_length=16)] = ()
    """Everyone attached who can see the screen, the session's operator first."""
    restart_until: Time | None = None
    """Set while the PC restarts (issue 16): the session is kept until then for the agent."""
