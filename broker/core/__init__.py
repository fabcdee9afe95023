"""The broker's pure session core: events and ``now`` in, commands out (docs/session-core.md).

No I/O, no clock, no store, no peers called: :mod:`broker.session_host` runs the commands.
"""

from __future__ import annotations

from .commands import (
    Audit,
    BrowseAudit,
    Command,
    ForwardFrame,
    PersistReceipt,
    PersistSessionEnd,
    PersistSessionStart,
    ReadCredentials,
    RequestKeyframe,
    SaveInventory,
    SendToAgent,
    SendToOperator,
)
from .core import CodeGuardLike, ServiceHoursLike, SessionCore
from .events import (
    AgentDisconnected,
    AgentError,
    AgentFrame,
    AgentMessage,
    ConsentDecided,
    CredentialsRead,
    Event,
    FrameDelivered,
    InventoryStored,
    OperatorAttached,
    OperatorDetached,
    OperatorMessage,
    PersonAsked,
    Shutdown,
    Subscriber,
    SupportRequested,
)
from .state import AgentPeer, OperatorPeer, Peer, PendingConsent, PersonRequest, Session, SessionRules

__all__ = [
    "AgentDisconnected",
    "AgentError",
    "AgentFrame",
    "AgentMessage",
    "AgentPeer",
    "Audit",
    "BrowseAudit",
    "CodeGuardLike",
    "Command",
    "ConsentDecided",
    "CredentialsRead",
    "Event",
    "ForwardFrame",
    "FrameDelivered",
    "InventoryStored",
    "OperatorAttached",
    "OperatorDetached",
    "OperatorMessage",
    "OperatorPeer",
    "Peer",
    "PendingConsent",
    "PersistReceipt",
    "PersistSessionEnd",
    "PersistSessionStart",
    "PersonAsked",
    "PersonRequest",
    "ReadCredentials",
    "RequestKeyframe",
    "SaveInventory",
    "SendToAgent",
    "SendToOperator",
    "ServiceHoursLike",
    "Session",
    "SessionCore",
    "SessionRules",
    "Shutdown",
    "Subscriber",
    "SupportRequested",
]
