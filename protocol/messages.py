"""Typed control messages: one frozen, keyword-only class per ``type``.

JSON text frames carry these (DESIGN §4). Each class is a ``msgspec.Struct`` so that decoding
validates types, required fields and string lengths in one pass, and unknown fields are refused
rather than silently ignored. ``Message`` is the union of all of them; ``MESSAGE_TYPES`` maps the
wire ``type`` to its class.

Every message also validates when it is *built* (h11's self-validating events): the classes'
metaclass runs the very decoder the codec uses on the new object, so ``Claim(id="")`` raises
:class:`~protocol.errors.InvalidField` exactly as decoding ``{"type":"claim","id":""}`` does, and
whatever builds also encodes and decodes back equal. Decoding does not pass through the metaclass,
so a received message is validated once, by the decoder. Rules that span fields (an input event's
kind and its fields) live in ``__post_init__``, which both paths run. Tests that must send invalid
JSON write raw dicts (``protocol.codec.encode_raw``), never invalid message objects.

Times on the wire are seconds since the Unix epoch (UTC) as numbers: the sender's clock, passed
in by the adapter, never read here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from .construction import Validating, input_problem
from .errors import InvalidField
from .limits import MAX_INPUT_TEXT
from .scopes import SCOPE_PATTERN
from .scopes import ScopeStatus as ScopeStatus  # the status table lives in protocol.scopes

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+\Z")]
"""Request/response id chosen by the sender, echoed in the answer."""

Code = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9_.:-]+\Z")]
Text = Annotated[str, msgspec.Meta(max_length=1024)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
ContractId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+\Z")]
Pem = Annotated[str, msgspec.Meta(min_length=1, max_length=16 * 1024)]
Token = Annotated[str, msgspec.Meta(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+\Z")]
Serial = Annotated[str, msgspec.Meta(min_length=1, max_length=40, pattern=r"^[0-9a-f]+\Z")]
Time = Annotated[float, msgspec.Meta(ge=0, le=1e11)]
Version = Annotated[int, msgspec.Meta(ge=1, le=65535)]

Role = Literal["agent", "broker", "operator", "enroll"]

OperatorName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+\Z")]
"""An operator's account name (the broker's ``NAME_PATTERN``), e.g. a colleague to invite."""


class _Struct(msgspec.Struct, metaclass=Validating, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Common base of every struct on the wire: validated at construction (see the module doc)."""


class _Base(_Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"):
    """Common base; not a message itself."""


class Hello(_Base, frozen=True, kw_only=True, tag="hello"):
    """First message on every connection: who speaks, which protocol versions it can use.

    The client offers ``versions``; the broker answers with exactly one, the highest in common,
    or an ``error`` with ``unsupported_version``.
    """

    versions: Annotated[tuple[Version, ...], msgspec.Meta(min_length=1, max_length=8)]
    role: Role
    software: Annotated[str, msgspec.Meta(max_length=64)] = ""


class Enroll(_Base, frozen=True, kw_only=True, tag="enroll"):
    """Agent → broker on ``/enroll``: one-time token and a CSR; the private key stays home.

    The CSR's subject CN must be the contract ID the token was issued for (第7条: one contract,
    one identity). Accepting the certificate is the subscriber's consent of 第31条1項④, asked by
    the agent before this message is sent.
    """

    id: Id
    contract_id: ContractId
    token: Token
    csr_pem: Pem
    machine_name: Name


class Enrolled(_Base, frozen=True, kw_only=True, tag="enrolled"):
    """Broker → agent: the signed certificate, the CA chain, and the client certificate ID."""

    id: Id
    certificate_pem: Pem
    ca_pem: Pem
    serial: Serial
    """Hex serial: the "client certificate ID" of 別紙5 (2)."""
    not_after: Time


class Error(_Base, frozen=True, kw_only=True, tag="error"):
    """A refusal with a stable ``code`` (see :class:`protocol.errors.ErrorCode`).

    ``id`` names the request it answers, when there was one. ``message`` is English for logs;
    clients show their own translation of ``code`` (Japanese first).
    """

    code: Code
    message: Text = ""
    id: Id | None = None
    retry_after: Annotated[float, msgspec.Meta(ge=0, le=1e8)] | None = None


class Ping(_Base, frozen=True, kw_only=True, tag="ping"):
    """Heartbeat; ``time`` is the sender's clock, echoed in the ``pong`` to measure round trips."""

    id: Id
    time: Time


class Pong(_Base, frozen=True, kw_only=True, tag="pong"):
    id: Id
    time: Time


class AgentStatus(_Base, frozen=True, kw_only=True, tag="agent_status"):
    """Agent → broker after ``hello``: what the operators' queue shows about this PC.

    Only the machine name and the agent's own facts: the 別紙5 inventory is sent only with
    consent, item by item, never here.
    """

    machine_name: Name
    agent_version: Annotated[str, msgspec.Meta(max_length=64)] = ""
    display: bool = False
    """Whether a screen can be shared (False on a headless Linux box)."""


# -- support sessions (第31条①, DESIGN §5) ------------------------------------------------------

Scope = Annotated[str, msgspec.Meta(max_length=48, pattern=SCOPE_PATTERN)]
"""A consent scope: ``screen:view``, ``input:control`` or ``inventory:<item>`` for one of the
eleven items of 別紙5 (``protocol/scopes.py``); any other is refused as ``invalid_field``."""

Scopes = Annotated[tuple[Scope, ...], msgspec.Meta(max_length=16)]
SessionId = Annotated[str, msgspec.Meta(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+\Z")]
SupportCode = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}\Z")]
SessionPhase = Literal["waiting", "consent", "active", "ended"]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
ChatText = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
Coordinate = Annotated[int, msgspec.Meta(ge=0, le=65535)]


class SupportRequest(_Base, frozen=True, kw_only=True, tag="support_request"):
    """Agent → broker: the subscriber asks for help (第31条①: only their own agent can ask).

    ``resume`` re-attaches a session after the agent's connection dropped (within the grace
    period); the broker accepts it only from the same certificate.
    """

    id: Id
    resume: SessionId | None = None


class SupportCodeIssued(_Base, frozen=True, kw_only=True, tag="support_code"):
    """Broker → agent: the 6-digit code the subscriber reads to the operator on the phone."""

    id: Id
    session_id: SessionId
    code: SupportCode
    expires_at: Time


class ConsentRequest(_Base, frozen=True, kw_only=True, tag="consent_request"):
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


class ConsentDecision(_Base, frozen=True, kw_only=True, tag="consent_decision"):
    """Agent → broker: a consent receipt and its signature by the agent's certificate key.

    ``receipt`` is the exact signed text (see :mod:`protocol.receipts`), so the broker can store it
    and anyone can verify it offline against the agent's certificate (DESIGN §4).
    """

    id: Id
    session_id: SessionId
    receipt: Annotated[str, msgspec.Meta(min_length=2, max_length=4096)]
    signature: Annotated[str, msgspec.Meta(min_length=8, max_length=256, pattern=r"^[A-Za-z0-9+/=]+\Z")]


class ScopeRequest(_Base, frozen=True, kw_only=True, tag="scope_request"):
    """Operator → broker: ask the subscriber for more scopes during a session."""

    id: Id
    session_id: SessionId
    scopes: Scopes


class InputEvent(_Base, frozen=True, kw_only=True, tag="input"):
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


class ScreenRefresh(_Base, frozen=True, kw_only=True, tag="screen_refresh"):
    """Ask the agent for a full frame: a viewer joined, fell behind (``behind``), or asked."""

    session_id: SessionId
    behind: bool = False
    monitor: Annotated[int, msgspec.Meta(ge=0, le=16)] | None = None


class Chat(_Base, frozen=True, kw_only=True, tag="chat"):
    """Text between subscriber and operator; the broker fills in ``sender`` and ``time``."""

    session_id: SessionId
    text: ChatText
    sender: Annotated[str, msgspec.Meta(max_length=255)] = ""
    time: Time = 0.0


class SessionEnd(_Base, frozen=True, kw_only=True, tag="session_end"):
    """Either side ends the session (the subscriber may at any time, 第31条, DESIGN §2)."""

    id: Id
    session_id: SessionId
    reason: Annotated[str, msgspec.Meta(max_length=255)] = ""


class RestartRequest(_Base, frozen=True, kw_only=True, tag="restart_request"):
    """Operator → broker → agent: restart the PC (issue 16). Needs ``system:restart`` granted;
    the broker refuses it otherwise and the agent checks its own consent record again."""

    id: Id
    session_id: SessionId


class RestartNotice(_Base, frozen=True, kw_only=True, tag="restart_notice"):
    """Agent → broker: the PC restarts now. The broker keeps the session for its restart grace
    (``serve --restart-grace``) instead of the normal grace, and tells the viewers."""

    id: Id
    session_id: SessionId


class Viewer(_Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
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


class SessionState(_Base, frozen=True, kw_only=True, tag="session_state"):
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


# -- operators ------------------------------------------------------------------------------------


class Login(_Base, frozen=True, kw_only=True, tag="login"):
    """Operator → broker on ``/operator``: password and TOTP code (RFC 6238)."""

    id: Id
    name: Name
    password: Password
    totp: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6,8}\Z")]


class Auth(_Base, frozen=True, kw_only=True, tag="auth"):
    """Operator → broker: resume with a session token from an earlier ``login_ok``."""

    id: Id
    token: Token


class LoginOk(_Base, frozen=True, kw_only=True, tag="login_ok"):
    id: Id
    token: Token
    expires_at: Time
    name: Name
    display_name: Name
    role: Literal["operator", "supervisor", "admin"]
    password_change_required: bool = False


class ChangePassword(_Base, frozen=True, kw_only=True, tag="change_password"):
    id: Id
    old_password: Password
    new_password: Password


class Logout(_Base, frozen=True, kw_only=True, tag="logout"):
    id: Id


class Ok(_Base, frozen=True, kw_only=True, tag="ok"):
    """A plain acknowledgement of request ``id``."""

    id: Id


class QueueList(_Base, frozen=True, kw_only=True, tag="queue_list"):
    id: Id


class QueueEntry(_Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    session_id: SessionId
    contract_id: ContractId
    machine_name: Annotated[str, msgspec.Meta(max_length=255)]
    created_at: Time
    expires_at: Time


class Queue(_Base, frozen=True, kw_only=True, tag="queue"):
    """Waiting support requests (never their codes); sent on request and pushed on change."""

    requests: Annotated[tuple[QueueEntry, ...], msgspec.Meta(max_length=10_000)]
    id: Id | None = None


class Claim(_Base, frozen=True, kw_only=True, tag="claim"):
    """Operator → broker: take a request by the code the subscriber read out, or by its id."""

    id: Id
    code: SupportCode | None = None
    session_id: SessionId | None = None
    scopes: Scopes = ("screen:view",)


class Claimed(_Base, frozen=True, kw_only=True, tag="claimed"):
    id: Id
    session_id: SessionId
    contract_id: ContractId
    machine_name: Annotated[str, msgspec.Meta(max_length=255)]


class Watch(_Base, frozen=True, kw_only=True, tag="watch"):
    """Attach this connection as a viewer: the session's operator, or a supervisor read-only."""

    id: Id
    session_id: SessionId


class SessionList(_Base, frozen=True, kw_only=True, tag="session_list"):
    id: Id


class Sessions(_Base, frozen=True, kw_only=True, tag="sessions"):
    id: Id
    sessions: Annotated[tuple[SessionState, ...], msgspec.Meta(max_length=10_000)]


class Invite(_Base, frozen=True, kw_only=True, tag="invite"):
    """The session's operator → broker: let colleague ``colleague`` (an operator account) watch
    the session read-only. The subscriber is asked first, for that person by name (第31条1項④:
    consent was given to one operator, so a new person who would see the screen is asked)."""

    id: Id
    session_id: SessionId
    colleague: OperatorName


class Transfer(_Base, frozen=True, kw_only=True, tag="transfer"):
    """The session's operator → broker: hand the session to colleague ``colleague``, who becomes
    its operator once the subscriber allowed that person; the old operator leaves, and control
    (``input:control``) is not carried over: the new operator asks for it again."""

    id: Id
    session_id: SessionId
    colleague: OperatorName


InvitationStatus = Literal["asked", "allowed", "refused", "timeout", "failed"]


class Invitation(_Base, frozen=True, kw_only=True, tag="invitation"):
    """Broker → the inviting operator and every connection of the colleague: where an invitation
    or a transfer stands. ``allowed`` means the subscriber said yes for ``colleague``: the
    colleague may now ``watch`` the session (for a transfer: as its new operator)."""

    session_id: SessionId
    kind: Literal["invite", "transfer"]
    status: InvitationStatus
    by: OperatorName
    by_display: Annotated[str, msgspec.Meta(max_length=255)] = ""
    colleague: OperatorName
    colleague_display: Annotated[str, msgspec.Meta(max_length=255)] = ""
    contract_id: ContractId
    machine_name: Annotated[str, msgspec.Meta(max_length=255)] = ""
    id: Id | None = None
    """The ``invite``/``transfer`` request this answers (only in the inviter's copy)."""


# -- inventory (別紙5), monitors, audit ------------------------------------------------------------


class InventoryItem(_Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    item: Annotated[str, msgspec.Meta(pattern=r"^[a-z_]{1,32}\Z")]
    available: bool
    value: Any = None
    reason: Annotated[str, msgspec.Meta(max_length=512)] | None = None


class InventoryReport(_Base, frozen=True, kw_only=True, tag="inventory_report"):
    """Agent → broker: only the items the subscriber granted (別紙5: item by item).

    Router credentials (別紙5 (11)) travel only if the subscriber typed them in this session.
    """

    id: Id
    session_id: SessionId
    items: Annotated[tuple[InventoryItem, ...], msgspec.Meta(max_length=16)]
    router_account: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    router_password: Annotated[str, msgspec.Meta(max_length=128)] | None = None


class InventoryView(_Base, frozen=True, kw_only=True, tag="inventory"):
    """Broker → operator: the consented items; credentials only behind :class:`RevealCredentials`."""

    session_id: SessionId
    items: Annotated[tuple[InventoryItem, ...], msgspec.Meta(max_length=16)]
    has_router_credentials: bool = False
    id: Id | None = None


class RevealCredentials(_Base, frozen=True, kw_only=True, tag="reveal_credentials"):
    """Operator → broker: the explicit, audited action that shows the router login (別紙5 (11))."""

    id: Id
    session_id: SessionId


class Credentials(_Base, frozen=True, kw_only=True, tag="credentials"):
    id: Id
    session_id: SessionId
    account: Annotated[str, msgspec.Meta(max_length=128)]
    password: Annotated[str, msgspec.Meta(max_length=128)]


class Monitor(_Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    index: Annotated[int, msgspec.Meta(ge=0, le=16)]
    left: Annotated[int, msgspec.Meta(ge=-65535, le=65535)]
    top: Annotated[int, msgspec.Meta(ge=-65535, le=65535)]
    width: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    height: Annotated[int, msgspec.Meta(ge=1, le=65535)]


class MonitorLayout(_Base, frozen=True, kw_only=True, tag="monitor_layout"):
    """Agent → operator: the subscriber's monitors; ``current`` is the one being shared.

    Index 0 is all monitors together (as ``mss`` numbers them); the operator picks one with
    :class:`ScreenRefresh` ``monitor=n``.
    """

    session_id: SessionId
    monitors: Annotated[tuple[Monitor, ...], msgspec.Meta(max_length=17)]
    current: Annotated[int, msgspec.Meta(ge=0, le=16)] = 0


class AuditQuery(_Base, frozen=True, kw_only=True, tag="audit_query"):
    """Supervisor → broker: newest entries first, ``before_seq`` pages back."""

    id: Id
    subject: Annotated[str, msgspec.Meta(max_length=255)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 100
    before_seq: Annotated[int, msgspec.Meta(ge=1)] | None = None


class AuditRow(_Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    seq: int
    at: float
    actor: str
    action: str
    subject: str
    details: dict[str, Any]


class AuditEntries(_Base, frozen=True, kw_only=True, tag="audit_entries"):
    id: Id
    entries: Annotated[tuple[AuditRow, ...], msgspec.Meta(max_length=500)]


class AuditVerify(_Base, frozen=True, kw_only=True, tag="audit_verify"):
    id: Id


class AuditVerified(_Base, frozen=True, kw_only=True, tag="audit_verified"):
    id: Id
    ok: bool
    checked: int
    problems: Annotated[tuple[str, ...], msgspec.Meta(max_length=1000)] = ()


Message = (
    Hello
    | Enroll
    | Enrolled
    | Error
    | Ping
    | Pong
    | AgentStatus
    | SupportRequest
    | SupportCodeIssued
    | ConsentRequest
    | ConsentDecision
    | ScopeRequest
    | InputEvent
    | ScreenRefresh
    | Chat
    | SessionEnd
    | SessionState
    | Login
    | Auth
    | LoginOk
    | ChangePassword
    | Logout
    | Ok
    | QueueList
    | Queue
    | Claim
    | Claimed
    | Watch
    | SessionList
    | Sessions
    | InventoryReport
    | InventoryView
    | RevealCredentials
    | Credentials
    | MonitorLayout
    | AuditQuery
    | AuditEntries
    | AuditVerify
    | AuditVerified
    | Invite
    | Transfer
    | Invitation
    | RestartRequest
    | RestartNotice
)

MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in (
        Hello,
        Enroll,
        Enrolled,
        Error,
        Ping,
        Pong,
        AgentStatus,
        SupportRequest,
        SupportCodeIssued,
        ConsentRequest,
        ConsentDecision,
        ScopeRequest,
        InputEvent,
        ScreenRefresh,
        Chat,
        SessionEnd,
        SessionState,
        Login,
        Auth,
        LoginOk,
        ChangePassword,
        Logout,
        Ok,
        QueueList,
        Queue,
        Claim,
        Claimed,
        Watch,
        SessionList,
        Sessions,
        InventoryReport,
        InventoryView,
        RevealCredentials,
        Credentials,
        MonitorLayout,
        AuditQuery,
        AuditEntries,
        AuditVerify,
        AuditVerified,
        Invite,
        Transfer,
        Invitation,
        RestartRequest,
        RestartNotice,
    )
}
