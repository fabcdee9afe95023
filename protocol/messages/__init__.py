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

The classes live in submodules named for what they hold: ``fields`` (field types and the base
classes), ``connection``, ``session``, ``operators``, ``inventory`` and ``audit``; this package
re-exports every one of them, so ``from protocol.messages import Hello`` is the way to import.
"""

from __future__ import annotations

from .audit import AuditEntries, AuditQuery, AuditRow, AuditVerified, AuditVerify
from .connection import AgentStatus, Enroll, Enrolled, Error, Hello, Ping, Pong
from .fields import (
    ChatText,
    Code,
    ContractId,
    Coordinate,
    Id,
    MessageBase,
    Name,
    OperatorName,
    Password,
    Pem,
    Role,
    Scope,
    Scopes,
    ScopeStatus,
    Serial,
    SessionId,
    SessionPhase,
    SupportCode,
    Text,
    Time,
    Token,
    Version,
    WireStruct,
)
from .inventory import (
    Credentials,
    InventoryItem,
    InventoryReport,
    InventoryView,
    Monitor,
    MonitorLayout,
    RevealCredentials,
)
from .operators import (
    Auth,
    ChangePassword,
    Claim,
    Claimed,
    Invitation,
    InvitationStatus,
    Invite,
    Login,
    LoginOk,
    Logout,
    Ok,
    Queue,
    QueueEntry,
    QueueList,
    SessionList,
    Sessions,
    Transfer,
    Watch,
)
from .session import (
    Chat,
    ConsentDecision,
    ConsentRequest,
    InputEvent,
    RestartNotice,
    RestartRequest,
    ScopeRequest,
    ScreenRefresh,
    SessionEnd,
    SessionState,
    SupportCodeIssued,
    SupportRequest,
    Viewer,
)

__all__ = [
    "MESSAGE_TYPES",
    "AgentStatus",
    "AuditEntries",
    "AuditQuery",
    "AuditRow",
    "AuditVerified",
    "AuditVerify",
    "Auth",
    "ChangePassword",
    "Chat",
    "ChatText",
    "Claim",
    "Claimed",
    "Code",
    "ConsentDecision",
    "ConsentRequest",
    "ContractId",
    "Coordinate",
    "Credentials",
    "Enroll",
    "Enrolled",
    "Error",
    "Hello",
    "Id",
    "InputEvent",
    "InventoryItem",
    "InventoryReport",
    "InventoryView",
    "Invitation",
    "InvitationStatus",
    "Invite",
    "Login",
    "LoginOk",
    "Logout",
    "Message",
    "MessageBase",
    "Monitor",
    "MonitorLayout",
    "Name",
    "Ok",
    "OperatorName",
    "Password",
    "Pem",
    "Ping",
    "Pong",
    "Queue",
    "QueueEntry",
    "QueueList",
    "RestartNotice",
    "RestartRequest",
    "RevealCredentials",
    "Role",
    "Scope",
    "ScopeRequest",
    "ScopeStatus",
    "Scopes",
    "ScreenRefresh",
    "Serial",
    "SessionEnd",
    "SessionId",
    "SessionList",
    "SessionPhase",
    "SessionState",
    "Sessions",
    "SupportCode",
    "SupportCodeIssued",
    "SupportRequest",
    "Text",
    "Time",
    "Token",
    "Transfer",
    "Version",
    "Viewer",
    "Watch",
    "WireStruct",
]

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
