"""Pure protocol core shared by broker, agent, operator client and tests.

No asyncio, sockets, ssl, clock reads or file I/O here (a test enforces it): bytes and typed
messages in, typed events and bytes out; time is always an argument.
"""

from .codec import decode, encode
from .errors import ErrorCode, ProtocolError, RemoteProtocolError
from .limits import DEFAULT_LIMITS, PROTOCOL_VERSION, Limits
from .link import (
    CLOSE_POLICY,
    CLOSE_TRY_AGAIN,
    BinaryReceived,
    Closing,
    Event,
    Link,
    LinkState,
    Opened,
    Received,
    Rejected,
    SendPing,
)

__all__ = [
    "CLOSE_POLICY",
    "CLOSE_TRY_AGAIN",
    "DEFAULT_LIMITS",
    "PROTOCOL_VERSION",
    "BinaryReceived",
    "Closing",
    "ErrorCode",
    "Event",
    "Limits",
    "Link",
    "LinkState",
    "Opened",
    "ProtocolError",
    "Received",
    "Rejected",
    "RemoteProtocolError",
    "SendPing",
    "decode",
    "encode",
]
