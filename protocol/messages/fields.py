"""The field types and the two base classes every control message is built from.

Each field type is an ``Annotated`` msgspec type carrying its limits (lengths, patterns, ranges), so
one definition serves decoding and construction alike (see :mod:`protocol.messages`).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from ..construction import Validating
from ..scopes import SCOPE_PATTERN
from ..scopes import ScopeStatus as ScopeStatus

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


class WireStruct(msgspec.Struct, metaclass=Validating, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Common base of every struct on the wire: validated at construction (see :mod:`protocol.messages`)."""


class MessageBase(WireStruct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"):
    """Common base of every message (it carries the ``type`` tag); not a message itself."""
