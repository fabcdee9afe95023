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
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ..audit import (
    BREAK_ACTION,
    GENESIS_HASH,
    KEYED_ACTION,
    MARKER_ACTIONS,
    AuditEntry,
    ChainReport,
    canonical_details,
    entry_hash,
    parse_head,
    verify_chain,
)
from .db import Row, Tx

log = logging.getLogger("broker.storage.audit")

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


def _row_ok(chain: AuditChain, row: Row) -> bool:
    seq, at, actor, action, subject, details_json, prev_hash, stored = row
    try:
        for value in (actor, action, subject, details_json, prev_hash):
            if not isinstance(value, str):
                return False
        if isinstance(at, bool) or not isinstance(at, int | float):
            return False
        digest = chain.entry_hash(
            prev_hash=prev_hash,
            seq=int(seq),
            at=at,
            actor=actor,
            action=action,
            subject=subject,
            details_json=details_json,
        )
    except (TypeError, ValueError, OverflowError):
        return False
    return bool(digest == stored)


def _head_problem(chain: AuditChain, last: Row | None, raw: str | None) -> tuple[str, int] | None:
    """Why the chain may not be appended to as it is: (reason, highest seq seen), or None. The
    recorded head must be well-formed and name the last row, and the last row must verify: an append
    never chains over a deleted tail or a forged row (docs/audit.md)."""
    last_seq = int(last[0]) if last else 0
    if raw is None:
        return None if last is None else ("the recorded head is missing", last_seq)
    try:
        head = parse_head(raw)
    except ValueError as exc:
        return (f"the recorded head is malformed ({exc})", last_seq)
    if last is None or head != (last_seq, last[7]):
        return (
            f"the recorded head is entry {head[0]} but the last entry is {last_seq}"
            + (" (entries were deleted)" if head[0] > last_seq else ""),
            max(head[0], last_seq),
        )
    if not _row_ok(chain, last):
        return (f"the last entry ({last_seq}) does not verify with the audit key", last_seq)
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class NewEntry:
    """An entry to append (:func:`append_many`)."""

    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    now: float


def _row(chain: AuditChain, *, seq: int, prev: str, entry: NewEntry) -> Row:
    details_json = canonical_details(entry.details)
    digest = chain.entry_hash(
        prev_hash=prev,
        seq=seq,
        at=entry.now,
        actor=entry.actor,
        action=entry.action,
        subject=entry.subject,
        details_json=details_json,
    )
    return (seq, entry.now, entry.actor, entry.action, entry.subject, details_json, prev, digest)


async def _write_rows(tx: Tx, rows: list[Row]) -> None:
    """Insert ``rows`` (chained, in order) and point the head at the last one."""
    await tx.executemany(f"INSERT INTO audit({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    await tx.execute(
        "INSERT INTO meta(key, value) VALUES ('audit_head', ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (json.dumps([rows[-1][0], rows[-1][7]]),),
    )


async def _insert(
    tx: Tx,
    chain: AuditChain,
    *,
    seq: int,
    prev: str,
    actor: str,
    action: str,
    subject: str,
    details: dict[str, Any],
    now: float,
) -> str:
    entry = NewEntry(actor=actor, action=action, subject=subject, details=details, now=now)
    row = _row(chain, seq=seq, prev=prev, entry=entry)
    await _write_rows(tx, [row])
    return str(row[7])


async def append(
    tx: Tx, chain: AuditChain, *, actor: str, action: str, subject: str, details: dict[str, Any], now: float
) -> int:
    """Append one entry inside the caller's write transaction, onto the verified head; its number."""
    entry = NewEntry(actor=actor, action=action, subject=subject, details=details, now=now)
    return (await append_many(tx, chain, [entry]))[0]


async def append_many(tx: Tx, chain: AuditChain, entries: Sequence[NewEntry]) -> list[int]:
    """Append ``entries`` in order inside the caller's write transaction, onto the verified head;
    their numbers. The head is read and checked once and written once (a batch of agent connects).

    A head that does not name the last row, or a last row that does not verify, is first recorded as
    an ``audit.break`` entry (and logged): the damage stays visible to every later verification
    instead of being laundered by the next link.
    """
    if not entries:
        return []
    await tx.lock_audit()
    last = await tx.fetchone(f"SELECT {_COLS} FROM audit ORDER BY seq DESC LIMIT 1")
    raw = await tx.fetchone("SELECT value FROM meta WHERE key = 'audit_head'")
    problem = _head_problem(chain, last, str(raw[0]) if raw else None)
    seq, prev = (int(last[0]) + 1, str(last[7])) if last else (1, GENESIS_HASH)
    rows: list[Row] = []
    if problem is not None:
        reason, highest = problem
        log.error("AUDIT LOG DAMAGED: %s; recorded as an %s entry", reason, BREAK_ACTION)
        seq = highest + 1
        damage = NewEntry(
            actor="broker",
            action=BREAK_ACTION,
            subject="audit",
            details={"reason": reason, "last_entry": [last[0], last[7]] if last else None},
            now=entries[0].now,
        )
        rows.append(_row(chain, seq=seq, prev=prev, entry=damage))
        prev = str(rows[-1][7])
        seq += 1
    numbers: list[int] = []
    for entry in entries:
        rows.append(_row(chain, seq=seq, prev=prev, entry=entry))
        numbers.append(seq)
        prev = str(rows[-1][7])
        seq += 1
    await _write_rows(tx, rows)
    return numbers


async def key_unkeyed_chain(tx: Tx, chain: AuditChain) -> bool:
    """Mark a chain written before the audit key: an ``audit.keyed`` entry, MAC'd with ``chain``,
    after a genuine public SHA-256 chain (entries before it keep verifying the old way). Nothing when
    the log is empty, already has a marker, or its last row is not a genuine unkeyed one."""
    await tx.lock_audit()
    last = await tx.fetchone(f"SELECT {_COLS} FROM audit ORDER BY seq DESC LIMIT 1")
    if last is None or not _row_ok(SHA256_CHAIN, last):
        return False
    marked = await tx.fetchone("SELECT 1 FROM audit WHERE action = ? OR action = ? LIMIT 1", MARKER_ACTIONS)
    if marked is not None:
        return False
    await _insert(
        tx,
        chain,
        seq=int(last[0]) + 1,
        prev=str(last[7]),
        actor="broker",
        action=KEYED_ACTION,
        subject="audit",
        details={"unkeyed_entries": int(last[0]), "unkeyed_head": str(last[7])},
        now=float(last[1]) if isinstance(last[1], int | float) else 0.0,
    )
    return True


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
