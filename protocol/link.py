"""The sans-I/O core of one control connection: hello, heartbeats, bad input, idle timeout.

Heartbeats (docs/heartbeat.md): the client proves it is alive every ``heartbeat_interval``; the
server closes a link that was silent for ``idle_timeout``. With ``ping_frames`` (the agent since
issue 15) the heartbeat is a WebSocket Ping frame: the core asks for one with :class:`SendPing`, the
adapter sends it and reports the Pong with :meth:`Link.pong_received`; on the server, websockets
answers the Ping inside its own protocol and the adapter only calls :meth:`Link.frame_received`, so
a heartbeat costs no JSON and never reaches the application. A JSON ``ping`` (agents before issue
15, the console) is still answered with a ``pong`` here.

Like the ``websockets`` protocol object, a :class:`Link` never touches a socket or a clock: the
adapter feeds it received frames with ``receive(data, now)``, writes out ``data_to_send()``,
arms a timer for ``next_timer()`` and calls ``handle_timer(now)`` when it fires (aioquic style).
So heartbeats and idle timeouts are tested with a fake clock and no sleeping.

State transitions, all of them::

    AWAIT_HELLO --hello ok--> OPEN --close()/fatal error/idle--> CLOSED
    AWAIT_HELLO --bad hello / anything else--> CLOSED
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .codec import decode, encode
from .errors import (
    ErrorCode,
    InvalidState,
    MessageTooLarge,
    ProtocolError,
    RemoteProtocolError,
    UnexpectedMessage,
    UnsupportedVersion,
)
from .limits import DEFAULT_LIMITS, SUPPORTED_VERSIONS, Limits
from .messages import Error, Hello, Message, Ping, Pong, Role

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
"""WebSocket close code for every refusal (RFC 6455 §7.4.1); the reason is the stable error code."""
CLOSE_TRY_AGAIN = 1013
"""Try again later (IANA WebSocket close code registry): the broker could not decide now (its
database did not answer); the reason is the stable error code, and the peer reconnects as usual."""


class LinkState(Enum):
    AWAIT_HELLO = "await_hello"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Opened:
    """The hello exchange finished; ``version`` is the one both sides now speak."""

    version: int
    peer_role: Role
    peer_software: str


@dataclass(frozen=True, slots=True)
class Received:
    """A valid message for the application (hello, ping and pong are handled here)."""

    message: Message


@dataclass(frozen=True, slots=True)
class BinaryReceived:
    """A binary frame (screen update) for the application; validated by its own decoder."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Rejected:
    """The peer sent something invalid; an ``error`` has already been queued for it."""

    error: ProtocolError


@dataclass(frozen=True, slots=True)
class Closing:
    """The link wants the connection closed with this WebSocket code and reason."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class SendPing:
    """Send a WebSocket Ping frame now (RFC 6455 §5.5.2); report its Pong with ``pong_received``."""


Event = Opened | Received | BinaryReceived | Rejected | Closing | SendPing


class Link:
    """One end of a control connection.

    is_client:
        The client sends ``hello`` first and the periodic ``ping``; the server answers.
    role:
        Our role in ``hello``; ``expect_role`` is the peer role the server accepts.
    ping_frames:
        Client only: heartbeat with WebSocket Ping frames (:class:`SendPing`) instead of JSON
        ``ping`` messages.
    """

    # A broker holds one Link per connected agent: slots keep each to a few hundred bytes.
    __slots__ = (
        "_ids",
        "_last_ping_sent",
        "_outgoing",
        "_ping_outstanding",
        "bad_messages",
        "expect_role",
        "is_client",
        "last_received",
        "limits",
        "peer_role",
        "ping_frames",
        "role",
        "rtt",
        "software",
        "state",
        "version",
        "versions",
    )

    def __init__(
        self,
        *,
        is_client: bool,
        role: Role,
        now: float,
        expect_role: Role | None = None,
        software: str = "",
        limits: Limits = DEFAULT_LIMITS,
        versions: tuple[int, ...] = SUPPORTED_VERSIONS,
        ping_frames: bool = False,
    ) -> None:
        self.is_client = is_client
        self.ping_frames = ping_frames
        self.role = role
        self.expect_role = expect_role
        self.software = software
        self.limits = limits
        self.versions = versions
        self.state = LinkState.AWAIT_HELLO
        self.version: int | None = None
        self.peer_role: Role | None = None
        self.rtt: float | None = None
        self.bad_messages = 0
        self.last_received = now
        self._last_ping_sent = now
        self._ping_outstanding = False
        self._outgoing: list[bytes] = []
        self._ids = 0
        if is_client:
            self._queue(Hello(versions=versions, role=role, software=software))

    # -- output -----------------------------------------------------------------------------------

    def next_id(self) -> str:
        """A fresh request id, unique on this link."""
        self._ids += 1
        return f"{'c' if self.is_client else 's'}{self._ids}"

    def send(self, message: Message) -> None:
        """Queue a message; only ``error`` may be sent before the link is open."""
        if self.state is LinkState.CLOSED:
            raise InvalidState("link is closed")
        if self.state is LinkState.AWAIT_HELLO and not isinstance(message, Error):
            raise InvalidState(f"cannot send {type(message).__name__} before hello")
        self._queue(message)

    def data_to_send(self) -> list[bytes]:
        out, self._outgoing = self._outgoing, []
        return out

    def _queue(self, message: Message) -> None:
        self._outgoing.append(encode(message))

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> Closing:
        self.state = LinkState.CLOSED
        return Closing(code, reason)

    # -- input ------------------------------------------------------------------------------------

    def receive(self, data: bytes | str, now: float) -> list[Event]:
        """Feed one text frame; returns what the application must act on."""
        if self.state is LinkState.CLOSED:
            return []
        self.last_received = now
        try:
            message = decode(data, max_size=self.limits.max_text_bytes)
        except RemoteProtocolError as exc:
            return self._reject(exc)
        if self.state is LinkState.AWAIT_HELLO:
            return self._receive_hello(message)
        if isinstance(message, Ping):
            self._queue(Pong(id=message.id, time=message.time))
            return []
        if isinstance(message, Pong):
            self._ping_outstanding = False
            self.rtt = max(0.0, now - message.time)
            return []
        if isinstance(message, Hello):
            return self._reject(UnexpectedMessage("hello was already exchanged"))
        return [Received(message)]

    def frame_received(self, now: float) -> None:
        """A WebSocket Ping or Pong frame arrived (answered, if a Ping, by the WebSocket layer):
        the peer is alive. Nothing for the application, no message to decode."""
        if self.state is not LinkState.CLOSED:
            self.last_received = now

    def pong_received(self, now: float) -> None:
        """The Pong answering our last :class:`SendPing` arrived: alive, and the round trip."""
        if self.state is LinkState.CLOSED:
            return
        self.last_received = now
        if self._ping_outstanding:
            self._ping_outstanding = False
            self.rtt = max(0.0, now - self._last_ping_sent)

    def receive_binary(self, data: bytes, now: float) -> list[Event]:
        """Feed one binary frame: only after hello, only up to ``max_binary_bytes``."""
        if self.state is LinkState.CLOSED:
            return []
        self.last_received = now
        if self.state is LinkState.AWAIT_HELLO:
            return self._fatal(UnexpectedMessage("binary frame before hello"))
        if len(data) > self.limits.max_binary_bytes:
            return self._reject(
                MessageTooLarge(f"binary frame of {len(data)} bytes exceeds {self.limits.max_binary_bytes}")
            )
        return [BinaryReceived(data)]

    def reject(self, error: RemoteProtocolError, now: float) -> list[Event]:
        """A bad message the adapter found (e.g. a binary frame on a path that takes only text):
        answered with an ``error`` and counted like the core's own findings."""
        if self.state is LinkState.CLOSED:
            return []
        self.last_received = now
        if self.state is LinkState.AWAIT_HELLO:
            return self._fatal(error)
        return self._reject(error)

    def _receive_hello(self, message: Message) -> list[Event]:
        if isinstance(message, Error):
            # The server refused us (version, certificate, contract): surface it and close.
            self.state = LinkState.CLOSED
            return [Received(message), Closing(CLOSE_POLICY, message.code)]
        if not isinstance(message, Hello):
            return self._fatal(UnexpectedMessage(f"expected hello, got {type(message).__name__}"))
        if self.expect_role is not None and message.role != self.expect_role:
            return self._fatal(UnexpectedMessage(f"this path is for {self.expect_role}, not {message.role}"))
        common = set(message.versions) & set(self.versions)
        if not common or (self.is_client and len(message.versions) != 1):
            return self._fatal(UnsupportedVersion(f"no common protocol version in {list(message.versions)}"))
        self.version = max(common)
        self.peer_role = message.role
        self.state = LinkState.OPEN
        if not self.is_client:
            self._queue(Hello(versions=(self.version,), role=self.role, software=self.software))
        return [Opened(self.version, message.role, message.software)]

    def _reject(self, exc: ProtocolError) -> list[Event]:
        self.bad_messages += 1
        self._queue(Error(code=exc.code.value, message=exc.message))
        events: list[Event] = [Rejected(exc)]
        if self.state is LinkState.AWAIT_HELLO or self.bad_messages >= self.limits.max_bad_messages:
            self.state = LinkState.CLOSED
            reason = (
                exc.code.value
                if self.bad_messages < self.limits.max_bad_messages
                else ErrorCode.TOO_MANY_ERRORS.value
            )
            events.append(Closing(CLOSE_POLICY, reason))
        return events

    def _fatal(self, exc: ProtocolError) -> list[Event]:
        self._queue(Error(code=exc.code.value, message=exc.message))
        self.state = LinkState.CLOSED
        return [Rejected(exc), Closing(CLOSE_POLICY, exc.code.value)]

    # -- time -------------------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        """When ``handle_timer`` must next be called, or None once closed."""
        if self.state is LinkState.CLOSED:
            return None
        deadline = self.last_received + self.limits.idle_timeout
        if self.is_client and self.state is LinkState.OPEN:
            deadline = min(deadline, self._last_ping_sent + self.limits.heartbeat_interval)
        return deadline

    def handle_timer(self, now: float) -> list[Event]:
        if self.state is LinkState.CLOSED:
            return []
        if now >= self.last_received + self.limits.idle_timeout:
            self.state = LinkState.CLOSED
            return [Closing(CLOSE_GOING_AWAY, ErrorCode.IDLE_TIMEOUT.value)]
        if (
            self.is_client
            and self.state is LinkState.OPEN
            and now >= self._last_ping_sent + self.limits.heartbeat_interval
        ):
            self._last_ping_sent = now
            self._ping_outstanding = True
            if self.ping_frames:
                return [SendPing()]
            self._queue(Ping(id=self.next_id(), time=now))
        return []
