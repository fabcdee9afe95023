"""Messages of every connection: ``hello``, enrollment, errors, heartbeats and the agent's status."""

from __future__ import annotations

from typing import Annotated

import msgspec

from .fields import Code, ContractId, Id, MessageBase, Name, Pem, Role, Serial, Text, Time, Token, Version


class Hello(MessageBase, frozen=True, kw_only=True, tag="hello"):
    """First message on every connection: who speaks, which protocol versions it can use.

    The client offers ``versions``; the broker answers with exactly one, the highest in common,
    or an ``error`` with ``unsupported_version``.
    """

    versions: Annotated[tuple[Version, ...], msgspec.Meta(min_length=1, max_length=8)]
    role: Role
    software: Annotated[str, msgspec.Meta(max_length=64)] = ""


class Enroll(MessageBase, frozen=True, kw_only=True, tag="enroll"):
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


class Enrolled(MessageBase, frozen=True, kw_only=True, tag="enrolled"):
    """Broker → agent: the signed certificate, the CA chain, and the client certificate ID."""

    id: Id
    certificate_pem: Pem
    ca_pem: Pem
    serial: Serial
    """Hex serial: the "client certificate ID" of 別紙5 (2)."""
    not_after: Time


class Error(MessageBase, frozen=True, kw_only=True, tag="error"):
    """A refusal with a stable ``code`` (see :class:`protocol.errors.ErrorCode`).

    ``id`` names the request it answers, when there was one. ``message`` is English for logs;
    clients show their own translation of ``code`` (Japanese first).
    """

    code: Code
    message: Text = ""
    id: Id | None = None
    retry_after: Annotated[float, msgspec.Meta(ge=0, le=1e8)] | None = None


class Ping(MessageBase, frozen=True, kw_only=True, tag="ping"):
    """Heartbeat; ``time`` is the sender's clock, echoed in the ``pong`` to measure round trips."""

    id: Id
    time: Time


class Pong(MessageBase, frozen=True, kw_only=True, tag="pong"):
    id: Id
    time: Time


class AgentStatus(MessageBase, frozen=True, kw_only=True, tag="agent_status"):
    """Agent → broker after ``hello``: what the operators' queue shows about this PC.

    Only the machine name and the agent's own facts: the 別紙5 inventory is sent only with
    consent, item by item, never here.
    """

    machine_name: Name
    agent_version: Annotated[str, msgspec.Meta(max_length=64)] = ""
    display: bool = False
    """Whether a screen can be shared (False on a headless Linux box)."""
