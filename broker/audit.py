"""The audit log's chain: how an entry's MAC is computed and how the chain is verified.

Each entry stores the MAC of the previous entry (DESIGN §6), so a changed row breaks its own MAC
and a deleted row breaks the link of the next one. The MAC is HMAC-SHA256 under the broker's
audit key, a 0600 file beside the CA key and never in the database (:mod:`broker.auditkey`):
someone who can edit the database file cannot recompute the chain after deleting or changing a
row. The store keeps the head (last seq and MAC) in the same transaction, which catches a deleted
last row; checkpoints signed outside the database (:mod:`broker.checkpoints`) catch a tail cut
together with a moved head. Pure functions: the store feeds rows in. See docs/audit.md.

Chains written before the key existed used a public SHA-256; they are verified that way up to the
``audit.keyed`` transition entry, which is keyed and links to the last unkeyed entry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from protocol.text import safe_text

GENESIS_HASH = "0" * 64

KEYED_ACTION = "audit.keyed"
"""The first keyed entry of a chain that began unkeyed (migration, docs/audit.md)."""

BREAK_ACTION = "audit.break"
"""Written by the broker when the stored head does not match the last entry, or the last entry
does not verify, before it appends anything: the damage is recorded, never chained over."""

MARKER_ACTIONS = (KEYED_ACTION, BREAK_ACTION)

MAX_SEQ = 2**53
"""A head naming a larger seq is malformed: an edited head must not push the next entry's seq out of
SQLite's integer range (every audited write would then fail)."""

MAX_PROBLEMS = 1000
"""A verification report lists at most this many problems (a wholly rewritten log of millions of
rows must not print millions of lines); the count of the rest is still given."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    seq: int
    at: float
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


def canonical_details(details: dict[str, Any]) -> str:
    return json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(
    *,
    prev_hash: str,
    seq: int,
    at: float,
    actor: str,
    action: str,
    subject: str,
    details_json: str,
    key: bytes | None = None,
) -> str:
    """HMAC-SHA256 under ``key`` (plain SHA-256 when ``None``: chains from before the key) over a
    canonical JSON array of every field but the hash itself."""
    payload = json.dumps(
        [prev_hash, seq, repr(float(at)), actor, action, subject, details_json],
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")
    if key is None:
        return hashlib.sha256(payload).hexdigest()
    return hmac.digest(key, payload, "sha256").hex()


def parse_head(raw: str) -> tuple[int, str]:
    """``meta.audit_head`` is ``[seq, hash]``; raise ``ValueError`` for anything else."""
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, RecursionError, TypeError) as exc:
        raise ValueError(f"not JSON ({exc.__class__.__name__})") from None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or type(value[0]) is not int
        or not 0 <= value[0] <= MAX_SEQ
        or not isinstance(value[1], str)
        or len(value[1]) != 64
    ):
        raise ValueError("not [seq, 64 hex digits] with 0 <= seq <= 2**53")
    return value[0], value[1]


@dataclass(slots=True)
class ChainReport:
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    omitted: int = 0
    """Problems beyond :data:`MAX_PROBLEMS`, counted but not listed."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)
        else:
            self.omitted += 1


Row = tuple[Any, Any, Any, Any, Any, Any, Any, Any]
"""(seq, at, actor, action, subject, details_json, prev_hash, hash) as stored: untrusted types."""


def row_hash(row: Row, key: bytes | None) -> str:
    """The MAC a row should carry; ``TypeError``/``ValueError`` for a malformed field."""
    seq, at, actor, action, subject, details_json, prev_hash, _ = row
    for name, value in (("actor", actor), ("action", action), ("subject", subject)):
        if not isinstance(value, str):
            raise ValueError(f"{name} is not text")
    if not isinstance(details_json, str) or not isinstance(prev_hash, str):
        raise ValueError("details or link is not text")
    if isinstance(at, bool) or not isinstance(at, int | float):
        raise ValueError("malformed timestamp")
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


def verify_chain(
    rows: Iterable[Row],
    *,
    head: tuple[int, str] | str | None,
    key: bytes | None = None,
    keyed_from: int | None = None,
) -> ChainReport:
    """Check every row's MAC and link; ``rows`` in seq order, as stored.

    ``head`` is the recorded last entry (raw ``meta.audit_head`` text, or parsed). ``key`` is the
    audit key; with it, entries from ``keyed_from`` on (default: all) must carry its MAC, and
    entries before use the old public SHA-256. Every malformed value becomes a reported problem,
    never an exception.
    """
    report = ChainReport()
    parsed_head: tuple[int, str] | None = None
    head_problem: str | None = None
    if isinstance(head, str):
        try:
            parsed_head = parse_head(head)
        except ValueError as exc:
            head_problem = f"the recorded head of the chain is malformed ({exc})"
    else:
        parsed_head = head
    first_keyed = 1 if keyed_from is None else keyed_from
    expected_prev = GENESIS_HASH
    expected_seq = 1
    last: tuple[int, str] | None = None
    for row in rows:
        seq, _, _, action, _, details_json, prev_hash, stored = row
        report.checked += 1
        if seq != expected_seq:
            report.add(
                f"entry {expected_seq}"
                + (f"–{seq - 1}" if seq - 1 > expected_seq else "")
                + " deleted (sequence jumps to "
                + str(seq)
                + ")"
            )
        if prev_hash != expected_prev:
            report.add(f"entry {seq}: link to the previous entry is broken")
        label = _label(action)
        try:
            recomputed = row_hash(row, key if key is not None and seq >= first_keyed else None)
        except (TypeError, ValueError, OverflowError) as exc:
            report.add(f"entry {seq} ({label}) is malformed: {exc}")
        else:
            if not isinstance(stored, str) or not hmac.compare_digest(recomputed, stored):
                report.add(f"entry {seq} ({label}) was changed: its hash does not match")
            elif action == BREAK_ACTION:
                report.add(f"entry {seq}: the broker found the chain damaged: {_break_reason(details_json)}")
        if isinstance(details_json, str) and not _is_json_object(details_json):
            report.add(f"entry {seq} ({label}): its details are not valid JSON")
        expected_prev = stored if isinstance(stored, str) else ""
        expected_seq = seq + 1
        last = (seq, expected_prev)
    if head_problem is not None:
        report.add(head_problem)
    elif parsed_head is None:
        if last is not None:
            report.add("the recorded head of the chain is missing")
    elif last != parsed_head:
        if last is None or last[0] < parsed_head[0]:
            report.add(f"entries after {last[0] if last else 0} up to {parsed_head[0]} deleted")
        else:
            report.add("the recorded head of the chain does not match the last entry")
    return report


def _label(action: object) -> str:
    return safe_text(action if isinstance(action, str) else repr(action), max_chars=64)


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (json.JSONDecodeError, RecursionError):
        return False


def _break_reason(details_json: str) -> str:
    try:
        details = json.loads(details_json)
    except (json.JSONDecodeError, RecursionError):
        return "?"
    reason = details.get("reason", "?") if isinstance(details, dict) else "?"
    return safe_text(str(reason), max_chars=300)
