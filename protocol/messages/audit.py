"""Audit-log messages for supervisors: browse the entries and verify the chain."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from .fields import Id, MessageBase, WireStruct


class AuditQuery(MessageBase, frozen=True, kw_only=True, tag="audit_query"):
    """Supervisor → broker: newest entries first, ``before_seq`` pages back."""

    id: Id
    subject: Annotated[str, msgspec.Meta(max_length=255)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 100
    before_seq: Annotated[int, msgspec.Meta(ge=1)] | None = None


class AuditRow(WireStruct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    seq: int
    at: float
    actor: str
    action: str
    subject: str
    details: dict[str, Any]


class AuditEntries(MessageBase, frozen=True, kw_only=True, tag="audit_entries"):
    id: Id
    entries: Annotated[tuple[AuditRow, ...], msgspec.Meta(max_length=500)]


class AuditVerify(MessageBase, frozen=True, kw_only=True, tag="audit_verify"):
    id: Id


class AuditVerified(MessageBase, frozen=True, kw_only=True, tag="audit_verified"):
    id: Id
    ok: bool
    checked: int
    problems: Annotated[tuple[str, ...], msgspec.Meta(max_length=1000)] = ()
