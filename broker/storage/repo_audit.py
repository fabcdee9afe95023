"""The audit repository: appending to the hash chain and reading it back.

The chain's arithmetic is not decided here: :class:`AuditChain` carries the function that computes an
entry's hash (or MAC) and the one that verifies a run of rows, so the SHA-256 chain of
:mod:`broker.audit` and a keyed HMAC chain (key kept outside the database) plug in alike.

Appending is strictly serial: :meth:`broker.storage.db.Tx.lock_audit` makes the transaction the only
appender until it commits (SQLite: the write lock of ``BEGIN IMMEDIATE``; PostgreSQL: an advisory
lock), then the head is read, the entry written and the head recorded in ``meta`` in the same
transaction (which is how ``verify`` notices a deleted tail).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ..audit import (
    GENESIS_HASH,
    KEYED_ACTION,
    AuditEntry,
    ChainReport,
    canonical_details,
    entry_hash,
    parse_head,
    verify_chain,
)
from .db import Row, Tx

_COLS: Final = "seq, at, actor, action, subject, details, prev_hash, hash"

ChainRow = tuple[int, float, str, str, str, str, str, str]


class EntryHash(Protocol):
    def __call__(
        self, *, prev_hash: str, seq: int, at: float, actor: str, action: str, subject: str, details_json: str
    ) -> str: ...


@dataclass(frozen=True, slots=True)
class AuditChain:
    """How entries are chained: ``entry_hash`` for appending, ``verify`` for checking stored rows."""

    entry_hash: EntryHash
    verify: Callable[[Iterable[ChainRow], tuple[int, str] | str | None], ChainReport]


def _verify_sha256(rows: Iterable[ChainRow], head: tuple[int, str] | str | None) -> ChainReport:
    return verify_chain(rows, head=head)


#: Today's chain (:mod:`broker.audit`): SHA-256 over each entry and the previous hash.
SHA256_CHAIN: Final = AuditChain(entry_hash=entry_hash, verify=_verify_sha256)


def keyed_chain(key: bytes) -> AuditChain:
    """The broker's chain since issue 11: HMAC-SHA256 under the audit key (``broker.auditkey``, a file
    outside the database). Entries before the ``audit.keyed`` marker, if the chain has one, are the
    old public SHA-256 entries they were written as."""

    def mac(
        *, prev_hash: str, seq: int, at: float, actor: str, action: str, subject: str, details_json: str
    ) -> str:
        return entry_hash(
            prev_hash=prev_hash,
            seq=seq,
            at=at,
            actor=actor,
            action=action,
            subject=subject,
            details_json=details_json,
            key=key,
        )

    def check(rows: Iterable[ChainRow], head: tuple[int, str] | str | None) -> ChainReport:
        listed = list(rows)
        keyed_from = next((r[0] for r in listed if r[3] == KEYED_ACTION), 1)
        return verify_chain(listed, head=head, key=key, keyed_from=keyed_from)

    return AuditChain(entry_hash=mac, verify=check)


def _entry(row: Row) -> AuditEntry:
    seq, at, actor, action, subject, details, prev, digest = row
    try:
        parsed = json.loads(details)
    except (json.JSONDecodeError, RecursionError, TypeError):
        parsed = None
    if not isinstance(parsed, dict):
        # An edited row: shown as what it is (``audit verify`` reports it), never a traceback.
        parsed = {"malformed": str(details)[:500]}
    return AuditEntry(
        seq=int(seq),
        at=at if isinstance(at, int | float) and not isinstance(at, bool) else 0.0,
        actor=str(actor),
        action=str(action),
        subject=str(subject),
        details=parsed,
        prev_hash=prev,
        hash=digest,
    )


async def append(
    tx: Tx, chain: AuditChain, *, actor: str, action: str, subject: str, details: dict[str, Any], now: float
) -> int:
    """Append one entry inside the caller's write transaction; its sequence number."""
    await tx.lock_audit()
    row = await tx.fetchone("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
    seq, prev = (int(row[0]) + 1, str(row[1])) if row else (1, GENESIS_HASH)
    details_json = canonical_details(details)
    digest = chain.entry_hash(
        prev_hash=prev,
        seq=seq,
        at=now,
        actor=actor,
        action=action,
        subject=subject,
        details_json=details_json,
    )
    await tx.execute(
        f"INSERT INTO audit({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, now, actor, action, subject, details_json, prev, digest),
    )
    await tx.execute(
        "INSERT INTO meta(key, value) VALUES ('audit_head', ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (json.dumps([seq, digest]),),
    )
    return seq


async def entries(tx: Tx, *, subject: str | None = None) -> list[AuditEntry]:
    if subject is None:
        rows = await tx.fetchall(f"SELECT {_COLS} FROM audit ORDER BY seq")
    else:
        rows = await tx.fetchall(f"SELECT {_COLS} FROM audit WHERE subject = ? ORDER BY seq", (subject,))
    return [_entry(r) for r in rows]


async def page(tx: Tx, *, subject: str | None, limit: int, before_seq: int | None) -> list[AuditEntry]:
    """Newest first."""
    clauses: list[str] = []
    args: list[str | int] = []
    if subject is not None:
        clauses.append("subject = ?")
        args.append(subject)
    if before_seq is not None:
        clauses.append("seq < ?")
        args.append(before_seq)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = await tx.fetchall(f"SELECT {_COLS} FROM audit{where} ORDER BY seq DESC LIMIT ?", (*args, limit))
    return [_entry(r) for r in rows]


async def count(tx: Tx, *, action: str, subject: str, since: float) -> int:
    row = await tx.fetchone(
        "SELECT COUNT(*) FROM audit WHERE subject = ? AND action = ? AND at >= ?", (subject, action, since)
    )
    return int(row[0]) if row else 0


async def head(tx: Tx) -> tuple[int, str] | None:
    """The newest entry's ``(seq, hash)``, or None for an empty log."""
    row = await tx.fetchone("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
    return (int(row[0]), str(row[1])) if row else None


async def hash_at(tx: Tx, seq: int) -> str | None:
    try:
        row = await tx.fetchone("SELECT hash FROM audit WHERE seq = ?", (seq,))
    except Exception as exc:  # a dropped audit table: the entry is missing (verify reports it)
        if "audit" not in str(exc):
            raise
        return None
    return str(row[0]) if row else None


async def verify(tx: Tx, chain: AuditChain) -> ChainReport:
    """Check the whole chain and the recorded head (run in a read transaction: one snapshot)."""
    head_row = await tx.fetchone("SELECT value FROM meta WHERE key = 'audit_head'")
    head: tuple[int, str] | str | None = None
    if head_row:
        try:
            head = parse_head(str(head_row[0]))
        except ValueError:
            head = str(head_row[0])  # the chain's verifier reports it as malformed
    try:
        rows = await tx.fetchall(f"SELECT {_COLS} FROM audit ORDER BY seq")
    except Exception as exc:  # a dropped audit table: every entry is gone, which the head shows
        if "audit" not in str(exc):
            raise
        rows = []
    typed: list[ChainRow] = [(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows]
    return chain.verify(typed, head)
