"""Typed control messages: one frozen, keyword-only class per ``type``.

JSON text frames carry these (DESIGN §4). Each class is a ``msgspec.Struct`` so that decoding
validates types, required fields and string lengths in one pass, and unknown fields are refused
rather than silently ignored. ``Message`` is the union of all of them; ``MESSAGE_TYPES`` maps the
wire ``type`` to its class.

Times on the wire are seconds since the Unix epoch (UTC) as numbers: the sender's clock, passed
in by the adapter, never read here.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
"""Request/response id chosen by the sender, echoed in the answer."""

Code = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9_.:-]+$")]
Text = Annotated[str, msgspec.Meta(max_length=1024)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
ContractId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")]
Pem = Annotated[str, msgspec.Meta(min_length=1, max_length=16 * 1024)]
Token = Annotated[str, msgspec.Meta(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]
Serial = Annotated[str, msgspec.Meta(min_length=1, max_length=40, pattern=r"^[0-9a-f]+$")]
Time = Annotated[float, msgspec.Meta(ge=0, le=1e11)]
Version = Annotated[int, msgspec.Meta(ge=1, le=65535)]

Role = Literal["agent", "broker", "operator", "enroll"]


class _Base(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"):
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


Message = Hello | Enroll | Enrolled | Error | Ping | Pong | AgentStatus

MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in (Hello, Enroll, Enrolled, Error, Ping, Pong, AgentStatus)
}
