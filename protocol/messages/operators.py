"""Operator messages: login, the queue, claiming and watching sessions, invitations and transfers."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from .fields import (
    ContractId,
    Id,
    MessageBase,
    Name,
    OperatorName,
    Password,
    Scopes,
    SessionId,
    SupportCode,
    Time,
    Token,
    WireStruct,
)
from .session import SessionState


class Login(MessageBase, frozen=True, kw_only=True, tag="login"):
    """Operator → broker on ``/operator``: password and TOTP code (RFC 6238)."""

    id: Id
    name: Name
    password: Password
    totp: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6,8}\Z")]


class Auth(MessageBase, frozen=True, kw_only=True, tag="auth"):
    """Operator → broker: resume with a session token from an earlier ``login_ok``."""

    id: Id
    token: Token


class LoginOk(MessageBase, frozen=True, kw_only=True, tag="login_ok"):
    id: Id
    token: Token
    expires_at: Time
    name: Name
    display_name: Name
    role: Literal["operator", "supervisor", "admin"]
    password_change_required: bool = False


class ChangePassword(MessageBase, frozen=True, kw_only=True, tag="change_password"):
    id: Id
    old_password: Password
    new_password: Password


class Logout(MessageBase, frozen=True, kw_only=True, tag="logout"):
    id: Id


class Ok(MessageBase, frozen=True, kw_only=True, tag="ok"):
    """A plain acknowledgement of request ``id``."""

    id: Id


class QueueList(MessageBase, frozen=True, kw_only=True, tag="queue_list"):
    id: Id


class QueueEntry(WireStruct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    session_id: SessionId
    contract_id: ContractId
    machine_name: Annotated[str, msgspec.Meta(max_length=255)]
    created_at: Time
    expires_at: Time


class Queue(MessageBase, frozen=True, kw_only=True, tag="queue"):
    """Waiting support requests (never their codes); sent on request and pushed on change."""

    requests: Annotated[tuple[QueueEntry, ...], msgspec.Meta(max_length=10_000)]
    id: Id | None = None


class Claim(MessageBase, frozen=True, kw_only=True, tag="claim"):
    """Operator → broker: take a request by the code the subscriber read out, or by its id."""

    id: Id
    code: SupportCode | None = None
    session_id: SessionId | None = None
    scopes: Scopes = ("screen:view",)


class Claimed(MessageBase, frozen=True, kw_only=True, tag="claimed"):
    id: Id
    session_id: SessionId
    contract_id: ContractId
    machine_name: Annotated[str, msgspec.Meta(max_length=255)]


class Watch(MessageBase, frozen=True, kw_only=True, tag="watch"):
    """Attach this connection as a viewer: the session's operator, or a supervisor read-only."""

    id: Id
    session_id: SessionId


class SessionList(MessageBase, frozen=True, kw_only=True, tag="session_list"):
    id: Id


class Sessions(MessageBase, frozen=True, kw_only=True, tag="sessions"):
    id: Id
    sessions: Annotated[tuple[SessionState, ...], msgspec.Meta(max_length=10_000)]


class Invite(MessageBase, frozen=True, kw_only=True, tag="invite"):
    """The session's operator → broker: let colleague ``colleague`` (an operator account) watch
    the session read-only. The subscriber is asked first, for that person by name (第31条1項④:
    consent was given to one operator, so a new person who would see the screen is asked)."""

    id: Id
    session_id: SessionId
    colleague: OperatorName


class Transfer(MessageBase, frozen=True, kw_only=True, tag="transfer"):
    """The session's operator → broker: hand the session to colleague ``colleague``, who becomes
    its operator once the subscriber allowed that person; the old operator leaves, and control
    (``input:control``) is not carried over: the new operator asks for it again."""

    id: Id
    session_id: SessionId
    colleague: OperatorName


InvitationStatus = Literal["asked", "allowed", "refused", "timeout", "failed"]


class Invitation(MessageBase, frozen=True, kw_only=True, tag="invitation"):
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
