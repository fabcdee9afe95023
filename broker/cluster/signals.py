"""The signals broker processes send each other over the cluster bus, and their subjects.

Signals are small facts and requests between processes ("agent X is online on node B", "cut the
agent holding certificate S"), never payloads: screen updates, input, chat, inventory and consent
receipts do not cross the bus (第33条 secrecy of communications; DESIGN §6 "Screen data never crosses
NATS"). The types carry no ``bytes`` field and an encoded signal is at most :data:`MAX_SIGNAL_BYTES`,
so nothing large can be smuggled through them.

Each signal is a frozen msgspec struct with a ``kind`` tag, encoded as MessagePack. Every signal names
the node that sent it (``node``) and the sender's clock (``at``, seconds since the epoch, for logs and
metrics only: nodes' clocks differ, so no rule depends on it). A receiver validates every field on
decode (:func:`decode_signal`); the bus drops what does not validate and counts it.

Subjects: ``<prefix>.<kind>`` for signals every node receives, ``<prefix>.<kind>.<node>`` for those
addressed to one node (:class:`WakeUp`). The prefix (default ``isp.broker``) separates clusters
sharing one NATS server.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from typing import Annotated, Final, Literal

import msgspec

from ..errors import BrokerError

__all__ = [
    "DEFAULT_PREFIX",
    "MAX_SIGNAL_BYTES",
    "AgentPresence",
    "ConsentChanged",
    "CutAgent",
    "InvalidSignal",
    "NodeHeartbeat",
    "SessionRequested",
    "Signal",
    "WakeUp",
    "decode_signal",
    "encode_signal",
    "new_node_id",
    "subject_for",
    "subscriptions_for",
]

#: Largest encoded signal accepted or sent (bytes). The biggest real one, a :class:`CutAgent` for a
#: terminated contract with the maximum of certificates, is about 1.5 KiB.
MAX_SIGNAL_BYTES: Final = 4096

#: Subject prefix shared by all processes of one cluster.
DEFAULT_PREFIX: Final = "isp.broker"

_TOKEN = r"[A-Za-z0-9_-]{1,64}"  # noqa: S105 (a subject token pattern, not a secret)
NodeId = Annotated[str, msgspec.Meta(pattern=rf"^{_TOKEN}\Z")]
"""A process's name in the cluster; one NATS subject token (no dots, spaces or wildcards)."""

Serial = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z]+\Z")]
ContractId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
SessionId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+\Z")]
ScopeName = Annotated[str, msgspec.Meta(max_length=48, pattern=r"^[a-z]+:[a-z_]{1,32}\Z")]
Time = Annotated[float, msgspec.Meta(ge=0)]
Count = Annotated[int, msgspec.Meta(ge=0, le=10_000_000)]


class InvalidSignal(BrokerError):
    """Bytes from the bus that are not a valid signal (or a signal too large to send)."""


class _Signal(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", forbid_unknown_fields=True):
    node: NodeId
    """The sending process."""
    at: Time
    """The sender's clock when it sent (logs and metrics only)."""


class NodeHeartbeat(_Signal, frozen=True, kw_only=True, tag="heartbeat"):
    """Every :data:`broker.cluster.bus.DEFAULT_HEARTBEAT_INTERVAL` seconds from every process: it is alive,
    how much it holds, and where operators' session traffic for its agents goes (docs/cluster.md)."""

    started_at: Time
    agents: Count = 0
    operators: Count = 0
    sessions: Count = 0
    address: Annotated[str, msgspec.Meta(max_length=256)] = ""
    """The node's own address for session traffic (``host:port`` of its node-to-node listener)."""


class AgentPresence(_Signal, frozen=True, kw_only=True, tag="presence"):
    """An agent (by certificate serial) came online on, or left, the sending node."""

    serial: Serial
    contract_id: ContractId
    online: bool


class SessionRequested(_Signal, frozen=True, kw_only=True, tag="session_requested"):
    """A subscriber asked for support on the sending node (第31条①): every node's operators' queue
    shows it. The code itself is not in the signal; claims go through the database (single use
    cluster-wide, :mod:`broker.storage.codes`)."""

    session_id: SessionId
    contract_id: ContractId


class ConsentChanged(_Signal, frozen=True, kw_only=True, tag="consent_changed"):
    """The agent's consent for a session changed (granted or withdrawn, 第31条1項④). The signed receipt
    is in the database; this only tells the node serving the operator to re-read it and stop or start
    forwarding at once."""

    session_id: SessionId
    granted: Annotated[tuple[ScopeName, ...], msgspec.Meta(max_length=16)]


class CutAgent(_Signal, frozen=True, kw_only=True, tag="cut_agent"):
    """Close the connection of every agent holding one of ``serials`` (certificate revoked) or belonging
    to ``contract_id`` (contract terminated, 第20条/第21条), on whichever node holds it. The database
    already says so when this is sent; the signal only makes it take effect at once."""

    serials: Annotated[tuple[Serial, ...], msgspec.Meta(max_length=16)] = ()
    contract_id: ContractId | None = None
    reason: Literal["revoked", "terminated", "suspended"] = "revoked"


class WakeUp(_Signal, frozen=True, kw_only=True, tag="wake_up"):
    """Addressed to one node: something it waits for changed in the database; read it now instead of
    at the next poll (``topic`` says what, ``ref`` which row)."""

    target: NodeId
    topic: Literal["session", "queue", "operator", "config"]
    ref: Annotated[str, msgspec.Meta(max_length=64)] = ""


Signal = NodeHeartbeat | AgentPresence | SessionRequested | ConsentChanged | CutAgent | WakeUp
SIGNAL_TYPES: Final[tuple[type[_Signal], ...]] = (
    NodeHeartbeat,
    AgentPresence,
    SessionRequested,
    ConsentChanged,
    CutAgent,
    WakeUp,
)

_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(Signal)


def kind_of(signal_type: type[_Signal]) -> str:
    tag = signal_type.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def encode_signal(signal: Signal) -> bytes:
    """MessagePack bytes; raises :class:`InvalidSignal` past :data:`MAX_SIGNAL_BYTES`. Fields are
    validated as a receiver would (a struct built in code is not checked by msgspec), so a node never
    sends what every other node would drop."""
    data = _encoder.encode(signal)
    if len(data) > MAX_SIGNAL_BYTES:
        raise InvalidSignal(f"a {type(signal).__name__} of {len(data)} bytes is over {MAX_SIGNAL_BYTES}")
    decode_signal(data)
    return data


def decode_signal(data: bytes) -> Signal:
    """Validate bytes from the bus: size, type tag, every field."""
    if len(data) > MAX_SIGNAL_BYTES:
        raise InvalidSignal(f"{len(data)} bytes is over {MAX_SIGNAL_BYTES}")
    try:
        return _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise InvalidSignal(f"invalid signal: {exc}") from None
    except msgspec.DecodeError:
        raise InvalidSignal("not a MessagePack signal") from None


_PREFIX_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,32}(\.[A-Za-z0-9_-]{1,32}){0,3}\Z")
_NODE_RE: Final = re.compile(rf"^{_TOKEN}\Z")


def check_prefix(prefix: str) -> str:
    if not _PREFIX_RE.match(prefix):
        raise InvalidSignal(f"a subject prefix is 1–4 dot-separated tokens of [A-Za-z0-9_-], not {prefix!r}")
    return prefix


def check_node_id(node: str) -> str:
    if not _NODE_RE.match(node):
        raise InvalidSignal(f"a node id is 1–64 characters of [A-Za-z0-9_-], not {node!r}")
    return node


def subject_for(prefix: str, signal: Signal) -> str:
    """Where a signal is published: node-addressed kinds carry the target node as the last token."""
    kind = kind_of(type(signal))
    if isinstance(signal, WakeUp):
        return f"{prefix}.{kind}.{signal.target}"
    return f"{prefix}.{kind}"


def subscriptions_for(prefix: str, node: str) -> tuple[str, str]:
    """The two subjects a node listens on: every broadcast kind, and every kind addressed to it."""
    return f"{prefix}.*", f"{prefix}.*.{node}"


def new_node_id() -> str:
    """``<host>-<pid>-<random>``: readable in logs and metrics, unique across restarts (a restarted
    process on the same host and pid is still a new node: its old presence rows are not its own)."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:32] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"
