"""Checking consent receipts against the agent's certificate, live and offline.

The same check runs when a decision arrives (the session host) and when an auditor asks
later (``python -m broker audit receipts SESSION``: the session's ``consent_receipts`` rows, each held
to its audit entry; the audit entries alone for sessions recorded before the rows existed): the
receipt text must be canonical, and its ECDSA signature must verify with the public key of the
certificate it names (DESIGN §4). The offline check also holds each receipt to its session: its
session id and certificate serial must be the session's, and a receipt may not appear twice or out
of order (issue 11: replays).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import UTC, datetime

from certs import BadSignature, CertError, verify
from protocol.errors import ErrorCode, ProtocolError
from protocol.receipts import ConsentReceipt, parse_receipt

from .audit import AuditEntry
from .errors import RefusedError
from .storage import Storage


def verify_receipt(text: str, signature_b64: str, cert_pem: str) -> ConsentReceipt:
    """Parse and verify; raise ``RefusedError`` (``invalid_field``) when either fails."""
    try:
        receipt = parse_receipt(text)
        signature = base64.b64decode(signature_b64, validate=True)
        verify(cert_pem.encode("ascii"), text.encode("utf-8"), signature)
    except ProtocolError as exc:
        raise RefusedError(
            f"malformed consent receipt: {exc.message}", code=ErrorCode.INVALID_FIELD
        ) from None
    except (binascii.Error, BadSignature, CertError):
        raise RefusedError(
            "the consent receipt's signature does not verify", code=ErrorCode.INVALID_FIELD
        ) from None
    return receipt


@dataclass(slots=True)
class ReceiptAudit:
    """What ``audit receipts SESSION`` found: one line per receipt, and every finding."""

    session_id: str
    contract_id: str | None = None
    serial: str | None = None
    lines: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Stored:
    """One receipt as stored: a ``consent_receipts`` row, or (older sessions) its audit entry."""

    seq: int
    serial: str
    text: str | None
    signature: str | None


async def _session_record(
    entries: list[AuditEntry], storage: Storage, session_id: str
) -> tuple[str | None, str | None]:
    """(contract, agent serial) of a session from the broker's own records of it.

    The session row when there is one (written by the session host since migration 2); else the
    serial comes from the ``support.request`` entry that created the session (the agent's
    certificate on that connection), else from ``session.claim``/``session.end``; never from a
    receipt, which is what is being checked.
    """
    row = await storage.sessions.get(session_id)
    if row is not None:
        return row.contract_id, row.serial
    contract: str | None = None
    serial: str | None = None
    for entry in entries:
        if entry.action in ("session.claim", "session.end", "session.agent_back"):
            contract = contract or _text(entry.details.get("contract"))
            serial = serial or _text(entry.details.get("serial"))
    if contract is not None:
        for entry in await storage.audit.entries(subject=contract):
            if entry.action == "support.request" and entry.details.get("session") == session_id:
                serial = _text(entry.details.get("serial")) or serial
                break
    return contract, serial


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


async def _stored_receipts(
    storage: Storage, session_id: str, entries: list[AuditEntry], findings: list[str]
) -> list[_Stored]:
    """The receipt rows of the session, each held to its audit entry (the chain covers the entry, so
    a row that differs from it was edited); a session without rows (recorded before the rows
    existed) is read from its ``consent.receipt`` audit entries."""
    logged = {e.seq: e for e in entries if e.action == "consent.receipt"}
    rows = await storage.sessions.receipts(session_id)
    if not rows:
        return [
            _Stored(
                seq=e.seq,
                serial=str(e.details.get("serial", "")),
                text=_text(e.details.get("receipt")),
                signature=_text(e.details.get("signature")),
            )
            for e in logged.values()
        ]
    for row in rows:
        entry = logged.pop(row.audit_seq, None)
        if entry is None or (entry.details.get("receipt"), entry.details.get("signature")) != (
            row.receipt,
            row.signature,
        ):
            findings.append(f"#{row.audit_seq}: the receipt row differs from its audit entry (edited)")
    findings.extend(f"#{seq}: a consent.receipt audit entry without its receipt row" for seq in logged)
    return [_Stored(seq=r.audit_seq, serial=r.serial, text=r.receipt, signature=r.signature) for r in rows]


async def audit_session_receipts(storage: Storage, session_id: str) -> ReceiptAudit:
    """Verify each consent receipt of a session: signature, session id, agent serial, no
    duplicates, in order (第31条1項④⑤: the record of consent must be the subscriber's own, for this
    session). A replayed genuine receipt (another session's, or an earlier grant re-appended
    after a withdrawal) verifies by signature alone; these checks are what catch it."""
    audit = ReceiptAudit(session_id=session_id)
    entries = await storage.audit.entries(subject=session_id)
    audit.contract_id, audit.serial = await _session_record(entries, storage, session_id)
    if audit.serial is None:
        audit.findings.append("the session's own record (support request, claim or end) is not in the log")
    seen: dict[str, int] = {}
    last_time: float | None = None
    last_seq: int | None = None
    receipts = await _stored_receipts(storage, session_id, entries, audit.findings)
    if not receipts:
        audit.findings.append("no consent receipts for this session")
    for stored in receipts:
        label = f"#{stored.seq}"
        record = await storage.certificates.get(stored.serial)
        try:
            if record is None:
                raise RefusedError(f"certificate {stored.serial} is not known")
            if stored.text is None or stored.signature is None:
                raise RefusedError("the receipt or its signature is missing")
            text = stored.text
            receipt = verify_receipt(text, stored.signature, record.cert_pem)
        except RefusedError as exc:
            audit.findings.append(f"{label}: INVALID: {exc}")
            continue
        problems: list[str] = []
        if receipt.session_id != session_id:
            problems.append(
                f"it is a receipt of session {receipt.session_id}, not of this session (replayed)"
            )
        if audit.serial is not None and (receipt.serial != audit.serial or stored.serial != audit.serial):
            problems.append(
                f"it is signed by certificate {receipt.serial}, not by this session's agent {audit.serial}"
            )
        if text in seen:
            problems.append(f"it duplicates receipt #{seen[text]} (replayed)")
        if last_time is not None and receipt.time < last_time:
            problems.append(f"it is older than receipt #{last_seq} before it (out of order, replayed)")
        seen.setdefault(text, stored.seq)
        if receipt.time >= (last_time if last_time is not None else receipt.time):
            last_time, last_seq = receipt.time, stored.seq
        audit.lines.append(
            f"{label} {_fmt_time(receipt.time)} session={session_id} {receipt.decision:<9}"
            f" operator={receipt.operator}"
            f" granted=[{', '.join(receipt.granted)}] denied=[{', '.join(receipt.denied)}]"
            + (f" viewer={receipt.viewer}" if receipt.viewer is not None else "")
            + f" cert={receipt.serial} signature OK"
            + ("" if not problems else " — REFUSED")
        )
        audit.findings.extend(f"{label}: {p}" for p in problems)
    return audit


def _fmt_time(t: float) -> str:
    try:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"(bad time {t!r:.40})"
